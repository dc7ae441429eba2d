//! `cleave-node` binary: parse the configuration, bind, run until SIGTERM / Ctrl-C.

use anyhow::Context;
use clap::Parser;
use cleave_node::config::{Args, Config};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::resolve(Args::parse())?;
    let listener = TcpListener::bind(&config.listen).await.with_context(|| {
        format!(
            "cannot listen on {} (is the port already in use?)",
            config.listen
        )
    })?;
    cleave_node::run(listener, config, cleave_proto::runtime::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
