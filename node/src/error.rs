//! The node's error type.

use cleave_proto::{ErrorCode, Reply};

/// Everything that can go wrong inside a node.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Redis refused or failed.
    #[error("{context}: {source}")]
    Redis {
        /// What we were doing.
        context: &'static str,
        /// Redis' error.
        #[source]
        source: redis::RedisError,
    },
    /// Replaying an entry failed in a way that is not a gap or a duplicate.
    #[error("{0}")]
    Apply(String),
    /// The store does not hold what the node knows it applied: its Redis lost data (restarted
    /// from an old AOF). The node must not lead or serve until it has caught up.
    #[error(
        "the store is at seq {found} but this node had applied {expected}: its Redis lost data"
    )]
    Lost {
        /// What the node had applied.
        expected: u64,
        /// What the store holds.
        found: u64,
    },
    /// A peer (leader, snapshot source) failed.
    #[error("peer: {0}")]
    Peer(#[from] cleave_proto::Error),
    /// A bad configuration.
    #[error("config: {0}")]
    Config(String),
    /// The admin HTTP server could not start.
    #[error("{0}")]
    Admin(#[from] cleave_admin::Error),
    /// Socket-level failure.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The cluster does not own this hash (any more): the range moved at table epoch `epoch`.
    #[error("{epoch} {hash}")]
    Moved {
        /// The table epoch of the cluster's ownership.
        epoch: u64,
        /// The request's root hash.
        hash: u32,
    },
}

impl Error {
    /// Wrap a Redis error with context.
    pub fn redis(context: &'static str, source: redis::RedisError) -> Self {
        Error::Redis { context, source }
    }

    /// What a client is told.
    pub fn to_reply(&self) -> Reply {
        match self {
            Error::Redis { .. } | Error::Peer(_) | Error::Io(_) | Error::Lost { .. } => Reply::new(
                ErrorCode::TryAgain,
                format!("node storage unavailable: {self}"),
            ),
            Error::Moved { .. } => Reply::new(ErrorCode::Moved, self.to_string()),
            _ => Reply::new(ErrorCode::Err, self.to_string()),
        }
    }
}

/// Result with the node's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
