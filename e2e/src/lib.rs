//! A harness for process-level tests: start real `redis-server`, `cleave-node` and
//! `cleave-router` processes on free loopback ports in temporary folders, wait for conditions
//! with bounded, explained timeouts, and inject faults (`kill -9`, `SIGSTOP`/`SIGCONT`, loopback
//! partitions with nftables).
//!
//! Binaries are taken from the cargo target folder of the running test (`make test` builds the
//! whole workspace first).

pub mod checker;
pub mod clients;
pub mod cluster;
pub mod history;
pub mod metrics;
pub mod partition;
pub mod ports;
pub mod process;
pub mod system;
pub mod workload;

pub use checker::Checker;
pub use cluster::{Cluster, ClusterOptions};
pub use history::History;
pub use process::{free_port, wait_until, NodeProc, RedisProc, RouterProc};
pub use system::System;
pub use workload::{assert_history, Workload};
