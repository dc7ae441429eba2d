//! `cleave put LOCAL|- REMOTE [--type MIME]`: upload a file.
//!
//! Up to 8 MiB: one `INSERT`. Bigger (a file, or stdin that turns out longer than one piece):
//! a multipart upload — `PART path upload index data` per 8 MiB piece, then `COMMIT`; on any
//! failure the upload is dropped with `ABORT`. At most two pieces are in memory at once.
//!
//! Every request moves on to the next router when its connection fails ([`MultiClient`]). A
//! `COMMIT` sent again after its connection broke mid-request may find the upload committed by
//! the first attempt: `-EXISTS ... already committed` then counts as done.

use super::{connect, progress, read_piece, remote_path, Retries, Routers, PIECE};
use crate::error::{Error, Result};
use bytes::Bytes;
use cleave_proto::{ErrorCode, FilePath, MultiClient};
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
pub async fn run(routers: &Routers, args: Args) -> Result<()> {
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
    let mut client = connect(routers).await?;
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
            .map_err(|e| routers.error(e));
    }
    let upload = Alphanumeric.sample_string(&mut rand::rng(), 24);
    let mut up = Upload {
        client: &mut client,
        path: &path,
        upload: &upload,
        local: &args.local,
    };
    let result = up.send(first, second, input, size, args.content_type).await;
    if result.is_err() {
        abort(&mut client, &path, &upload).await;
    }
    result.map_err(|e| e.into_error(routers))
}

/// One multipart upload in progress.
struct Upload<'a> {
    client: &'a mut MultiClient,
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
    fn into_error(self, routers: &Routers) -> Error {
        match self {
            Failure::Remote(e) => routers.error(e),
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
        match self
            .client
            .commit(self.path.as_str(), self.upload, index, content_type)
            .await
        {
            Ok(_) => {}
            Err(e)
                if e.code() == Some(ErrorCode::Exists)
                    && self.client.resent()
                    && e.to_string().contains("already committed") => {}
            Err(e) => return Err(Failure::Remote(e)),
        }
        bar.finish_and_clear();
        Ok(())
    }
}

/// Drop a failed upload's parts (best effort; the client reconnects, to any router, if its
/// connection broke).
async fn abort(client: &mut MultiClient, path: &FilePath, upload: &str) {
    let _ = client.abort(path.as_str(), upload).await;
}
