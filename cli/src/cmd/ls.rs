//! `cleave ls REMOTE [--limit N] [--all]`: list a directory, one entry per line (sub-directories
//! end in `/`), one page of `--limit` entries or, with `--all`, every page (`LIST ... AFTER last
//! LIMIT n` until a short page).

use super::{connect, remote_path, Routers};
use crate::error::{Error, Result};
use cleave_proto::command::read::MAX_LIST_LIMIT;
use std::io::Write;

/// Arguments of `cleave ls`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remote directory to list, e.g. `/photos`.
    pub remote: String,
    /// Entries per page (1 to 10000).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=MAX_LIST_LIMIT as i64))]
    pub limit: u32,
    /// Follow the pages to the end of the directory.
    #[arg(long)]
    pub all: bool,
}

/// Run `cleave ls`.
pub async fn run(routers: &Routers, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let mut client = connect(routers).await?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut after: Option<String> = None;
    loop {
        let page = client
            .list(path.as_str(), after.as_deref(), args.limit)
            .await
            .map_err(|e| routers.error(e))?;
        for name in &page {
            writeln!(out, "{name}").map_err(Error::local("-"))?;
        }
        let full = page.len() >= args.limit as usize;
        if !full {
            break;
        }
        if !args.all {
            out.flush().map_err(Error::local("-"))?;
            eprintln!("cleave: more entries follow; use --all to list them all");
            break;
        }
        after = page.last().cloned();
    }
    out.flush().map_err(Error::local("-"))
}
