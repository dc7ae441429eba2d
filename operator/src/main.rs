//! `cleave-operator`: run Cleave from FileCluster / HashRange objects.
//!
//! `cleave-operator local --manifests DIR --data DIR` runs everything on this machine as child
//! processes. (The Kubernetes platform comes next.)

use clap::{Parser, Subcommand};
use cleave_operator::platform::local::run::{run, LocalArgs};

/// Cleave's operator.
#[derive(Debug, Parser)]
#[command(name = "cleave-operator", version, about)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax, e.g. `info` or `cleave_operator=debug`).
    #[arg(long, env = "CLEAVE_LOG", default_value = "info", global = true)]
    log: String,
    /// What to run.
    #[command(subcommand)]
    command: Command,
}

/// The platforms.
#[derive(Debug, Subcommand)]
enum Command {
    /// Run Cleave on this machine: redis-server, cleave-node and cleave-router as children.
    Local(LocalArgs),
    /// Run the operator on Kubernetes (in-cluster config, or the current kubeconfig context).
    Kube(cleave_operator::platform::kubernetes::controller::KubeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr);
    if std::env::var("CLEAVE_LOG_FORMAT").as_deref() == Ok("json") {
        logs.json().flatten_event(true).init();
    } else {
        logs.init();
    }
    match cli.command {
        Command::Local(args) => {
            if let Err(e) = run(args).await {
                eprintln!("cleave-operator: {e}");
                std::process::exit(1);
            }
        }
        Command::Kube(args) => {
            if let Err(e) = cleave_operator::platform::kubernetes::controller::run(args).await {
                eprintln!("cleave-operator: {e:#}");
                std::process::exit(1);
            }
        }
    }
    Ok(())
}
