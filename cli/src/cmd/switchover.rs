//! `cleave switchover CLUSTER [NODE]`: a planned change of leader, by setting `spec.leader` of
//! the FileCluster (see docs/failover.md, "Switchover").
//!
//! NODE defaults to the in-sync follower with the highest applied seq in the cluster's status.
//! The status (local `DATA/status.json`, or the objects on Kubernetes, as `cleave status` reads
//! them) also validates the request: an unknown cluster or node, a node that already leads, or
//! a node that is not an in-sync follower is refused before anything changes.
//!
//! - **local**: the FileCluster's manifest in the folder the local operator watches
//!   (`--manifests`, `CLEAVE_MANIFESTS`, default `config/samples`, as for `cleave-operator
//!   local`; the status file does not record it) is edited in place: the `leader:` line under
//!   `spec:` is replaced or added, comments and layout kept, and the file is replaced
//!   atomically. JSON manifests are rewritten.
//! - **Kubernetes** (`--kube`, `-n NS`): a JSON merge patch `{"spec": {"leader": NODE}}`.
//!
//! `--dry-run` prints the change (as YAML) and changes nothing. `--wait` then polls the status
//! until NODE leads at a newer epoch with `lastFailover.to = NODE` (at most `--timeout`
//! seconds) and prints how long the switchover took (`lastFailover.durationMs`).

use super::status::{self, Source, StatusArgs};
use crate::error::{Error, Result};
use cleave_operator::crd::FileClusterStatus;
use cleave_operator::reconcile::status::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `cleave switchover`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The FileCluster, e.g. `fc-a`.
    pub cluster: String,
    /// The node that should lead, e.g. `fc-a-2` (default: the in-sync follower with the
    /// highest applied seq).
    pub node: Option<String>,
    /// Data folder of a local Cleave, for its status (default: `.cleave` in the current folder).
    #[arg(long, env = "CLEAVE_DATA", conflicts_with_all = ["kube", "namespace"])]
    pub data: Option<PathBuf>,
    /// Manifests folder the local operator watches (as its `--manifests`).
    #[arg(
        long,
        env = "CLEAVE_MANIFESTS",
        default_value = "config/samples",
        conflicts_with_all = ["kube", "namespace"]
    )]
    pub manifests: PathBuf,
    /// Switch over on the Kubernetes cluster of the current kubeconfig context.
    #[arg(long)]
    pub kube: bool,
    /// Kubernetes namespace of the FileCluster (default: the context's). Implies `--kube`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the change instead of making it.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the node leads, and print how long the switchover took.
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits at most.
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
}

impl Args {
    fn source(&self) -> Source {
        let as_status = StatusArgs {
            data: self.data.clone(),
            kube: self.kube,
            namespace: self.namespace.clone(),
            json: false,
            watch: false,
            interval: 2,
        };
        status::choose(
            &as_status,
            Path::new(".cleave").is_dir(),
            status::kube::config_available(),
        )
    }
}

