//! `cleave-proto`: what Cleave's components say to each other and to clients.
//!
//! - [`frame`] and [`connection`]: RESP framing, incremental and bounded;
//! - [`command`]: every command as one enum, parsed and encoded in one place;
//! - [`error`]: the error codes clients act on;
//! - [`handshake`]: connection housekeeping (HELLO, CLIENT, INFO, COMMAND...) for every server;
//! - [`path`] and [`hash`]: validated paths and the root hash that routes them;
//! - [`range`]: the range table (pure arithmetic: lookup, split, tiling checks);
//! - [`owned`]: what one cluster owns, and the hash every data key names;
//! - [`status`]: the JSON a node reports about itself;
//! - [`runtime`]: what every server binary shares (logging, shutdown signal, YAML config files);
//! - [`client`]: async clients for the CLI, tests, the operator and the router.
//!
//! This crate holds no I/O policy (no retries, no timeouts beyond connecting): those belong to
//! the router and the node.

pub mod auth;
pub mod client;
pub mod command;
pub mod connection;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod hash;
pub mod owned;
pub mod path;
pub mod range;
pub mod runtime;
pub mod status;

pub use client::{Client, MultiClient, MuxClient, Selected};
pub use command::Command;
pub use connection::Connection;
pub use error::{Error, ErrorCode, Reply, Result};
pub use frame::Frame;
pub use path::FilePath;
pub use range::{HashRange, RangeTable};
