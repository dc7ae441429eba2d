//! The CLI's errors and the exit status each one maps to.
//!
//! Scripts rely on the status: 0 ok, 1 other error, 2 usage error (clap), 3 not found,
//! 4 bad path or bad input, 5 cannot reach the router (or, for `cleave status --kube`, the
//! Kubernetes API server).

use cleave_proto::{ErrorCode, Reply};

/// Exit status: success.
pub const EXIT_OK: u8 = 0;
/// Exit status: any other error.
pub const EXIT_OTHER: u8 = 1;
/// Exit status: usage error (clap uses it for bad arguments).
pub const EXIT_USAGE: u8 = 2;
/// Exit status: the file or directory does not exist.
pub const EXIT_NOT_FOUND: u8 = 3;
/// Exit status: bad path or bad input.
pub const EXIT_BAD_INPUT: u8 = 4;
/// Exit status: the router (or the Kubernetes API server) cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 5;

/// Everything a subcommand can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The router refused the request.
    #[error("{0}")]
    Remote(Reply),
    /// The router could not be reached, or the connection broke.
    #[error("cannot reach the router at {addr}: {reason}")]
    Unreachable {
        /// The router's address.
        addr: String,
        /// What went wrong.
        reason: String,
    },
    /// The Kubernetes API server could not be reached (`cleave status --kube`).
    #[error("cannot reach the Kubernetes API server at {server}: {reason}")]
    ApiUnreachable {
        /// The API server's URL.
        server: String,
        /// What went wrong.
        reason: String,
    },
    /// The input is not acceptable (bad path, a directory where a file is needed, ...).
    #[error("{0}")]
    BadInput(String),
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Local {
        /// The local path (or `-` for stdin / stdout).
        path: String,
        /// The failure.
        #[source]
        source: std::io::Error,
    },
    /// Anything else (an unexpected reply, a file that keeps changing).
    #[error("{0}")]
    Other(String),
}

/// Result with the CLI's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Remote(r) => match r.code {
                ErrorCode::NotFound => EXIT_NOT_FOUND,
                ErrorCode::BadPath | ErrorCode::TooLarge => EXIT_BAD_INPUT,
                _ => EXIT_OTHER,
            },
            Error::Unreachable { .. } | Error::ApiUnreachable { .. } => EXIT_UNREACHABLE,
            Error::BadInput(_) => EXIT_BAD_INPUT,
            Error::Local { source, .. } => match source.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::IsADirectory => EXIT_BAD_INPUT,
                _ => EXIT_OTHER,
            },
            Error::Other(_) => EXIT_OTHER,
        }
    }

    /// Wrap a local I/O failure on `path`.
    pub fn local(path: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Local { path, source }
    }

    /// Convert a protocol error on the connection to `router`.
    pub fn from_proto(router: &str, e: cleave_proto::Error) -> Error {
        match e {
            cleave_proto::Error::Reply(r) if r.code == ErrorCode::BadPath => {
                Error::BadInput(r.message)
            }
            cleave_proto::Error::Reply(r) => Error::Remote(r),
            cleave_proto::Error::Connect { source, .. } => Error::Unreachable {
                addr: router.to_string(),
                reason: source.to_string(),
            },
            e @ (cleave_proto::Error::Connection(_)
            | cleave_proto::Error::Closed
            | cleave_proto::Error::Timeout) => Error::Unreachable {
                addr: router.to_string(),
                reason: e.to_string(),
            },
            cleave_proto::Error::Unexpected(s) => Error::Other(format!("unexpected reply: {s}")),
        }
    }

    /// The reply code, when the router refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Remote(r) => Some(r.code),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn remote(code: ErrorCode) -> Error {
        Error::from_proto("r:1", cleave_proto::Error::Reply(Reply::new(code, "why")))
    }

    #[test]
    fn every_condition_has_its_exit_status() {
        assert_eq!(remote(ErrorCode::NotFound).exit_code(), EXIT_NOT_FOUND);
        assert_eq!(remote(ErrorCode::BadPath).exit_code(), EXIT_BAD_INPUT);
        assert_eq!(remote(ErrorCode::TooLarge).exit_code(), EXIT_BAD_INPUT);
        for code in [ErrorCode::TryAgain, ErrorCode::Err, ErrorCode::Stale] {
            assert_eq!(remote(code).exit_code(), EXIT_OTHER);
        }
        let refused = cleave_proto::Error::Connect {
            addr: "r:1".into(),
            source: io::ErrorKind::ConnectionRefused.into(),
        };
        let e = Error::from_proto("r:1", refused);
        assert_eq!(e.exit_code(), EXIT_UNREACHABLE);
        assert!(
            e.to_string().starts_with("cannot reach the router at r:1"),
            "{e}"
        );
        let broken = Error::from_proto("r:1", cleave_proto::Error::Closed);
        assert_eq!(broken.exit_code(), EXIT_UNREACHABLE);
        let e = Error::from_proto("r:1", cleave_proto::Error::Unexpected(":1".into()));
        assert_eq!(e.exit_code(), EXIT_OTHER);
        let missing = Error::local("f.txt")(io::ErrorKind::NotFound.into());
        assert_eq!(missing.exit_code(), EXIT_BAD_INPUT);
        assert!(missing.to_string().starts_with("f.txt: "), "{missing}");
        let full = Error::local("f.txt")(io::ErrorKind::StorageFull.into());
        assert_eq!(full.exit_code(), EXIT_OTHER);
        assert_eq!(Error::BadInput("x".into()).exit_code(), EXIT_BAD_INPUT);
        let api = Error::ApiUnreachable {
            server: "https://k:6443/".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(api.exit_code(), EXIT_UNREACHABLE);
        assert_eq!(
            api.to_string(),
            "cannot reach the Kubernetes API server at https://k:6443/: connection refused"
        );
        assert_eq!(EXIT_OK, 0);
        assert_eq!(EXIT_USAGE, 2);
    }
}
