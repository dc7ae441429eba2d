//! One module per subcommand, and what they share: connecting, checking remote paths, reading
//! local input in pieces, and progress bars.

pub mod get;
pub mod ls;
pub mod put;
pub mod rm;
pub mod split;
pub mod stat;
pub mod status;
pub mod switchover;

use crate::error::{Error, Result};
use cleave_proto::client::multi::parse_addrs;
use cleave_proto::{ErrorCode, FilePath, MultiClient};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Files up to this size travel in one request; bigger ones in pieces of this size.
pub const PIECE: usize = 8 * 1024 * 1024;

/// Extra tries of an idempotent piece (`PART`, `READ`) that came back `-TRYAGAIN` after the
/// router's own retries: a long transfer should survive a busy moment.
pub const PIECE_RETRIES: u32 = 3;

/// Counts the extra tries of one piece and pauses between them (250 ms, then doubling).
#[derive(Debug)]
pub struct Retries {
    tries: u32,
    pause: Duration,
}

impl Retries {
    /// A fresh count for one piece.
    pub fn new() -> Retries {
        Retries::with_pause(Duration::from_millis(250))
    }

    /// A fresh count with a chosen first pause.
    pub fn with_pause(pause: Duration) -> Retries {
        Retries { tries: 0, pause }
    }

    /// Whether to try again after `e` (only `-TRYAGAIN`, at most [`PIECE_RETRIES`] times);
    /// pauses first when so.
    pub async fn again(&mut self, e: &cleave_proto::Error) -> bool {
        if e.code() != Some(ErrorCode::TryAgain) || self.tries >= PIECE_RETRIES {
            return false;
        }
        self.tries += 1;
        tokio::time::sleep(self.pause).await;
        self.pause *= 2;
        true
    }
}

/// The router addresses of `--router` / `CLEAVE_ROUTER`: one `host:port`, or several separated
/// by commas. Every command uses the first that answers and moves on to the next when a
/// connection fails or breaks mid-request ([`MultiClient`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routers(pub Vec<String>);

impl Routers {
    /// Parse `A` or `A,B,...` (clap's value parser: a bad list is a usage error, exit 2).
    pub fn parse(list: &str) -> std::result::Result<Routers, String> {
        parse_addrs(list).map(Routers).map_err(|e| e.to_string())
    }

    /// How errors name the routers: the address, or `any of A, B`.
    pub fn label(&self) -> String {
        match &self.0[..] {
            [one] => one.clone(),
            many => format!("any of {}", many.join(", ")),
        }
    }

    /// Turn a protocol error into the CLI's, naming the routers.
    pub fn error(&self, e: cleave_proto::Error) -> Error {
        Error::from_proto(&self.label(), e)
    }
}

/// Connect to the first router that answers.
pub async fn connect(routers: &Routers) -> Result<MultiClient> {
    MultiClient::connect(routers.0.clone())
        .await
        .map_err(|e| routers.error(e))
}

/// Validate a remote path before anything is sent (exit status 4 when it is bad).
pub fn remote_path(raw: &str) -> Result<FilePath> {
    FilePath::parse(raw).map_err(|r| Error::BadInput(r.message))
}

/// Read up to `max` bytes, fewer only at the end of the input.
pub async fn read_piece(
    input: &mut (impl AsyncRead + Unpin),
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(max);
    input.take(max as u64).read_to_end(&mut buf).await?;
    Ok(buf)
}

/// A progress bar on stderr for transfers larger than one piece (hidden when stderr is not a
/// terminal). `total` is `None` when the size is unknown (stdin).
pub fn progress(total: Option<u64>) -> ProgressBar {
    let big = total.is_none_or(|t| t > PIECE as u64);
    if !big || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match total {
        Some(t) => ProgressBar::new(t).with_style(
            ProgressStyle::with_template(
                "{bar:40.cyan/blue} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::no_length().with_style(
            ProgressStyle::with_template("{spinner} {bytes} {binary_bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pieces_are_full_until_the_end() {
        let data: Vec<u8> = (0..25u8).collect();
        let mut input = &data[..];
        assert_eq!(read_piece(&mut input, 10).await.unwrap().len(), 10);
        assert_eq!(read_piece(&mut input, 10).await.unwrap().len(), 10);
        assert_eq!(
            read_piece(&mut input, 10).await.unwrap(),
            (20..25u8).collect::<Vec<_>>()
        );
        assert!(read_piece(&mut input, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn pieces_are_retried_on_tryagain_only() {
        let busy = cleave_proto::Error::Reply(cleave_proto::Reply::new(ErrorCode::TryAgain, "x"));
        let mut r = Retries::with_pause(Duration::from_millis(1));
        for _ in 0..PIECE_RETRIES {
            assert!(r.again(&busy).await);
        }
        assert!(!r.again(&busy).await, "bounded");
        let mut r = Retries::with_pause(Duration::from_millis(1));
        assert!(!r.again(&cleave_proto::Error::Closed).await);
        let gone = cleave_proto::Error::Reply(cleave_proto::Reply::new(ErrorCode::NotFound, "x"));
        assert!(!r.again(&gone).await);
    }

    #[test]
    fn remote_paths_are_checked_locally() {
        assert!(remote_path("/photos/cat.jpg").is_ok());
        for bad in ["photos", "/", "/a//b", "/a/../b", "/a/"] {
            let e = remote_path(bad).unwrap_err();
            assert_eq!(e.exit_code(), crate::error::EXIT_BAD_INPUT, "{bad}");
        }
    }
}
