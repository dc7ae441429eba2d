//! `cleave-router` binary: parse the configuration, bind, run until SIGTERM / Ctrl-C.

use clap::Parser;
use cleave_proto::runtime;
use cleave_router::config::{Args, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    let config = Config::resolve(Args::parse())?;
    let listener = runtime::bind(&config.listen).await?;
    cleave_router::run(listener, config, runtime::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
