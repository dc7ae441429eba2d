//! `cleave get REMOTE [LOCAL|-]`: download a file (to stdout by default).
//!
//! `STAT` first. Files up to 8 MiB come in one `SELECT`; bigger ones as `READ path offset 8MiB
//! VERSION seq` pieces written out as they arrive, so memory stays at one piece. If the file is
//! replaced meanwhile (`-STALE`), the download starts over once from the new version, then
//! fails. A local file is written under a temporary name and renamed when complete, so a failed
//! download leaves no partial file behind.

use super::{connect, progress, remote_path, Retries, Routers, PIECE};
use crate::error::{Error, Result};
use cleave_proto::command::Stat;
use cleave_proto::{ErrorCode, FilePath, MultiClient, Selected};
use std::path::PathBuf;
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

/// Arguments of `cleave get`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Remote file to download, e.g. `/photos/cat.jpg`.
    pub remote: String,
    /// Where to write it: a file, a directory (the remote name is kept), or `-` for stdout.
    #[arg(default_value = "-")]
    pub local: String,
}

/// Where the bytes go.
enum Output {
    Stdout {
        out: tokio::io::Stdout,
        written: u64,
    },
    File {
        file: tokio::fs::File,
        tmp: PathBuf,
        dest: PathBuf,
    },
}

impl Output {
    async fn open(local: &str, path: &FilePath) -> Result<Output> {
        if local == "-" {
            return Ok(Output::Stdout {
                out: tokio::io::stdout(),
                written: 0,
            });
        }
        let mut dest = PathBuf::from(local);
        if dest.is_dir() {
            dest.push(path.name());
        }
        let mut tmp_name = dest.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(".cleave-partial");
        let tmp = dest.with_file_name(tmp_name);
        let file = tokio::fs::File::create(&tmp)
            .await
            .map_err(Error::local(tmp.display().to_string()))?;
        Ok(Output::File { file, tmp, dest })
    }

    fn name(&self) -> String {
        match self {
            Output::Stdout { .. } => "-".into(),
            Output::File { dest, .. } => dest.display().to_string(),
        }
    }

    async fn write(&mut self, data: &[u8]) -> Result<()> {
        let name = self.name();
        match self {
            Output::Stdout { out, written } => {
                *written += data.len() as u64;
                out.write_all(data).await
            }
            Output::File { file, .. } => file.write_all(data).await,
        }
        .map_err(Error::local(name))
    }

    /// Start over; false when bytes already went to stdout and cannot be taken back.
    async fn rewind(&mut self) -> Result<bool> {
        let name = self.name();
        match self {
            Output::Stdout { written, .. } => Ok(*written == 0),
            Output::File { file, .. } => {
                file.set_len(0).await.map_err(Error::local(name.clone()))?;
                file.rewind().await.map_err(Error::local(name))?;
                Ok(true)
            }
        }
    }

    async fn finish(self) -> Result<()> {
        let name = self.name();
        match self {
            Output::Stdout { mut out, .. } => out.flush().await.map_err(Error::local(name)),
            Output::File {
                mut file,
                tmp,
                dest,
            } => {
                file.flush().await.map_err(Error::local(name.clone()))?;
                file.sync_all().await.map_err(Error::local(name.clone()))?;
                drop(file);
                tokio::fs::rename(&tmp, &dest)
                    .await
                    .map_err(Error::local(name))
            }
        }
    }

    async fn discard(self) {
        if let Output::File { file, tmp, .. } = self {
            drop(file);
            let _ = tokio::fs::remove_file(&tmp).await;
        }
    }
}

/// Run `cleave get`.
pub async fn run(routers: &Routers, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let mut client = connect(routers).await?;
    let proto = |e| routers.error(e);
    let stat = client.stat(path.as_str()).await.map_err(proto)?;
    if stat.kind == "dir" {
        return Err(Error::BadInput(format!(
            "{path} is a directory (use cleave ls)"
        )));
    }
    let mut out = Output::open(&args.local, &path).await?;
    match download(routers, &mut client, &path, stat, &mut out).await {
        Ok(()) => out.finish().await,
        Err(e) => {
            out.discard().await;
            Err(e)
        }
    }
}

async fn download(
    routers: &Routers,
    client: &mut MultiClient,
    path: &FilePath,
    mut stat: Stat,
    out: &mut Output,
) -> Result<()> {
    let proto = |e| routers.error(e);
    if stat.size <= PIECE as u64 {
        match client.select(path.as_str()).await.map_err(proto)? {
            Selected::File(data) => return out.write(&data).await,
            Selected::Dir(_) => return Err(Error::BadInput(format!("{path} is a directory"))),
        }
    }
    let mut restarted = false;
    loop {
        match pieces(routers, client, path, &stat, out).await {
            Ok(()) => return Ok(()),
            Err(e) if e.code() == Some(ErrorCode::Stale) && !restarted && out.rewind().await? => {
                restarted = true;
                stat = client.stat(path.as_str()).await.map_err(proto)?;
            }
            Err(Error::Remote(r)) if r.code == ErrorCode::Stale => {
                return Err(Error::Other(format!(
                    "{path} changed while it was being read; try again ({r})"
                )))
            }
            Err(e) => return Err(e),
        }
    }
}

/// Read the whole file at version `stat.seq`, one piece at a time.
async fn pieces(
    routers: &Routers,
    client: &mut MultiClient,
    path: &FilePath,
    stat: &Stat,
    out: &mut Output,
) -> Result<()> {
    let bar = progress(Some(stat.size));
    let mut offset = 0u64;
    while offset < stat.size {
        let mut retries = Retries::new();
        let data = loop {
            match client
                .read(path.as_str(), offset, PIECE as u64, Some(stat.seq))
                .await
            {
                Err(e) if retries.again(&e).await => continue,
                other => break other.map_err(|e| routers.error(e))?,
            }
        };
        if data.is_empty() {
            return Err(Error::Other(format!(
                "{path}: the file ended at {offset} bytes, {} expected",
                stat.size
            )));
        }
        out.write(&data).await?;
        offset += data.len() as u64;
        bar.inc(data.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}
