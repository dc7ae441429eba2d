//! `cleave-node` binary: parse the configuration, bind, run until SIGTERM / Ctrl-C.

use clap::Parser;
use cleave_node::config::{Args, Config};
use cleave_proto::runtime;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    runtime::init_tracing();
    let config = Config::resolve(Args::parse())?;
    // The node presents the installation's credential to its leader (replication, resync).
    cleave_proto::auth::use_credential(config.admin_secret.as_deref().cloned());
    let listener = runtime::bind(&config.listen).await?;
    cleave_node::run(listener, config, runtime::shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}
