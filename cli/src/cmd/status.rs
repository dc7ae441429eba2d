//! `cleave status`: what the operator last reported — range table epoch, ranges, routers,
//! clusters and their nodes — as tables, or as JSON with `--json`.
//!
//! Two sources, one [`Report`] (the operator's own type, `cleave_operator::reconcile::status`),
//! so both print the same shape by construction:
//!
//! - **local**: reads `DATA/status.json`, which `cleave-operator local` rewrites every pass
//!   (`DATA` is `--data`, else `.cleave` in the current folder, which is where `make run` keeps
//!   it); adds `operatorPid`, `updatedAt`, `data` and `operator` {pid, running};
//! - **Kubernetes** ([`kube`]): lists FileClusters, HashRanges, the `cleave-range-table`
//!   ConfigMap and the router pods of one namespace and builds the report from the objects'
//!   `.status` ([`from_kube`]); adds `kubernetes` {namespace, server}. Nothing inside the cluster
//!   is contacted: node and router facts are what the operator recorded.
//!
//! Which one: `--kube` or `--namespace` → Kubernetes; `--data` → local; otherwise local when
//! `.cleave/` exists in the current folder, else Kubernetes when a kubeconfig (`KUBECONFIG`,
//! `~/.kube/config`) or an in-cluster service account is there, else local (which then says
//! how to start one). See [`choose`].
//!
//! The JSON has `epoch`, `ranges[]` {name, start, end, cluster, servedBy, epoch, conditions},
//! `routers[]` {name, address, epoch, pid}, `clusters[]` {name, replicas, epoch, leader,
//! conditions[], nodes[] {name, role, address, redis, pid, appliedSeq, inSync}, lastFailover
//! {at, from, to, epoch, reason, durationMs} (absent before the first), failovers}, `errors[]`.
//! The human view prints the last failover under each cluster's header.

pub mod from_kube;
pub mod kube;
pub mod watch;

use crate::error::{Error, Result};
use cleave_operator::reconcile::status::Report;
use k8s_openapi::jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Flags of `cleave status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Data folder of a local Cleave (default: `.cleave` in the current folder).
    #[arg(long, env = "CLEAVE_DATA", conflicts_with_all = ["kube", "namespace"])]
    pub data: Option<PathBuf>,
    /// Read the Cleave of the current kubeconfig context (or of the cluster this runs in)
    /// instead of a local one. The default when there is no `.cleave/` here but a kubeconfig.
    #[arg(long)]
    pub kube: bool,
    /// Kubernetes namespace of the FileClusters (default: the context's namespace, else
    /// `default`). Implies `--kube`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the status as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// Refresh the view every `--interval` seconds until Ctrl-C, with each router's throughput
    /// (from its `/metrics`) and each follower's lag behind its leader.
    #[arg(long, conflicts_with = "json")]
    pub watch: bool,
    /// Seconds between refreshes of `--watch`.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
}

/// Where the status comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local data folder.
    Local(PathBuf),
    /// The Kubernetes API, in this namespace (`None`: the context's).
    Kube(Option<String>),
}

/// Pick the source from the flags, whether `.cleave/` exists here and whether a Kubernetes
/// configuration looks available ([`kube::config_available`]).
pub fn choose(args: &StatusArgs, local_exists: bool, kube_available: bool) -> Source {
    if args.kube || args.namespace.is_some() {
        return Source::Kube(args.namespace.clone());
    }
    if let Some(d) = &args.data {
        return Source::Local(d.clone());
    }
    if !local_exists && kube_available {
        return Source::Kube(None);
    }
    Source::Local(PathBuf::from(".cleave"))
}

/// What `cleave status` shows: the operator's report and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// The report, identical in shape on every platform.
    #[serde(flatten)]
    pub report: Report,
    /// Platform-specific fields beside it.
    #[serde(flatten)]
    pub origin: Origin,
}

/// Where a [`Status`] came from (its extra top-level JSON fields).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Origin {
    /// `DATA/status.json` of a local operator.
    #[serde(rename_all = "camelCase")]
    Local {
        /// Pid of the operator that wrote the file.
        operator_pid: Option<u32>,
        /// When it wrote it (RFC 3339).
        updated_at: Option<String>,
        /// The data folder, as the operator recorded it.
        data: Option<String>,
        /// Whether that operator still runs.
        operator: OperatorProcess,
        /// Admin HTTP addresses: `operator`, `nodes` {name: addr}, `routers` {name: addr}.
        #[serde(skip_serializing_if = "Option::is_none")]
        admin: Option<Value>,
    },
    /// The Kubernetes API.
    Kubernetes {
        /// Which API and namespace.
        kubernetes: KubeOrigin,
    },
}

/// The local operator process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OperatorProcess {
    /// Its pid, from `status.json`.
    pub pid: Option<u32>,
    /// Whether `/proc/<pid>` exists.
    pub running: bool,
}

/// Which Kubernetes API and namespace the report was read from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeOrigin {
    /// The namespace.
    pub namespace: String,
    /// The API server's URL.
    pub server: String,
}

/// `DATA/status.json` as `cleave-operator local` writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StatusFile {
    #[serde(default)]
    operator_pid: Option<u32>,
    #[serde(default)]
    updated_at: Option<String>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    admin: Option<Value>,
    #[serde(flatten)]
    report: Report,
}

/// Why there is no local status to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No status file where we looked.
    #[error("no local Cleave found in {0} (start one with `make run`, pass --data DIR, or --kube for Kubernetes)")]
    NotFound(PathBuf),
    /// The file is there but unreadable.
    #[error("{0}: {1}")]
    Unreadable(PathBuf, String),
}

/// Run `cleave status`: print to stdout.
pub async fn run(args: &StatusArgs) -> Result<()> {
    let source = choose(
        args,
        Path::new(".cleave").is_dir(),
        kube::config_available(),
    );
    if args.watch {
        return watch::run(&source, std::time::Duration::from_secs(args.interval)).await;
    }
    let status = read(&source).await?;
    let text = if args.json {
        json(&status)
    } else {
        render(&to_value(&status))
    };
    // A closed pipe (`cleave status | head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(())
}

