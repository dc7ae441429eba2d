//! `cleave split CLUSTER`: ask for an online split by editing the desired objects, as a user
//! would by hand (see docs/split.md): a new FileCluster (a copy of CLUSTER's spec under a new
//! name) and a HashRange giving it the upper half of CLUSTER's range, then CLUSTER's HashRange
//! cut down to the lower half. The operator does the rest: clone, fence, cut over, clean up.
//!
//! - **local**: the three manifests are written in the folder the local operator watches
//!   (`--manifests`), in that order (until the last write the ranges overlap, which the operator
//!   refuses, so nothing moves early); each file is replaced atomically.
//! - **Kubernetes**: `--dry-run` prints the three objects for `kubectl apply -f -` (or a Git
//!   commit for Argo CD); applying them from here is not built yet.
//!
//! `--wait` polls the status until the split is done (the phase is printed as it changes).

use super::status::{self, Source, StatusArgs};
use super::switchover::{doc_value, documents, find_manifest, load, write_atomic};
use crate::error::{Error, Result};
use cleave_operator::reconcile::status::Report;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `cleave split`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The FileCluster to split, e.g. `fc-b`. It must own exactly one HashRange.
    pub cluster: String,
    /// Name of the new FileCluster (default: CLUSTER-2, or the next free number).
    #[arg(long, value_name = "NAME")]
    pub into: Option<String>,
    /// Last hash key CLUSTER keeps (default: the middle of its range).
    #[arg(long, value_name = "HASH")]
    pub at: Option<u32>,
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
    /// The Cleave on the Kubernetes cluster of the current kubeconfig context.
    #[arg(long)]
    pub kube: bool,
    /// Kubernetes namespace (default: the context's). Implies `--kube`.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the objects instead of writing them.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait until the split is done, printing its phases.
    #[arg(long)]
    pub wait: bool,
    /// Seconds `--wait` waits at most.
    #[arg(long, default_value_t = 600, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=86400))]
    pub timeout: u64,
}

/// What the split asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    /// The HashRange of CLUSTER that is cut down.
    pub range: String,
    /// Its first key.
    pub start: u32,
    /// The last key CLUSTER keeps.
    pub mid: u32,
    /// The range's last key (the new cluster takes `mid + 1 ..= end`).
    pub end: u32,
    /// The new FileCluster (and its HashRange's name).
    pub into: String,
}

/// Decide the split from the status: CLUSTER's one range, the split point, the new name.
pub fn plan(
    report: &Report,
    cluster: &str,
    into: Option<&str>,
    at: Option<u32>,
) -> Result<SplitPlan> {
    if !report.clusters.iter().any(|c| c.name == cluster) {
        return Err(Error::BadInput(format!("unknown FileCluster {cluster}")));
    }
    if let Some(sp) = &report.split {
        return Err(Error::BadInput(format!(
            "a split is in progress ({} into {}): one at a time",
            sp.source, sp.target
        )));
    }
    let owned: Vec<_> = report
        .ranges
        .iter()
        .filter(|r| r.cluster == cluster)
        .collect();
    let [r] = owned.as_slice() else {
        return Err(Error::BadInput(format!(
            "{cluster} owns {} HashRanges; cleave split halves a cluster that owns exactly one \
             (edit the HashRanges by hand otherwise, see docs/split.md)",
            owned.len()
        )));
    };
    let (start, end) = (
        u32::try_from(r.start).map_err(|_| Error::BadInput("range start out of bounds".into()))?,
        u32::try_from(r.end).map_err(|_| Error::BadInput("range end out of bounds".into()))?,
    );
    let mid = match at {
        Some(m) if m < start || m >= end => {
            return Err(Error::BadInput(format!(
                "--at {m} must be in [{start}, {}) so both halves keep at least one key",
                end
            )))
        }
        Some(m) => m,
        None => cleave_proto::range::split_point(start, end).ok_or_else(|| {
            Error::BadInput(format!(
                "range {} holds a single key: it cannot be split",
                r.name
            ))
        })?,
    };
    let taken = |n: &str| {
        report.clusters.iter().any(|c| c.name == n) || report.ranges.iter().any(|r| r.name == n)
    };
    let into = match into {
        Some(n) if taken(n) => {
            return Err(Error::BadInput(format!(
                "{n} already exists: name a new FileCluster"
            )))
        }
        Some(n) => n.to_string(),
        None => (2..)
            .map(|i| format!("{cluster}-{i}"))
            .find(|n| !taken(n))
            .expect("a free name exists"),
    };
    Ok(SplitPlan {
        range: r.name.clone(),
        start,
        mid,
        end,
        into,
    })
}

