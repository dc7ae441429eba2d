//! `cleave status`: what the operator last reported — range table epoch, ranges, routers,
//! clusters and their nodes — as tables, or as JSON with `--json`.
//!
//! Local platform: reads `DATA/status.json`, which `cleave-operator local` rewrites every pass
//! (`DATA` is `--data`, else `.cleave` in the current folder, which is where `make run` keeps it).
//! The JSON has `epoch`, `ranges[]` {start, end, cluster, servedBy, ...}, `routers[]` {address,
//! epoch, ...}, `clusters[]` {name, epoch, leader, conditions[], nodes[] {name, role, address,
//! redis, pid, appliedSeq, inSync}}, `errors[]`, plus `operator` {pid, running}.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Flags of `cleave status`.
#[derive(Debug, Clone, clap::Args)]
pub struct StatusArgs {
    /// Data folder of a local Cleave (default: `.cleave` in the current folder).
    #[arg(long, env = "CLEAVE_DATA")]
    pub data: Option<PathBuf>,
    /// Print the status as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Why there is no status to show.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// No status file where we looked.
    #[error("no local Cleave found in {0} (start one with `make run`, or pass --data DIR)")]
    NotFound(PathBuf),
    /// The file is there but unreadable.
    #[error("{0}: {1}")]
    Unreadable(PathBuf, String),
}

/// Run `cleave status`: print to stdout.
pub fn run(args: &StatusArgs) -> Result<(), StatusError> {
    let dir = args
        .data
        .clone()
        .unwrap_or_else(|| PathBuf::from(".cleave"));
    let status = load(&dir)?;
    let text = if args.json {
        serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
    } else {
        render(&status)
    };
    // A closed pipe (`cleave status | head`) is not an error.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
    Ok(())
}

/// Read `dir/status.json` and add `operator` {pid, running}.
pub fn load(dir: &Path) -> Result<Value, StatusError> {
    let file = dir.join("status.json");
    let bytes = std::fs::read(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => StatusError::NotFound(dir.to_path_buf()),
        _ => StatusError::Unreadable(file.clone(), e.to_string()),
    })?;
    let mut v: Value =
        serde_json::from_slice(&bytes).map_err(|e| StatusError::Unreadable(file, e.to_string()))?;
    let pid = v["operatorPid"].as_u64();
    let running = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "operator".into(),
            serde_json::json!({"pid": pid, "running": running}),
        );
    }
    Ok(v)
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

/// The human view of a status document.
pub fn render(v: &Value) -> String {
    let mut out = String::new();
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
    let mut rows = vec![["ROUTER", "ADDRESS", "EPOCH", "PID"]
        .map(String::from)
        .to_vec()];
    for r in v["routers"].as_array().into_iter().flatten() {
        rows.push(vec![
            s(&r["name"]),
            s(&r["address"]),
            s(&r["epoch"]),
            s(&r["pid"]),
        ]);
    }
    out.push_str(&table(&rows, ""));
    for c in v["clusters"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nCLUSTER {}  leader {}  epoch {}  {}\n",
            s(&c["name"]),
            s(&c["leader"]),
            s(&c["epoch"]),
            conditions(c)
        ));
        let mut rows = vec![[
            "NODE", "ROLE", "ADDRESS", "REDIS", "PID", "APPLIED", "IN-SYNC",
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
                                     "redis": "127.0.0.1:7003", "pid": 7, "appliedSeq": 12, "inSync": true}]}],
            "errors": ["HashRanges low and high overlap"]
        });
        let text = render(&v);
        assert!(text.contains("range table epoch 1"), "{text}");
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

    #[test]
    fn a_missing_folder_says_how_to_start_one() {
        let err = load(Path::new("/nonexistent/.cleave"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("make run"), "{err}");
    }
}