/// The status from `source`.
pub async fn read(source: &Source) -> Result<Status> {
    match source {
        Source::Local(dir) => load(dir).map_err(|e| Error::Other(e.to_string())),
        Source::Kube(ns) => kube::load(ns.as_deref()).await,
    }
}

/// The status as a JSON value (keys sorted, as both platforms print them).
pub fn to_value(status: &Status) -> Value {
    serde_json::to_value(status).unwrap_or_default()
}

/// The `--json` output.
pub fn json(status: &Status) -> String {
    serde_json::to_string_pretty(&to_value(status)).unwrap_or_default() + "\n"
}

/// Read `dir/status.json` and add `operator` {pid, running}.
pub fn load(dir: &Path) -> Result<Status, StatusError> {
    let file = dir.join("status.json");
    let bytes = std::fs::read(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StatusError::NotFound(dir.to_path_buf()),
        _ => StatusError::Unreadable(file.clone(), e.to_string()),
    })?;
    let f: StatusFile =
        serde_json::from_slice(&bytes).map_err(|e| StatusError::Unreadable(file, e.to_string()))?;
    let pid = f.operator_pid;
    let running = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
    Ok(Status {
        report: f.report,
        origin: Origin::Local {
            operator_pid: pid,
            updated_at: f.updated_at,
            data: f.data,
            operator: OperatorProcess { pid, running },
            admin: f.admin,
        },
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Bool(true) => "yes".into(),
        Value::Bool(false) => "no".into(),
        other => other.to_string(),
    }
}

fn conditions(v: &Value) -> String {
    v["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| format!("{}={}", s(&c["type"]), s(&c["status"])))
        .collect::<Vec<_>>()
        .join(" ")
}

fn table(rows: &[Vec<String>], indent: &str) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let cells: Vec<String> = r
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(indent);
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The human view of a status document (failover ages counted from now).
pub fn render(v: &Value) -> String {
    render_at(v, Timestamp::now())
}

/// The `last failover:` line of a cluster, or `None` before its first failover. `now` gives the
/// age of `at`.
pub fn failover_line(c: &Value, now: Timestamp) -> Option<String> {
    let f = c.get("lastFailover").filter(|f| f.is_object())?;
    let took = match f["durationMs"].as_u64() {
        Some(ms) => format!("took {}", seconds(ms)),
        None => "in progress".into(),
    };
    let at = s(&f["at"]);
    let ago = f["at"]
        .as_str()
        .and_then(|t| t.parse::<Timestamp>().ok())
        .map(|t| {
            let ms = now
                .as_millisecond()
                .saturating_sub(t.as_millisecond())
                .max(0) as u64;
            format!(", {} ago", seconds(ms))
        })
        .unwrap_or_default();
    let count = match c["failovers"].as_u64() {
        Some(n) if n > 0 => format!("; {n} since the operator started"),
        _ => String::new(),
    };
    Some(format!(
        "last failover: {} -> {} at epoch {} ({}), {took}, at {at}{ago}{count}",
        s(&f["from"]),
        s(&f["to"]),
        s(&f["epoch"]),
        s(&f["reason"]),
    ))
}

/// Milliseconds as `1.8 s` (or `950 ms`, or `3 min 5 s`).
fn seconds(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{} min {} s", ms / 60_000, ms % 60_000 / 1000)
    } else {
        format!("{} h {} min", ms / 3_600_000, ms % 3_600_000 / 60_000)
    }
}

