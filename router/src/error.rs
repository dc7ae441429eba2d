//! The router's error type: what can stop a router from starting or a table from being taken.

use std::path::PathBuf;

/// Everything that can go wrong in the router outside of a single request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A bad configuration (flags, env or config file).
    #[error("config: {0}")]
    Config(String),
    /// The table file could not be read, parsed or validated.
    #[error("range table {path}: {message}")]
    TableFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The admin HTTP server could not start.
    #[error("{0}")]
    Admin(#[from] cleave_admin::Error),
    /// Socket-level failure (binding, accepting).
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Result with the router's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
