//! The router's configuration: flags and env (clap), optionally a YAML file (the ConfigMap on
//! Kubernetes). Resolved once at start; a flag wins over the file, the file over the default.

use crate::error::{Error, Result};
use clap::Parser;
use cleave_proto::auth::Secret;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Command-line flags and environment of `cleave-router`.
#[derive(Debug, Clone, Parser, Default)]
#[command(name = "cleave-router", version, about = "Cleave router")]
pub struct Args {
    /// YAML file with any of the settings below (kebab-case keys, e.g. `retry-ms: 5000`).
    #[arg(long, env = "CLEAVE_ROUTER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on for clients (port 0 picks a free port) [default: 127.0.0.1:7000].
    #[arg(long, env = "CLEAVE_ROUTER_LISTEN")]
    pub listen: Option<String>,
    /// Address of the admin HTTP server (`/metrics`, `/healthz`, `/readyz`), e.g.
    /// `0.0.0.0:9122`; port 0 picks a free port (printed as `cleave-router admin on ADDR`).
    /// Off when unset.
    #[arg(long, env = "CLEAVE_ROUTER_ADMIN_LISTEN")]
    pub admin_listen: Option<String>,
    /// Range table (YAML or JSON) to start from; accepted pushes are written back to it.
    #[arg(long, env = "CLEAVE_ROUTER_TABLE")]
    pub table: Option<PathBuf>,
    /// Total time budget in milliseconds for transparent retries of one request [default: 5000].
    #[arg(long, env = "CLEAVE_ROUTER_RETRY_MS")]
    pub retry_ms: Option<u64>,
    /// File holding the installation's admin secret: `TABLE.PUSH` then needs `AUTH`. Unset: no
    /// authentication (development only).
    #[arg(long, env = "CLEAVE_ROUTER_AUTH_FILE")]
    pub auth_file: Option<PathBuf>,
}

/// The YAML file's shape: the same settings as the flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    admin_listen: Option<String>,
    table: Option<PathBuf>,
    retry_ms: Option<u64>,
    auth_file: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listen address.
    pub listen: String,
    /// Admin HTTP address (None: no admin server).
    pub admin_listen: Option<String>,
    /// Where the range table is read from at start and written to on every accepted push.
    pub table: Option<PathBuf>,
    /// Time budget for the transparent retries of one request.
    pub retry: Duration,
    /// The admin secret `TABLE.PUSH` needs (`None`: no authentication).
    pub admin_secret: Option<Arc<Secret>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:7000".into(),
            admin_listen: None,
            table: None,
            retry: Duration::from_millis(5000),
            admin_secret: None,
        }
    }
}

impl Config {
    /// Resolve flags over the optional file over defaults.
    pub fn resolve(args: Args) -> Result<Config> {
        let file: FileConfig = match &args.config {
            Some(path) => cleave_proto::runtime::read_yaml_file(path).map_err(Error::Config)?,
            None => FileConfig::default(),
        };
        let d = Config::default();
        let config = Config {
            listen: args.listen.or(file.listen).unwrap_or(d.listen),
            admin_listen: args.admin_listen.or(file.admin_listen),
            table: args.table.or(file.table),
            retry: args
                .retry_ms
                .or(file.retry_ms)
                .map(Duration::from_millis)
                .unwrap_or(d.retry),
            admin_secret: match args.auth_file.or(file.auth_file) {
                None => None,
                Some(path) => Some(Arc::new(
                    Secret::load(&path).map_err(|e| Error::Config(e.to_string()))?,
                )),
            },
        };
        if config.retry > Duration::from_secs(600) {
            return Err(Error::Config("retry-ms must be at most 600000".into()));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(args: &[&str], file: Option<&str>) -> Result<Config> {
        let mut argv = vec!["cleave-router"];
        argv.extend_from_slice(args);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.yaml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
            argv.push("--config");
            argv.push(path.to_str().unwrap());
        }
        Config::resolve(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = resolve(&[], None).unwrap();
        assert_eq!(c.listen, "127.0.0.1:7000");
        assert_eq!(c.table, None);
        assert_eq!(c.retry, Duration::from_millis(5000));
    }

    #[test]
    fn flags_win_over_file_over_defaults() {
        let c = resolve(
            &["--retry-ms", "250"],
            Some("retry-ms: 1000\nlisten: 127.0.0.1:0\ntable: /tmp/t.yaml\n"),
        )
        .unwrap();
        assert_eq!(c.retry, Duration::from_millis(250));
        assert_eq!(c.listen, "127.0.0.1:0");
        assert_eq!(c.table, Some(PathBuf::from("/tmp/t.yaml")));
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let e = resolve(&[], Some("retry-ms: [1")).unwrap_err().to_string();
        assert!(e.contains("router.yaml"), "{e}");
        let e = resolve(&[], Some("colour: blue\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
        let e = resolve(&["--retry-ms", "9999999"], None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("retry-ms"), "{e}");
    }
}