/// The new FileCluster: CLUSTER's manifest document with another name (and no `spec.leader`).
pub fn new_cluster_yaml(source_doc: &str, into: &str) -> Result<String> {
    let mut v = doc_value(source_doc);
    let Some(meta) = v.get_mut("metadata").and_then(|m| m.as_mapping_mut()) else {
        return Err(Error::Other(
            "the FileCluster manifest has no metadata".into(),
        ));
    };
    meta.retain(|k, _| matches!(k.as_str(), Some("name" | "namespace" | "labels")));
    meta.insert("name".into(), into.into());
    if let Some(spec) = v.get_mut("spec").and_then(|s| s.as_mapping_mut()) {
        spec.remove("leader");
    }
    if let Some(m) = v.as_mapping_mut() {
        m.remove("status");
    }
    serde_yaml::to_string(&v).map_err(|e| Error::Other(e.to_string()))
}

/// The new HashRange.
pub fn new_range_yaml(p: &SplitPlan) -> String {
    format!(
        "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata:\n  name: {}\nspec:\n  start: {}\n  end: {}\n  cluster: {}\n",
        p.into,
        p.mid as u64 + 1,
        p.end,
        p.into
    )
}

/// CLUSTER's HashRange cut down to `start ..= mid` (the document rewritten).
pub fn cut_range_yaml(range_doc: &str, mid: u32) -> Result<String> {
    let mut v = doc_value(range_doc);
    let Some(spec) = v.get_mut("spec").and_then(|s| s.as_mapping_mut()) else {
        return Err(Error::Other("the HashRange manifest has no spec".into()));
    };
    spec.insert("end".into(), (mid as u64).into());
    serde_yaml::to_string(&v).map_err(|e| Error::Other(e.to_string()))
}

/// The manifest file holding the document `kind`/`name`, and that document's text.
fn find_doc(dir: &Path, kind: &str, name: &str) -> Result<(PathBuf, String, usize)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::BadInput(format!("cannot read {}: {e}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let docs = documents(&text);
        for d in &docs {
            let v = doc_value(&text[d.clone()]);
            if v["kind"].as_str() == Some(kind) && v["metadata"]["name"].as_str() == Some(name) {
                return Ok((f, text[d.clone()].to_string(), docs.len()));
            }
        }
    }
    Err(Error::BadInput(format!(
        "no {kind} {name} in the YAML manifests of {} (pass --manifests DIR)",
        dir.display()
    )))
}

/// Run `cleave split`.
pub async fn run(args: Args) -> Result<()> {
    let as_status = StatusArgs {
        data: args.data.clone(),
        kube: args.kube,
        namespace: args.namespace.clone(),
        json: false,
        watch: false,
        interval: 2,
    };
    let source = status::choose(
        &as_status,
        Path::new(".cleave").is_dir(),
        status::kube::config_available(),
    );
    let report = load(&source).await?;
    let p = plan(&report, &args.cluster, args.into.as_deref(), args.at)?;
    let before = report.epoch;
    match &source {
        Source::Kube(_) => {
            if !args.dry_run {
                return Err(Error::BadInput(
                    "on Kubernetes, cleave split only prints the objects: run it with --dry-run \
                     and apply the output (kubectl apply -f -, or commit it for Argo CD)"
                        .into(),
                ));
            }
            println!(
                "# the new FileCluster {} is a copy of {}'s spec: edit it as needed",
                p.into, args.cluster
            );
            println!("apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: {}\nspec: {{}}\n---", p.into);
            println!("{}---", new_range_yaml(&p));
            print!(
                "apiVersion: cleave.dev/v1alpha1\nkind: HashRange\nmetadata:\n  name: {}\nspec:\n  start: {}\n  end: {}\n  cluster: {}\n",
                p.range, p.start, p.mid, args.cluster
            );
            return Ok(());
        }
        Source::Local(_) => {
            let fc_file = find_manifest(&args.manifests, &args.cluster)?;
            let (_, fc_doc, _) = find_doc(&args.manifests, "FileCluster", &args.cluster)?;
            let (hr_file, hr_doc, hr_docs) = find_doc(&args.manifests, "HashRange", &p.range)?;
            if hr_docs > 1 {
                return Err(Error::BadInput(format!(
                    "{} holds several objects: split HashRange {} out into its own file first",
                    hr_file.display(),
                    p.range
                )));
            }
            let new_fc = new_cluster_yaml(&fc_doc, &p.into)?;
            let new_hr = new_range_yaml(&p);
            let cut = cut_range_yaml(&hr_doc, p.mid)?;
            let dir = fc_file.parent().unwrap_or(Path::new("."));
            let fc_out = dir.join(format!("filecluster-{}.yaml", p.into));
            let hr_out = dir.join(format!("hashrange-{}.yaml", p.into));
            if args.dry_run {
                println!("# would write {}:\n{new_fc}", fc_out.display());
                println!("# would write {}:\n{new_hr}", hr_out.display());
                println!("# would rewrite {}:\n{cut}", hr_file.display());
                return Ok(());
            }
            for f in [&fc_out, &hr_out] {
                if f.exists() {
                    return Err(Error::BadInput(format!("{} exists already", f.display())));
                }
            }
            write_atomic(&fc_out, &new_fc)?;
            write_atomic(&hr_out, &new_hr)?;
            write_atomic(&hr_file, &cut)?;
            println!(
                "split {}: it keeps [{}, {}], {} takes [{}, {}] (wrote {}, {}, {})",
                args.cluster,
                p.start,
                p.mid,
                p.into,
                p.mid as u64 + 1,
                p.end,
                fc_out.display(),
                hr_out.display(),
                hr_file.display()
            );
        }
    }
    if !args.wait {
        println!("the operator splits online: follow it with cleave status, or use --wait");
        return Ok(());
    }
    wait(&source, &p.into, before, Duration::from_secs(args.timeout)).await
}