/// [`render`] with a chosen clock.
pub fn render_at(v: &Value, now: Timestamp) -> String {
    let mut out = String::new();
    if v["kubernetes"].is_object() {
        let k = &v["kubernetes"];
        out.push_str(&format!(
            "Cleave (kubernetes, namespace {}, server {})\nrange table epoch {}\n",
            s(&k["namespace"]),
            s(&k["server"]),
            s(&v["epoch"]),
        ));
        let empty = |key: &str| v[key].as_array().is_none_or(Vec::is_empty);
        if empty("clusters") && empty("ranges") {
            out.push_str(&format!(
                "no FileCluster or HashRange in namespace {} (another namespace? -n NS)\n",
                s(&k["namespace"])
            ));
        }
        out.push('\n');
    } else {
        let running = v["operator"]["running"].as_bool().unwrap_or(false);
        out.push_str(&format!(
            "Cleave (local, data {}): operator {} {}, updated {}\nrange table epoch {}\n\n",
            s(&v["data"]),
            s(&v["operator"]["pid"]),
            if running {
                "running"
            } else {
                "NOT RUNNING (this status is stale)"
            },
            s(&v["updatedAt"]),
            s(&v["epoch"]),
        ));
        if let Some(a) = v["admin"]["operator"].as_str() {
            out.insert_str(out.len() - 1, &format!("operator admin (/metrics) {a}\n"));
        }
    }
    let mut rows = vec![[
        "RANGE",
        "START",
        "END",
        "CLUSTER",
        "SERVED-BY",
        "CONDITIONS",
    ]
    .map(String::from)
    .to_vec()];
    for r in v["ranges"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&r["name"]),
            s(&r["start"]),
            s(&r["end"]),
            s(&r["cluster"]),
            s(&r["servedBy"]),
            conditions(r),
        ]);
    }
    out.push_str(&table(&rows, ""));
    out.push('\n');
    let admin = |kind: &str, name: &Value| s(&v["admin"][kind][s(name)]);
    let mut rows = vec![["ROUTER", "ADDRESS", "EPOCH", "PID", "ADMIN"]
        .map(String::from)
        .to_vec()];
    for r in v["routers"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&r["name"]),
            s(&r["address"]),
            s(&r["epoch"]),
            s(&r["pid"]),
            admin("routers", &r["name"]),
        ]);
    }
    out.push_str(&table(&rows, ""));
    for c in v["clusters"].as_array().into_iter().flatten() {
        let header = format!(
            "CLUSTER {}  leader {}  epoch {}  {}",
            s(&c["name"]),
            s(&c["leader"]),
            s(&c["epoch"]),
            conditions(c)
        );
        out.push_str(&format!("\n{}\n", header.trim_end()));
        if let Some(line) = failover_line(c, now) {
            out.push_str(&format!("  {line}\n"));
        }
        let mut rows = vec![[
            "NODE", "ROLE", "ADDRESS", "REDIS", "PID", "APPLIED", "IN-SYNC", "ADMIN",
        ]
        .map(String::from)
        .to_vec()];
        for n in c["nodes"].as_array().into_iter().flatten() {
            rows.push(vec![
                s(&n["name"]),
                s(&n["role"]),
                s(&n["address"]),
                s(&n["redis"]),
                s(&n["pid"]),
                s(&n["appliedSeq"]),
                s(&n["inSync"]),
                admin("nodes", &n["name"]),
            ]);
        }
        out.push_str(&table(&rows, "  "));
    }
    let errors: Vec<String> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(s)
        .collect();
    if !errors.is_empty() {
        out.push_str("\nERRORS (the operator changes nothing until these are fixed)\n");
        for e in errors {
            out.push_str(&format!("  {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_ranges_routers_and_nodes() {
        let v = serde_json::json!({
            "epoch": 1, "data": "/x/.cleave", "updatedAt": "t", "operatorPid": 1,
            "operator": {"pid": 1, "running": true},
            "ranges": [{"name": "low", "start": 0, "end": 2147483647, "cluster": "fc-a", "servedBy": "fc-a",
                        "conditions": [{"type": "Ready", "status": "True"}]}],
            "routers": [{"name": "router-0", "address": "127.0.0.1:7000", "epoch": 1, "pid": 42}],
            "clusters": [{"name": "fc-a", "leader": "fc-a-0", "epoch": 1, "conditions": [],
                          "nodes": [{"name": "fc-a-0", "role": "leader", "address": "127.0.0.1:7002",
                                     "redis": "127.0.0.1:7003", "pid": 7, "appliedSeq": 12, "inSync": true}]},
                         {"name": "fc-b", "leader": "fc-b-2", "epoch": 3, "conditions": [], "nodes": [],
                          "failovers": 2,
                          "lastFailover": {"at": "2025-01-01T00:00:00Z", "from": "fc-b-0", "to": "fc-b-2",
                                           "epoch": 3, "reason": "leader stopped answering",
                                           "durationMs": 1800}}],
            "errors": ["HashRanges low and high overlap"]
        });
        let now: Timestamp = "2025-01-01T00:00:12.5Z".parse().unwrap();
        let text = render_at(&v, now);
        assert!(text.contains("range table epoch 1"), "{text}");
        assert!(
            text.contains(
                "CLUSTER fc-b  leader fc-b-2  epoch 3\n  last failover: fc-b-0 -> fc-b-2 at epoch 3 \
                 (leader stopped answering), took 1.8 s, at 2025-01-01T00:00:00Z, 12.5 s ago; \
                 2 since the operator started\n"
            ),
            "{text}"
        );
        let fc_a = text.split("CLUSTER fc-a").nth(1).unwrap();
        assert!(
            !fc_a
                .split("CLUSTER fc-b")
                .next()
                .unwrap()
                .contains("failover"),
            "no line before the first failover: {text}"
        );
        assert!(
            text.contains("low    0      2147483647  fc-a     fc-a       Ready=True"),
            "{text}"
        );
        assert!(
            text.contains("router-0  127.0.0.1:7000  1      42"),
            "{text}"
        );
        assert!(
            text.contains("fc-a-0  leader  127.0.0.1:7002  127.0.0.1:7003  7    12       yes"),
            "{text}"
        );
        assert!(text.contains("overlap"), "{text}");
    }

    fn args(line: &[&str]) -> StatusArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: StatusArgs,
        }
        P::try_parse_from(std::iter::once("status").chain(line.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn the_source_follows_flags_then_the_folder_then_the_kubeconfig() {
        let here = || Source::Local(PathBuf::from(".cleave"));
        // No flags: a local .cleave/ wins; without one, a kubeconfig; without both, local
        // (which then says how to start one).
        assert_eq!(choose(&args(&[]), true, true), here());
        assert_eq!(choose(&args(&[]), false, true), Source::Kube(None));
        assert_eq!(choose(&args(&[]), false, false), here());
        // Flags decide.
        assert_eq!(choose(&args(&["--kube"]), true, false), Source::Kube(None));
        assert_eq!(
            choose(&args(&["-n", "store"]), true, true),
            Source::Kube(Some("store".into()))
        );
        assert_eq!(
            choose(&args(&["--kube", "--namespace", "s"]), true, true),
            Source::Kube(Some("s".into()))
        );
        assert_eq!(
            choose(&args(&["--data", "/d"]), false, true),
            Source::Local(PathBuf::from("/d"))
        );
    }

    #[test]
    fn data_and_kube_flags_exclude_each_other() {
        use clap::Parser;
        #[derive(clap::Parser, Debug)]
        struct P {
            #[command(flatten)]
            a: StatusArgs,
        }
        for bad in [
            &["--data", "/d", "--kube"][..],
            &["--data", "/d", "-n", "x"],
        ] {
            let e = P::try_parse_from(std::iter::once("status").chain(bad.iter().copied()))
                .unwrap_err();
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::ArgumentConflict,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_local_json_is_the_status_file_plus_the_operator() {
        use cleave_operator::platform::local::run::StatusFile;
        use cleave_operator::reconcile::status::{ClusterReport, RangeReport, RouterReport};
        let dir = tempfile::tempdir().unwrap();
        let file = StatusFile {
            operator_pid: std::process::id(),
            updated_at: "2025-01-01T00:00:00Z".into(),
            data: dir.path().display().to_string(),
            admin: cleave_operator::platform::local::run::AdminAddresses {
                operator: Some("127.0.0.1:9120".into()),
                nodes: [("fc-a-2".to_string(), "127.0.0.1:9121".to_string())].into(),
                routers: [("router-0".to_string(), "127.0.0.1:9122".to_string())].into(),
            },
            report: Report {
                split: None,
                epoch: 2,
                ranges: vec![RangeReport {
                    name: "all".into(),
                    start: 0,
                    end: 4294967295,
                    cluster: "fc-a".into(),
                    status: Default::default(),
                }],
                routers: vec![RouterReport {
                    name: "router-0".into(),
                    address: "127.0.0.1:7000".into(),
                    epoch: Some(2),
                    pid: Some(9),
                }],
                clusters: vec![ClusterReport {
                    name: "fc-a".into(),
                    replicas: 3,
                    status: cleave_operator::crd::FileClusterStatus {
                        leader: Some("fc-a-2".into()),
                        epoch: 3,
                        last_failover: Some(cleave_operator::crd::Failover {
                            at: "2025-01-01T00:00:00Z".into(),
                            from: "fc-a-0".into(),
                            to: "fc-a-2".into(),
                            epoch: 3,
                            reason: "switchover".into(),
                            duration_ms: Some(1800),
                        }),
                        failovers: 1,
                        ..Default::default()
                    },
                }],
                errors: vec!["e".into()],
                silent_leaders: Vec::new(),
            },
        };
        let written = serde_json::to_value(&file).unwrap();
        std::fs::write(dir.path().join("status.json"), written.to_string()).unwrap();
        let status = load(dir.path()).unwrap();
        let mut want = written;
        want["operator"] = serde_json::json!({"pid": std::process::id(), "running": true});
        assert_eq!(
            to_value(&status),
            want,
            "what status.json holds, plus operator"
        );
        assert_eq!(
            json(&status),
            serde_json::to_string_pretty(&want).unwrap() + "\n"
        );
        let c = &to_value(&status)["clusters"][0];
        assert_eq!(c["lastFailover"]["to"], "fc-a-2");
        assert_eq!(c["lastFailover"]["durationMs"], 1800);
        assert_eq!(c["failovers"], 1);
        let text = render(&to_value(&status));
        assert!(text.starts_with("Cleave (local, data "));
        assert!(
            text.contains("operator admin (/metrics) 127.0.0.1:9120\n"),
            "{text}"
        );
        let router_row = text.lines().find(|l| l.starts_with("router-0")).unwrap();
        assert!(router_row.ends_with("127.0.0.1:9122"), "{text}");
        assert!(
            text.contains("last failover: fc-a-0 -> fc-a-2 at epoch 3"),
            "{text}"
        );
    }

    #[test]
    fn a_failover_in_progress_and_durations() {
        let now: Timestamp = "2025-01-01T01:00:00Z".parse().unwrap();
        let c = serde_json::json!({"lastFailover": {"at": "2025-01-01T00:58:55Z", "from": "a",
            "to": "b", "epoch": 9, "reason": "switchover"}, "failovers": 0});
        assert_eq!(
            failover_line(&c, now).unwrap(),
            "last failover: a -> b at epoch 9 (switchover), in progress, at 2025-01-01T00:58:55Z, 1 min 5 s ago"
        );
        assert_eq!(
            failover_line(&serde_json::json!({"failovers": 0}), now),
            None
        );
        assert_eq!(seconds(950), "950 ms");
        assert_eq!(seconds(7_300_000), "2 h 1 min");
    }

    #[test]
    fn a_missing_folder_says_how_to_start_one() {
        let err = load(Path::new("/nonexistent/.cleave"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("make run"), "{err}");
    }
}
