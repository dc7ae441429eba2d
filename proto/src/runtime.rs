//! Small pieces every Cleave server binary needs the same way: logging,
//! binding, the shutdown signal, and reading a YAML config file (the ConfigMap on Kubernetes).

use serde::de::DeserializeOwned;
use std::path::Path;

/// Log to stderr, filtered by `RUST_LOG` (default `info`); one JSON object per line when
/// `CLEAVE_LOG_FORMAT=json` (for log collectors), with the current span's fields (node id,
/// cluster, epoch) in every line.
pub fn init_tracing() {
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    if json_logs() {
        logs.json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
}

/// Whether `CLEAVE_LOG_FORMAT` asks for JSON logs.
pub fn json_logs() -> bool {
    std::env::var("CLEAVE_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// Bind a server's listening socket, with an error that says what to check.
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} (is the port already in use?): {e}"),
        )
    })
}

/// Completes on SIGTERM (what Kubernetes and the local platform send) or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Read a YAML config file; an empty file is the default. Errors name the file.
pub fn read_yaml_file<T: DeserializeOwned + Default>(path: &Path) -> Result<T, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Default, Debug)]
    struct Sample {
        #[allow(dead_code)]
        a: Option<u32>,
    }

    #[test]
    fn yaml_files_empty_bad_and_missing() {
        let dir = std::env::temp_dir().join(format!("cleave-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("c.yaml");
        std::fs::write(&p, "  \n").unwrap();
        assert!(read_yaml_file::<Sample>(&p).is_ok());
        std::fs::write(&p, "a: [").unwrap();
        assert!(read_yaml_file::<Sample>(&p).unwrap_err().contains("c.yaml"));
        assert!(read_yaml_file::<Sample>(&dir.join("missing.yaml"))
            .unwrap_err()
            .contains("cannot read"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
