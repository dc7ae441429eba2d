//! Error codes a client can act on, and the crate's error type.
//!
//! On the wire an error is `-CODE message`. The code is the contract: routers retry on
//! `MOVED`, `NOTLEADER` and `TRYAGAIN`; the CLI maps codes to exit statuses; the message is for
//! humans.

use crate::connection::ConnectionError;
use crate::frame::Frame;
use std::fmt;

/// One code per condition a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The file or directory does not exist.
    NotFound,
    /// The file already exists (conditional create).
    Exists,
    /// The path is not valid (see [`crate::path`]).
    BadPath,
    /// A value or request is larger than allowed.
    TooLarge,
    /// This node does not serve the key's hash range (stale routing table).
    Moved,
    /// This node is not the leader; the message may name the leader's address.
    NotLeader,
    /// The request carried an older epoch than the receiver knows.
    Stale,
    /// A transient condition (no quorum yet, catching up): retry shortly.
    TryAgain,
    /// The node refuses writes (e.g. a range being moved away during cutover).
    ReadOnly,
    /// Anything else: bad arguments, unknown command, internal failure.
    Err,
}

impl ErrorCode {
    /// Every code, for tests and docs.
    pub const ALL: [ErrorCode; 10] = [
        ErrorCode::NotFound,
        ErrorCode::Exists,
        ErrorCode::BadPath,
        ErrorCode::TooLarge,
        ErrorCode::Moved,
        ErrorCode::NotLeader,
        ErrorCode::Stale,
        ErrorCode::TryAgain,
        ErrorCode::ReadOnly,
        ErrorCode::Err,
    ];

    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "NOTFOUND",
            ErrorCode::Exists => "EXISTS",
            ErrorCode::BadPath => "BADPATH",
            ErrorCode::TooLarge => "TOOLARGE",
            ErrorCode::Moved => "MOVED",
            ErrorCode::NotLeader => "NOTLEADER",
            ErrorCode::Stale => "STALE",
            ErrorCode::TryAgain => "TRYAGAIN",
            ErrorCode::ReadOnly => "READONLY",
            ErrorCode::Err => "ERR",
        }
    }

    /// Parse the code word of an error line; unknown words map to `Err`.
    pub fn parse(word: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == word)
            .unwrap_or(ErrorCode::Err)
    }

    /// Whether a router should retry the request (after refreshing its view).
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::Moved | ErrorCode::NotLeader | ErrorCode::TryAgain | ErrorCode::Stale
        )
    }
}

/// A protocol-level error: a code and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// What a client can act on.
    pub code: ErrorCode,
    /// What a human reads.
    pub message: String,
}

impl Reply {
    /// Build one.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Reply {
            code,
            message: message.into(),
        }
    }

    /// Parse `CODE message` (the text of a RESP error).
    pub fn parse(line: &str) -> Self {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        let code = ErrorCode::parse(word);
        let message = if code == ErrorCode::Err && word != "ERR" {
            line
        } else {
            rest
        };
        Reply {
            code,
            message: message.to_string(),
        }
    }

    /// As a RESP error frame.
    pub fn to_frame(&self) -> Frame {
        Frame::Error(format!("{} {}", self.code.as_str(), self.message))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for Reply {}

/// Errors of this crate: a server's refusal, or a transport failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error reply.
    #[error("{0}")]
    Reply(Reply),
    /// The connection failed.
    #[error("connection: {0}")]
    Connection(#[from] ConnectionError),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where we tried to connect.
        addr: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The server answered with a frame of the wrong shape.
    #[error("unexpected reply: {0}")]
    Unexpected(String),
    /// The connection closed before the reply came.
    #[error("connection closed")]
    Closed,
    /// A request exceeded its deadline.
    #[error("timed out")]
    Timeout,
}

impl From<Reply> for Error {
    fn from(r: Reply) -> Self {
        Error::Reply(r)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Connection(ConnectionError::Io(e))
    }
}

impl Error {
    /// The reply code, when the server refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Reply(r) => Some(r.code),
            _ => None,
        }
    }
}

/// Result with this crate's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for code in ErrorCode::ALL {
            let r = Reply::new(code, "why");
            let Frame::Error(line) = r.to_frame() else {
                panic!()
            };
            assert_eq!(Reply::parse(&line), r);
        }
    }

    #[test]
    fn foreign_errors_keep_their_text() {
        let r = Reply::parse("WRONGTYPE Operation against a key");
        assert_eq!(r.code, ErrorCode::Err);
        assert_eq!(r.message, "WRONGTYPE Operation against a key");
    }
}