/// Poll the status until the split into `into` is done: no split in progress, a newer table
/// committed, and `into` Ready. Prints each phase once.
async fn wait(source: &Source, into: &str, before: u64, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let mut last_phase = String::new();
    loop {
        if let Ok(report) = load(source).await {
            let phase = report
                .split
                .as_ref()
                .map(|s| format!("{:?}", s.phase).to_lowercase())
                .unwrap_or_default();
            if !phase.is_empty() && phase != last_phase {
                println!("  {:>5.1} s  {phase}", start.elapsed().as_secs_f64());
                last_phase = phase;
            }
            let ready = report.clusters.iter().any(|c| {
                c.name == into
                    && c.status
                        .conditions
                        .iter()
                        .any(|k| k.type_ == "Ready" && k.status == "True")
            });
            if report.split.is_none() && report.epoch > before && ready {
                println!(
                    "split done in {:.1} s: {into} serves its range (table epoch {})",
                    start.elapsed().as_secs_f64(),
                    report.epoch
                );
                return Ok(());
            }
        }
        if start.elapsed() >= limit {
            return Err(Error::Other(format!(
                "the split into {into} is not done after {} s (last phase: {})",
                limit.as_secs(),
                if last_phase.is_empty() {
                    "not started"
                } else {
                    &last_phase
                }
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_operator::reconcile::status::{ClusterReport, RangeReport};

    fn report() -> Report {
        let range = |name: &str, start: i64, end: i64, cluster: &str| RangeReport {
            name: name.into(),
            start,
            end,
            cluster: cluster.into(),
            status: Default::default(),
        };
        let cluster = |name: &str| ClusterReport {
            name: name.into(),
            replicas: 3,
            status: Default::default(),
        };
        Report {
            epoch: 3,
            ranges: vec![
                range("low", 0, 99, "fc-a"),
                range("high", 100, 4294967295, "fc-b"),
            ],
            clusters: vec![cluster("fc-a"), cluster("fc-b"), cluster("fc-b-2")],
            ..Report::default()
        }
    }

    #[test]
    fn halves_the_one_range_into_a_free_name() {
        let p = plan(&report(), "fc-a", None, None).unwrap();
        assert_eq!(
            p,
            SplitPlan {
                range: "low".into(),
                start: 0,
                mid: 49,
                end: 99,
                into: "fc-a-2".into()
            }
        );
        // fc-b-2 exists: the next number.
        assert_eq!(plan(&report(), "fc-b", None, None).unwrap().into, "fc-b-3");
        assert_eq!(
            plan(&report(), "fc-a", Some("fc-z"), Some(10)).unwrap().mid,
            10
        );
        let hr = new_range_yaml(&plan(&report(), "fc-a", None, None).unwrap());
        assert!(
            hr.contains("start: 50\n  end: 99\n  cluster: fc-a-2"),
            "{hr}"
        );
    }

    #[test]
    fn refuses_what_is_not_a_split() {
        let r = report();
        for (cluster, into, at, want) in [
            ("fc-x", None, None, "unknown FileCluster"),
            ("fc-b-2", None, None, "owns 0 HashRanges"),
            ("fc-a", Some("fc-b"), None, "already exists"),
            ("fc-a", None, Some(99), "must be in"),
            ("fc-a", None, Some(100), "must be in"),
        ] {
            let e = plan(&r, cluster, into, at).unwrap_err().to_string();
            assert!(e.contains(want), "{cluster} {into:?} {at:?}: {e}");
        }
    }

    #[test]
    fn the_new_cluster_copies_the_spec_without_leader_or_status() {
        let doc = "apiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: fc-a\n  uid: x\nspec:\n  replicas: 5\n  leader: fc-a-1\nstatus:\n  epoch: 3\n";
        let out = new_cluster_yaml(doc, "fc-a-2").unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
        assert_eq!(v["metadata"]["name"].as_str(), Some("fc-a-2"));
        assert!(
            v["metadata"]["uid"].is_null()
                && v["spec"]["leader"].is_null()
                && v["status"].is_null()
        );
        assert_eq!(v["spec"]["replicas"].as_u64(), Some(5));
        let cut = cut_range_yaml("kind: HashRange\nmetadata:\n  name: low\nspec:\n  start: 0\n  end: 99\n  cluster: fc-a\n", 49).unwrap();
        let v: serde_yaml::Value = serde_yaml::from_str(&cut).unwrap();
        assert_eq!(
            (v["spec"]["start"].as_u64(), v["spec"]["end"].as_u64()),
            (Some(0), Some(49))
        );
    }
}