/// Pick the node to lead `cluster` and check the request against the cluster's status.
pub fn choose_node(report: &Report, cluster: &str, node: Option<&str>) -> Result<String> {
    let Some(c) = report.clusters.iter().find(|c| c.name == cluster) else {
        let known: Vec<&str> = report.clusters.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::BadInput(format!(
            "unknown FileCluster {cluster} (known: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    };
    let st = &c.status;
    let leader = st.leader.as_deref();
    let name = match node {
        Some(n) => {
            let Some(state) = st.nodes.iter().find(|s| s.name == n) else {
                let known: Vec<&str> = st.nodes.iter().map(|s| s.name.as_str()).collect();
                return Err(Error::BadInput(format!(
                    "unknown node {n} in FileCluster {cluster} (nodes: {})",
                    if known.is_empty() {
                        "none reported yet".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            };
            if leader == Some(n) {
                return Err(Error::BadInput(format!(
                    "{n} already leads {cluster} (epoch {}); nothing to do",
                    st.epoch
                )));
            }
            if state.role != "follower" || !state.in_sync {
                return Err(Error::BadInput(format!(
                    "{n} is not an in-sync follower of {cluster} (role {}, in sync: {}); \
                     the operator switches only to one",
                    state.role,
                    if state.in_sync { "yes" } else { "no" }
                )));
            }
            n.to_string()
        }
        None => best_follower(st, leader).ok_or_else(|| {
            Error::BadInput(format!(
                "FileCluster {cluster} has no in-sync follower to switch to (leader {})",
                leader.unwrap_or("-")
            ))
        })?,
    };
    Ok(name)
}

/// The in-sync follower with the highest applied seq (the first by name on a tie).
fn best_follower(st: &FileClusterStatus, leader: Option<&str>) -> Option<String> {
    st.nodes
        .iter()
        .filter(|n| n.role == "follower" && n.in_sync && Some(n.name.as_str()) != leader)
        .min_by(|a, b| {
            b.applied_seq
                .cmp(&a.applied_seq)
                .then_with(|| a.name.cmp(&b.name))
        })
        .map(|n| n.name.clone())
}

/// The change as YAML (what `--dry-run` prints, and the merge patch's content).
pub fn patch_yaml(cluster: &str, node: &str) -> String {
    format!(
        "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: {cluster}\nspec:\n  leader: {node}\n"
    )
}

/// Run `cleave switchover`.
pub async fn run(args: Args) -> Result<()> {
    let source = args.source();
    let report = load(&source).await?;
    let node = choose_node(&report, &args.cluster, args.node.as_deref())?;
    let before = report
        .clusters
        .iter()
        .find(|c| c.name == args.cluster)
        .map_or(0, |c| c.status.epoch);
    match &source {
        Source::Local(data) => {
            let file = find_manifest(&args.manifests, &args.cluster)?;
            let text =
                std::fs::read_to_string(&file).map_err(Error::local(file.display().to_string()))?;
            let edited = set_leader(&text, &file, &args.cluster, &node)?;
            if args.dry_run {
                print!(
                    "# would change {} (spec.leader of FileCluster {}):\n{}",
                    file.display(),
                    args.cluster,
                    diff(&text, &edited)
                );
                return Ok(());
            }
            write_atomic(&file, &edited)?;
            if let Ok(status) = status::load(data) {
                if let status::Origin::Local { operator, .. } = &status.origin {
                    if !operator.running {
                        eprintln!(
                            "cleave: warning: the local operator (pid {}) is not running: nothing acts on the change until it runs",
                            operator.pid.map_or("-".into(), |p| p.to_string())
                        );
                    }
                }
            }
            println!(
                "set spec.leader of {} to {node} in {}",
                args.cluster,
                file.display()
            );
        }
        Source::Kube(ns) => {
            if args.dry_run {
                print!(
                    "# would merge-patch FileCluster {}:\n{}",
                    args.cluster,
                    patch_yaml(&args.cluster, &node)
                );
                return Ok(());
            }
            let (client, ns, server) = status::kube::connect(ns.as_deref()).await?;
            status::kube::patch_leader(client, &ns, &server, &args.cluster, &node).await?;
            println!(
                "set spec.leader of {} to {node} (namespace {ns})",
                args.cluster
            );
        }
    }
    if !args.wait {
        println!("the operator switches over shortly: see cleave status, or use --wait");
        return Ok(());
    }
    let mut st = wait(
        &source,
        &args.cluster,
        &node,
        before,
        Duration::from_secs(args.timeout),
    )
    .await?;
    // The operator records the duration on the pass after it sees the new leader leading:
    // give it a moment (bounded) so the answer says how long the switchover took.
    let deadline = Instant::now() + DURATION_WAIT;
    while st
        .last_failover
        .as_ref()
        .is_some_and(|f| f.duration_ms.is_none())
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(report) = load(&source).await {
            if let Some(c) = report.clusters.into_iter().find(|c| c.name == args.cluster) {
                st = c.status;
            }
        }
    }
    let took = st
        .last_failover
        .as_ref()
        .and_then(|f| f.duration_ms)
        .map_or("an unrecorded time".to_string(), |ms| {
            format!("{:.1} s", ms as f64 / 1000.0)
        });
    println!(
        "{node} leads {} at epoch {}; the switchover took {took}",
        args.cluster, st.epoch
    );
    Ok(())
}

pub(crate) async fn load(source: &Source) -> Result<Report> {
    match source {
        Source::Local(dir) => status::load(dir)
            .map(|s| s.report)
            .map_err(|e| Error::Other(e.to_string())),
        Source::Kube(ns) => status::kube::load(ns.as_deref()).await.map(|s| s.report),
    }
}

/// Whether `st` shows `node` leading after a change of leader to it, at an epoch above `before`.
pub fn switched(st: &FileClusterStatus, node: &str, before: u64) -> bool {
    st.leader.as_deref() == Some(node)
        && st.epoch > before
        && st
            .last_failover
            .as_ref()
            .is_some_and(|f| f.to == node && f.epoch > before)
}

/// Poll the status (every 250 ms) until [`switched`], at most `limit`.
/// How long `--wait` waits, after the switch, for the operator to record its duration.
const DURATION_WAIT: Duration = Duration::from_secs(5);

async fn wait(
    source: &Source,
    cluster: &str,
    node: &str,
    before: u64,
    limit: Duration,
) -> Result<FileClusterStatus> {
    let start = Instant::now();
    loop {
        let last = match load(source).await {
            Ok(report) => match report.clusters.into_iter().find(|c| c.name == cluster) {
                Some(c) if switched(&c.status, node, before) => return Ok(c.status),
                Some(c) => {
                    let why: Vec<String> = c
                        .status
                        .conditions
                        .iter()
                        .filter(|k| k.status != "True" || k.type_ == "Progressing")
                        .map(|k| format!("{}={}: {}", k.type_, k.status, k.message))
                        .collect();
                    format!(
                        "leader {}, epoch {}{}",
                        c.status.leader.as_deref().unwrap_or("-"),
                        c.status.epoch,
                        if why.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", why.join("; "))
                        }
                    )
                }
                None => format!("FileCluster {cluster} is gone from the status"),
            },
            Err(e) => format!("cannot read the status: {e}"),
        };
        if start.elapsed() >= limit {
            return Err(Error::Other(format!(
                "{node} does not lead {cluster} after {} s: {last}",
                limit.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The manifest file in `dir` (not recursive: `*.yaml`, `*.yml`, `*.json`, as the local
/// operator reads them) that holds FileCluster `cluster`.
pub fn find_manifest(dir: &Path, cluster: &str) -> Result<PathBuf> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        Error::BadInput(format!(
            "cannot read the manifests folder {}: {e} (pass --manifests DIR, the folder the local operator watches)",
            dir.display()
        ))
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml" | "json")
                )
        })
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        if documents(&text)
            .iter()
            .any(|d| is_cluster(&doc_value(&text[d.clone()]), cluster))
        {
            return Ok(f);
        }
    }
    Err(Error::BadInput(format!(
        "no FileCluster {cluster} in the manifests folder {} (pass --manifests DIR, the folder the local operator watches)",
        dir.display()
    )))
}

pub(crate) fn doc_value(text: &str) -> serde_yaml::Value {
    serde_yaml::from_str(text).unwrap_or(serde_yaml::Value::Null)
}

fn is_cluster(v: &serde_yaml::Value, cluster: &str) -> bool {
    v["kind"].as_str() == Some("FileCluster") && v["metadata"]["name"].as_str() == Some(cluster)
}

/// Byte ranges of the YAML documents of `text` (separated by `---` lines).
pub(crate) fn documents(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in text.split_inclusive('\n') {
        let l = line.trim_end();
        if l == "---" || l.starts_with("--- ") || l == "..." {
            out.push(start..pos);
            start = pos + line.len();
        }
        pos += line.len();
    }
    out.push(start..text.len());
    out
}

/// `text` with `spec.leader` of FileCluster `cluster` set to `node`. YAML is edited line by
/// line (comments and layout kept); JSON (or YAML whose `spec` is not a block) is rewritten.
/// The result is parsed again to make sure it says what was meant.
pub fn set_leader(text: &str, file: &Path, cluster: &str, node: &str) -> Result<String> {
    let bad = |why: String| Error::Other(format!("{}: {why}", file.display()));
    if file.extension().and_then(|e| e.to_str()) == Some("json") {
        let mut v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
        if !(v["kind"] == "FileCluster" && v["metadata"]["name"] == cluster) {
            return Err(bad(format!("holds no FileCluster {cluster}")));
        }
        if !v["spec"].is_object() {
            v["spec"] = serde_json::json!({});
        }
        v["spec"]["leader"] = node.into();
        return Ok(serde_json::to_string_pretty(&v).unwrap_or_default() + "\n");
    }
    let docs = documents(text);
    let Some(range) = docs
        .iter()
        .find(|d| is_cluster(&doc_value(&text[(*d).clone()]), cluster))
    else {
        return Err(bad(format!("holds no FileCluster {cluster}")));
    };
    let doc = &text[range.clone()];
    let edited = match edit_block(doc, node) {
        Some(d) => d,
        None => {
            // `spec: {...}` or another shape: rewrite this document (comments in it are lost).
            let mut v = doc_value(doc);
            if !v["spec"].is_mapping() {
                v["spec"] = serde_yaml::Value::Mapping(Default::default());
            }
            v["spec"]["leader"] = node.into();
            serde_yaml::to_string(&v).map_err(|e| bad(e.to_string()))?
        }
    };
    let check = doc_value(&edited);
    if !is_cluster(&check, cluster) || check["spec"]["leader"].as_str() != Some(node) {
        return Err(bad(format!(
            "could not set spec.leader of FileCluster {cluster}; edit the file by hand"
        )));
    }
    Ok(format!(
        "{}{edited}{}",
        &text[..range.start],
        &text[range.end..]
    ))
}

/// Edit a block-style `spec:` in one YAML document: replace its `leader:` line or add one
/// right under `spec:`. `None` when the document has no block `spec:`.
fn edit_block(doc: &str, node: &str) -> Option<String> {
    let lines: Vec<&str> = doc.split_inclusive('\n').collect();
    let indent_of = |l: &str| l.len() - l.trim_start().len();
    let meaningful = |l: &str| !l.trim().is_empty() && !l.trim_start().starts_with('#');
    let Some(spec) = lines.iter().position(|l| {
        let t = l.trim_end();
        indent_of(l) == 0 && (t == "spec:" || t.starts_with("spec: #") || t.starts_with("spec:\t#"))
    }) else {
        // No spec at all: add one at the end.
        if doc_value(doc).get("spec").is_some() {
            return None;
        }
        let mut out = doc.to_string();
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&format!("spec:\n  leader: {node}\n"));
        return Some(out);
    };
    let body: Vec<usize> = (spec + 1..lines.len())
        .take_while(|&i| !meaningful(lines[i]) || indent_of(lines[i]) > 0)
        .filter(|&i| meaningful(lines[i]))
        .collect();
    let indent = body.first().map_or(2, |&i| indent_of(lines[i]));
    let pad = " ".repeat(indent);
    let new_line = format!("{pad}leader: {node}\n");
    let mut out: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    match body
        .iter()
        .find(|&&i| indent_of(lines[i]) == indent && lines[i].trim_start().starts_with("leader:"))
    {
        Some(&i) => out[i] = new_line,
        None => out.insert(spec + 1, new_line),
    }
    Some(out.concat())
}

/// A line diff of an edit that changed or added lines in place (`-`/`+` lines with a line of
/// context before).
fn diff(old: &str, new: &str) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    let head = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let tail = a[head..]
        .iter()
        .rev()
        .zip(b[head..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let mut out = String::new();
    if head > 0 {
        out.push_str(&format!("  {}\n", a[head - 1]));
    }
    for l in &a[head..a.len() - tail] {
        out.push_str(&format!("- {l}\n"));
    }
    for l in &b[head..b.len() - tail] {
        out.push_str(&format!("+ {l}\n"));
    }
    out
}

/// Replace `file` with `text` atomically (a temporary file in the same folder, then a rename),
/// so the operator never reads half a manifest.
pub(crate) fn write_atomic(file: &Path, text: &str) -> Result<()> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    // A dot-file without a manifest extension: the operator ignores it.
    let tmp = file.with_file_name(format!(".{name}.cleave-tmp"));
    let label = file.display().to_string();
    std::fs::write(&tmp, text).map_err(Error::local(label.clone()))?;
    std::fs::rename(&tmp, file).map_err(Error::local(label))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_operator::crd::{Failover, NodeState};
    use cleave_operator::reconcile::status::ClusterReport;

    fn node(name: &str, role: &str, seq: u64, in_sync: bool) -> NodeState {
        NodeState {
            name: name.into(),
            role: role.into(),
            address: String::new(),
            redis: String::new(),
            pid: None,
            applied_seq: seq,
            in_sync,
        }
    }

    fn report() -> Report {
        Report {
            clusters: vec![ClusterReport {
                name: "fc-a".into(),
                replicas: 4,
                status: FileClusterStatus {
                    leader: Some("fc-a-0".into()),
                    epoch: 2,
                    nodes: vec![
                        node("fc-a-0", "leader", 50, true),
                        node("fc-a-1", "follower", 48, true),
                        node("fc-a-2", "follower", 50, true),
                        node("fc-a-3", "resyncing", 99, false),
                    ],
                    ..Default::default()
                },
            }],
            ..Default::default()
        }
    }

    #[test]
    fn the_default_node_is_the_most_up_to_date_in_sync_follower() {
        assert_eq!(choose_node(&report(), "fc-a", None).unwrap(), "fc-a-2");
        assert_eq!(
            choose_node(&report(), "fc-a", Some("fc-a-1")).unwrap(),
            "fc-a-1"
        );
    }

    #[test]
    fn bad_requests_are_refused_clearly() {
        let r = report();
        let e = choose_node(&r, "fc-z", None).unwrap_err();
        assert_eq!(e.to_string(), "unknown FileCluster fc-z (known: fc-a)");
        assert_eq!(e.exit_code(), crate::error::EXIT_BAD_INPUT);
        let e = choose_node(&r, "fc-a", Some("fc-a-9")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown node fc-a-9 in FileCluster fc-a (nodes: fc-a-0, fc-a-1, fc-a-2, fc-a-3)"
        );
        let e = choose_node(&r, "fc-a", Some("fc-a-0")).unwrap_err();
        assert!(e.to_string().contains("fc-a-0 already leads fc-a"), "{e}");
        let e = choose_node(&r, "fc-a", Some("fc-a-3")).unwrap_err();
        assert!(e.to_string().contains("not an in-sync follower"), "{e}");
        let mut lone = report();
        lone.clusters[0].status.nodes.truncate(1);
        let e = choose_node(&lone, "fc-a", None).unwrap_err();
        assert!(e.to_string().contains("no in-sync follower"), "{e}");
    }

    #[test]
    fn waiting_ends_when_the_node_leads_at_a_newer_epoch() {
        let mut st = report().clusters[0].status.clone();
        assert!(!switched(&st, "fc-a-2", 2));
        st.leader = Some("fc-a-2".into());
        st.epoch = 3;
        assert!(!switched(&st, "fc-a-2", 2), "no lastFailover yet");
        st.last_failover = Some(Failover {
            to: "fc-a-2".into(),
            epoch: 3,
            ..Default::default()
        });
        assert!(switched(&st, "fc-a-2", 2));
        assert!(
            !switched(&st, "fc-a-2", 3),
            "an older switch to the same node"
        );
    }

    const SAMPLE: &str = "# A FileCluster.\napiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: fc-a\nspec:\n  replicas: 3\n  # comment kept\n  redis:\n    appendfsync: everysec\n";

    #[test]
    fn the_manifest_gets_a_leader_line_and_keeps_its_comments() {
        let f = Path::new("fc.yaml");
        let once = set_leader(SAMPLE, f, "fc-a", "fc-a-2").unwrap();
        assert_eq!(
            once,
            SAMPLE.replace("spec:\n", "spec:\n  leader: fc-a-2\n"),
            "added under spec"
        );
        let twice = set_leader(&once, f, "fc-a", "fc-a-1").unwrap();
        assert_eq!(
            twice,
            SAMPLE.replace("spec:\n", "spec:\n  leader: fc-a-1\n")
        );
        assert_eq!(
            diff(&once, &twice),
            "  spec:\n-   leader: fc-a-2\n+   leader: fc-a-1\n"
        );
        // Several documents: only the right one changes; a nested `leader:` is not spec's.
        let multi = format!(
            "kind: HashRange\nmetadata:\n  name: x\nspec:\n  cluster: fc-a\n---\n{}---\napiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: fc-b\nspec:\n    redis:\n      leader: not-this\n",
            SAMPLE
        );
        let out = set_leader(&multi, f, "fc-b", "fc-b-1").unwrap();
        assert!(
            out.ends_with("spec:\n    leader: fc-b-1\n    redis:\n      leader: not-this\n"),
            "{out}"
        );
        assert!(
            out.starts_with(&format!(
                "kind: HashRange\nmetadata:\n  name: x\nspec:\n  cluster: fc-a\n---\n{SAMPLE}---\n"
            )),
            "{out}"
        );
        // Flow style and JSON are rewritten; the result says what was meant.
        let flow = "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata: {name: fc-a}\nspec: {replicas: 3}\n";
        let out = set_leader(flow, f, "fc-a", "fc-a-1").unwrap();
        assert_eq!(doc_value(&out)["spec"]["replicas"], 3);
        assert_eq!(doc_value(&out)["spec"]["leader"].as_str(), Some("fc-a-1"));
        let json = r#"{"apiVersion": "cleave.dev/v1alpha1", "kind": "FileCluster", "metadata": {"name": "fc-a"}}"#;
        let out = set_leader(json, Path::new("fc.json"), "fc-a", "fc-a-1").unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["spec"]["leader"], "fc-a-1");
        assert!(set_leader(SAMPLE, f, "fc-x", "n").is_err());
    }

    #[test]
    fn the_manifest_is_found_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.yaml"), SAMPLE).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "kind: FileCluster").unwrap();
        assert_eq!(
            find_manifest(dir.path(), "fc-a").unwrap(),
            dir.path().join("a.yaml")
        );
        let e = find_manifest(dir.path(), "fc-b").unwrap_err();
        assert!(e.to_string().contains("no FileCluster fc-b"), "{e}");
        let e = find_manifest(&dir.path().join("nope"), "fc-a").unwrap_err();
        assert!(e.to_string().contains("--manifests"), "{e}");
    }
}
