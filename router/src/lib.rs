//! `cleave-router`: holds the range table and forwards every client request to the node that
//! should serve it.
//!
//! Where things happen:
//! - [`config`]: flags, env and the YAML config file;
//! - [`table`]: the served range table and the rules for pushes (epoch, tiling, persistence);
//! - [`route`]: pure routing decisions (hash → cluster → node, what a reply means);
//! - [`pool`]: pooled, multiplexed connections to nodes;
//! - [`forward`]: one request's journey, with transparent bounded retries;
//! - [`info`]: the router's counters for `INFO`;
//! - [`redis`]: Redis verbs (`GET`, `SET`, `DEL`, ...) as aliases of the file commands;
//! - [`session`]: sessions, the order of one connection's requests, its write pipeline;
//! - [`server`]: the accept loop and pipelined connections.

pub mod config;
pub mod error;
pub mod forward;
pub mod info;
pub mod pool;
pub mod redis;
pub mod route;
pub mod server;
pub mod session;
pub mod table;

pub use config::Config;
pub use error::{Error, Result};

use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Extra time, beyond the retry budget, that requests in flight get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Run a router on `listener` until `shutdown` completes, then drain requests in flight.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let tables = Arc::new(table::Tables::load(config.table.clone())?);
    let addr = listener.local_addr()?.to_string();
    match tables.current() {
        Some(t) => tracing::info!("starting with range table epoch {}", t.epoch),
        None => tracing::info!("starting without a range table; waiting for TABLE.PUSH"),
    }
    let shared = Arc::new(server::Shared {
        forwarder: forward::Forwarder::new(tables.clone(), config.retry),
        tables,
        id: addr.clone(),
        router_id: session::router_id(),
        connections: Default::default(),
        stats: Default::default(),
        admin_secret: config.admin_secret.clone(),
    });
    println!("cleave-router listening on {addr}");
    let _ = std::io::stdout().flush();
    server::serve(listener, shared, shutdown, config.retry + SHUTDOWN_GRACE).await;
    Ok(())
}
