//! `cleave rm REMOTE`: delete a file (exit status 3 when it does not exist).
//!
//! A `DELETE` sent again to another router after its connection broke mid-request may find the
//! file already deleted by the first attempt: `-NOTFOUND` then counts as done.

use super::{connect, remote_path, Routers};
use crate::error::Result;
use cleave_proto::ErrorCode;

/// Arguments of `cleave rm`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remote file to delete, e.g. `/photos/cat.jpg`.
    pub remote: String,
}

/// Run `cleave rm`.
pub async fn run(routers: &Routers, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let mut client = connect(routers).await?;
    match client.delete(path.as_str()).await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some(ErrorCode::NotFound) && client.resent() => Ok(()),
        Err(e) => Err(routers.error(e)),
    }
}
