//! What a router says about itself in `HELLO` and `INFO`: its counters (open connections,
//! connections accepted, requests read) and the served table's epoch, next to the fields
//! every Cleave server reports (`cleave_proto::handshake`).

use crate::server::Shared;
use cleave_proto::handshake::ServerInfo;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What `INFO` reports about the router's work.
#[derive(Debug)]
pub struct Stats {
    started: Instant,
    /// Open client connections.
    pub open: AtomicU64,
    /// Requests read.
    pub commands: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            started: Instant::now(),
            open: AtomicU64::new(0),
            commands: AtomicU64::new(0),
        }
    }
}

/// What `HELLO` and `INFO` say about this router now.
pub fn server_info(shared: &Shared) -> ServerInfo {
    let st = &shared.stats;
    let table = shared.tables.current();
    let stat = |k: &str, v: u64| (k.to_string(), v.to_string());
    ServerInfo {
        server: "cleave-router",
        role: "master",
        addr: shared.id.clone(),
        uptime_s: st.started.elapsed().as_secs(),
        connected_clients: st.open.load(Ordering::Relaxed),
        secret: shared.admin_secret.clone(),
        sections: vec![(
            "stats",
            vec![
                stat(
                    "total_connections_received",
                    shared.connections.load(Ordering::Relaxed),
                ),
                stat(
                    "total_commands_processed",
                    st.commands.load(Ordering::Relaxed),
                ),
                stat("hedged_reads", shared.forwarder.hedges() as u64),
                stat("range_table_epoch", table.as_ref().map_or(0, |t| t.epoch)),
                stat(
                    "clusters",
                    table.as_ref().map_or(0, |t| t.clusters.len() as u64),
                ),
            ],
        )],
    }
}
