//! `cleave put LOCAL|- REMOTE [--type MIME]`: upload a file.
//!
//! Up to 8 MiB: one `INSERT`. Bigger (a file, or stdin that turns out longer than one piece):
//! a multipart upload — `PART path upload index data` per 8 MiB piece, then `COMMIT`; on any
//! failure the upload is dropped with `ABORT`. At most two pieces are in memory at once.

use super::{connect, progress, read_piece, remote_path, Retries, PIECE};
use crate::error::{Error, Result};
use bytes::Bytes;
use cleave_proto::{Client, FilePath};
use rand::distr::{Alphanumeric, SampleString};
use tokio::io::AsyncRead;

/// Arguments of `cleave put`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Local file to upload, or `-` for standard input.
    pub local: String,
    /// Remote path to create or replace, e.g. `/photos/cat.jpg`.
    pub remote: String,
    /// Content type stored with the file, e.g. `image/jpeg`.
    #[arg(long = "type", value_name = "MIME")]
    pub content_type: Option<String>,
}

/// Run `cleave put`.
pub async fn run(router: &str, args: Args) -> Result<()> {
    let path = remote_path(&args.remote)?;
    let (mut input, size): (Box<dyn AsyncRead + Unpin>, Option<u64>) = if args.local == "-" {
        (Box::new(tokio::io::stdin()), None)
    } else {
        let file = tokio::fs::File::open(&args.local)
            .await
            .map_err(Error::local(&args.local))?;
        let meta = file.metadata().await.map_err(Error::local(&args.local))?;
        if meta.is_dir() {
            return Err(Error::BadInput(format!("{} is a directory", args.local)));
        }
        (Box::new(file), Some(meta.len()))
    };
    let mut client = connect(router).await?;
    let first = read_piece(&mut input, PIECE)
        .await
        .map_err(Error::local(&args.local))?;
    let second = if first.len() < PIECE || size.is_some_and(|s| s <= PIECE as u64) {
        Vec::new()
    } else {
        read_piece(&mut input, PIECE)
            .await
            .map_err(Error::local(&args.local))?
    };
    if second.is_empty() {
        return client
            .insert_typed(path.as_str(), first.into(), args.content_type)
            .await
            .map(drop)
            .map_err(|e| Error::from_proto(router, e));
    }
    let upload = Alphanumeric.sample_string(&mut rand::rng(), 24);
    let mut up = Upload {
        client: &mut client,
        path: &path,
        upload: &upload,
        local: &args.local,
    };
    let result = up.send(first, second, input, size, args.content_type).await;
    if let Err(e) = &result {
        abort(router, &mut client, &path, &upload, e).await;
    }
    result.map_err(|e| e.into_error(router))
}

/// One multipart upload in progress.
struct Upload<'a> {
    client: &'a mut Client,
    path: &'a FilePath,
    upload: &'a str,
    local: &'a str,
}

/// Why an upload failed: on the router's side or while reading the input.
enum Failure {
    Remote(cleave_proto::Error),
    Local(Error),
}

impl Failure {
    fn into_error(self, router: &str) -> Error {
        match self {
            Failure::Remote(e) => Error::from_proto(router, e),
            Failure::Local(e) => e,
        }
    }
}

impl Upload<'_> {
    async fn send(
        &mut self,
        first: Vec<u8>,
        second: Vec<u8>,
        mut input: impl AsyncRead + Unpin,
        size: Option<u64>,
        content_type: Option<String>,
    ) -> std::result::Result<(), Failure> {
        let bar = progress(size);
        let mut index = 0u32;
        let mut next = Some(second);
        let mut piece = first;
        loop {
            let len = piece.len() as u64;
            let data = Bytes::from(piece);
            let mut retries = Retries::new();
            loop {
                let sent = self
                    .client
                    .part(self.path.as_str(), self.upload, index, data.clone());
                match sent.await {
                    Err(e) if retries.again(&e).await => continue,
                    Err(e) => return Err(Failure::Remote(e)),
                    Ok(_) => break,
                }
            }
            bar.inc(len);
            index += 1;
            piece = match next.take() {
                Some(p) => p,
                None => read_piece(&mut input, PIECE)
                    .await
                    .map_err(|e| Failure::Local(Error::local(self.local)(e)))?,
            };
            if piece.is_empty() {
                break;
            }
        }
        self.client
            .commit(self.path.as_str(), self.upload, index, content_type)
            .await
            .map_err(Failure::Remote)?;
        bar.finish_and_clear();
        Ok(())
    }
}

/// Drop a failed upload's parts (best effort, on a fresh connection if the old one broke).
async fn abort(router: &str, client: &mut Client, path: &FilePath, upload: &str, why: &Failure) {
    let broken = matches!(why, Failure::Remote(e) if e.code().is_none());
    if broken {
        if let Ok(mut fresh) = connect(router).await {
            let _ = fresh.abort(path.as_str(), upload).await;
        }
    } else {
        let _ = client.abort(path.as_str(), upload).await;
    }
}
