//! The leader's side of replication: group commit of client writes ([`commit`]), the in-memory
//! tail of the log ([`cache`]), and serving followers' fetches and read-index queries
//! ([`serve`]).

pub mod cache;
pub mod commit;
pub mod serve;
