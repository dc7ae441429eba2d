//! `cleave`: the command-line client of a Cleave file store.
//!
//! One subcommand per module under [`cmd`]; this file parses the command line, runs the
//! subcommand and turns its error into `cleave: <message>` on stderr and an exit status scripts
//! can rely on (see [`error`]).

mod cmd;
mod error;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Command line of `cleave`.
#[derive(Debug, Parser)]
#[command(
    name = "cleave",
    version,
    about = "Command-line client of the Cleave file store"
)]
pub struct Cli {
    /// Address of a Cleave router (host:port), or several separated by commas (A,B): each
    /// command uses the first that answers and moves on to the next when one fails.
    #[arg(
        long,
        env = "CLEAVE_ROUTER",
        default_value = "127.0.0.1:7000",
        value_name = "HOST:PORT[,HOST:PORT...]",
        value_parser = cmd::Routers::parse,
        global = true
    )]
    pub router: cmd::Routers,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload a local file (or stdin with `-`) to a remote path.
    Put(cmd::put::Args),
    /// Download a remote file to a local file, a directory, or stdout (`-`, the default).
    Get(cmd::get::Args),
    /// List a remote directory.
    Ls(cmd::ls::Args),
    /// Delete a remote file.
    Rm(cmd::rm::Args),
    /// Show a remote file's or directory's metadata.
    Stat(cmd::stat::Args),
    /// Show the system: range table, routers, clusters and their nodes (local `.cleave/`, or
    /// Kubernetes with `--kube` / `-n NS`).
    Status(cmd::status::StatusArgs),
    /// Hand a FileCluster's leadership to another node (planned switchover): sets
    /// `spec.leader` in the local manifests folder, or on Kubernetes (`--kube` / `-n NS`).
    Switchover(cmd::switchover::Args),
    /// Split a FileCluster online: a new FileCluster takes the upper half of its range (writes
    /// the manifests the local operator watches; `--dry-run` prints them, for Kubernetes too).
    Split(cmd::split::Args),
}

/// Run the chosen subcommand.
async fn dispatch(cli: Cli) -> error::Result<()> {
    let router = &cli.router;
    match cli.command {
        Command::Put(args) => cmd::put::run(router, args).await,
        Command::Get(args) => cmd::get::run(router, args).await,
        Command::Ls(args) => cmd::ls::run(router, args).await,
        Command::Rm(args) => cmd::rm::run(router, args).await,
        Command::Stat(args) => cmd::stat::run(router, args).await,
        Command::Status(args) => cmd::status::run(&args).await,
        Command::Switchover(args) => cmd::switchover::run(args).await,
        Command::Split(args) => cmd::split::run(args).await,
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit with 2; --help and --version print to stdout and exit with 0.
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                error::EXIT_USAGE
            } else {
                error::EXIT_OK
            });
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cleave: cannot start: {e}");
            return ExitCode::from(error::EXIT_OTHER);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::from(error::EXIT_OK),
        Err(e) => {
            eprintln!("cleave: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("cleave").chain(args.iter().copied()))
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["put", "a.txt", "/r/a.txt", "--type", "text/plain"]).unwrap();
        let Command::Put(p) = cli.command else {
            panic!()
        };
        assert_eq!(p.local, "a.txt");
        assert_eq!(p.remote, "/r/a.txt");
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));

        let Command::Get(g) = parse(&["get", "/r/a"]).unwrap().command else {
            panic!()
        };
        assert_eq!(g.local, "-", "stdout by default");

        let Command::Ls(l) = parse(&["ls", "/r", "--limit", "5", "--all"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!((l.limit, l.all), (5, true));
        let Command::Ls(l) = parse(&["ls", "/r"]).unwrap().command else {
            panic!()
        };
        assert_eq!((l.limit, l.all), (1000, false));

        assert!(matches!(
            parse(&["rm", "/r/a"]).unwrap().command,
            Command::Rm(_)
        ));
        let Command::Stat(s) = parse(&["stat", "/r/a", "--json"]).unwrap().command else {
            panic!()
        };
        assert!(s.json);
    }

    #[test]
    fn the_router_comes_from_the_flag_anywhere_on_the_line() {
        let cli = parse(&["--router", "10.0.0.1:7000", "rm", "/r/a"]).unwrap();
        assert_eq!(cli.router.0, ["10.0.0.1:7000"]);
        let cli = parse(&["rm", "/r/a", "--router", "h:1"]).unwrap();
        assert_eq!(cli.router.0, ["h:1"]);
        let cli = parse(&["rm", "/r/a", "--router", "h:1,g:2"]).unwrap();
        assert_eq!(cli.router.0, ["h:1", "g:2"]);
        assert_eq!(cli.router.label(), "any of h:1, g:2");
    }

    #[test]
    fn bad_router_lists_are_usage_errors() {
        for bad in ["", "h:1,", ",h:1", "h:1,,g:2", "h", "h:port", "h:0", ":7"] {
            let e = parse(&["--router", bad, "rm", "/r/a"]).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(error::EXIT_USAGE), "{bad:?}");
            assert!(e.to_string().contains("router address"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn usage_errors_exit_with_2() {
        for bad in [
            &[][..],
            &["put", "only-one"],
            &["ls", "/r", "--limit", "0"],
            &["ls", "/r", "--limit", "10001"],
            &["frobnicate"],
            &["get"],
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.exit_code(), i32::from(error::EXIT_USAGE), "{bad:?}");
        }
    }

    #[test]
    fn help_describes_every_subcommand() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let help = Cli::command().render_help().to_string();
        for sub in ["put", "get", "ls", "rm", "stat", "status", "switchover"] {
            assert!(help.contains(sub), "{help}");
        }
    }
}
