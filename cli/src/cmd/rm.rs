//! `cleave rm REMOTE`: delete a file (exit status 3 when it does not exist).

use super::{connect, remote_path};
use crate::error::{Error, Result};

/// Arguments of `cleave rm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remote file to delete, e.g. `/photos/cat.jpg`.
    pub remote: String,
}

/// Run `cleave rm`.
pub async fn run(router: &str, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let mut client = connect(router).await?;
    client
        .delete(path.as_str())
        .await
        .map(drop)
        .map_err(|e| Error::from_proto(router, e))
}
