//! The range table the router serves, and the rules for replacing it.
//!
//! Readers take an `Arc` snapshot of the current table (one uncontended read lock per request);
//! a push swaps in a new `Arc`. A push is taken only when its epoch is higher than the current
//! one, or equal and identical (a replayed push is acknowledged again), and only when its ranges
//! tile the hash space. An accepted table is written back to the `--table` file — to a temporary
//! file first, then renamed over the old one — before it is served, so a restarted router starts
//! from the last table it acknowledged.
//!
//! Readiness: a router is ready when it serves the *committed* table. A table read from the file
//! at start may be older than the last push (the file or ConfigMap was written before a commit
//! the router missed), so a router counts as ready only once the operator has confirmed its
//! table since the process started: a push accepted, or one acknowledged as already served
//! ([`Tables::serves_committed`]).

use crate::error::{Error, Result};
use cleave_proto::{ErrorCode, RangeTable, Reply};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

/// Why a pushed table was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    /// The table does not parse or does not tile the hash space.
    #[error("invalid range table: {0}")]
    Invalid(String),
    /// The table's epoch is not newer than the served one.
    #[error("epoch {offered} is not newer than the current epoch {current}")]
    Stale {
        /// The pushed table's epoch.
        offered: u64,
        /// The served table's epoch.
        current: u64,
    },
    /// The table could not be written to the table file (the old table stays).
    #[error("cannot persist the range table: {0}")]
    Persist(String),
}

impl PushError {
    /// The wire reply: `-STALE` for an old epoch, `-ERR` otherwise.
    pub fn to_reply(&self) -> Reply {
        let code = match self {
            PushError::Stale { .. } => ErrorCode::Stale,
            _ => ErrorCode::Err,
        };
        Reply::new(code, self.to_string())
    }
}

/// What a successful push did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// The table is now served.
    Accepted,
    /// The same table (same epoch, same content) was already served.
    Unchanged,
}

/// The served table, and where it is persisted.
#[derive(Debug, Default)]
pub struct Tables {
    current: RwLock<Option<Arc<RangeTable>>>,
    file: Option<PathBuf>,
    /// Serialises pushes, so two pushes cannot interleave their check, write and swap.
    push: Mutex<()>,
    /// The epoch served, for requests in flight that must notice a new table (a write waiting
    /// on a leader the new table no longer names).
    epoch: tokio::sync::watch::Sender<u64>,
    /// A push was accepted or acknowledged since this process started.
    confirmed: AtomicBool,
}

impl Tables {
    /// Start from `file` when it exists (a missing or empty file means "no table yet"); pushes
    /// are written back to it.
    pub fn load(file: Option<PathBuf>) -> Result<Tables> {
        let current = match &file {
            Some(path) => read_file(path)?.map(Arc::new),
            None => None,
        };
        let epoch = current.as_ref().map_or(0, |t| t.epoch);
        Ok(Tables {
            current: RwLock::new(current),
            file,
            push: Mutex::new(()),
            epoch: tokio::sync::watch::channel(epoch).0,
            confirmed: AtomicBool::new(false),
        })
    }

    /// A store with no file, serving `table` (tests).
    pub fn with_table(mut table: RangeTable) -> std::result::Result<Tables, PushError> {
        table
            .validate()
            .map_err(|e| PushError::Invalid(e.to_string()))?;
        let epoch = table.epoch;
        Ok(Tables {
            current: RwLock::new(Some(Arc::new(table))),
            epoch: tokio::sync::watch::channel(epoch).0,
            ..Tables::default()
        })
    }

    /// Notified whenever a newer table is served.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.epoch.subscribe()
    }

    /// Whether this router serves the committed table: it has a table, and the operator has
    /// pushed it (or a newer one) since this process started. What `/readyz` answers.
    pub fn serves_committed(&self) -> bool {
        self.confirmed.load(Ordering::Acquire) && self.current().is_some()
    }

    /// The table served now, if any.
    pub fn current(&self) -> Option<Arc<RangeTable>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Offer a table encoded as JSON (the `TABLE.PUSH` argument).
    pub fn push_json(&self, json: &[u8]) -> std::result::Result<Pushed, PushError> {
        let table: RangeTable =
            serde_json::from_slice(json).map_err(|e| PushError::Invalid(e.to_string()))?;
        self.push(table)
    }

    /// Offer a table: validate it, check its epoch, persist it, then serve it.
    pub fn push(&self, mut table: RangeTable) -> std::result::Result<Pushed, PushError> {
        table
            .validate()
            .map_err(|e| PushError::Invalid(e.to_string()))?;
        let _guard = self.push.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cur) = self.current() {
            if table.epoch == cur.epoch && table == *cur {
                self.confirmed.store(true, Ordering::Release);
                return Ok(Pushed::Unchanged);
            }
            if table.epoch <= cur.epoch {
                return Err(PushError::Stale {
                    offered: table.epoch,
                    current: cur.epoch,
                });
            }
        }
        if let Some(path) = &self.file {
            write_table(path, &table).map_err(|e| PushError::Persist(e.to_string()))?;
        }
        let epoch = table.epoch;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(table));
        self.epoch.send_replace(epoch);
        self.confirmed.store(true, Ordering::Release);
        Ok(Pushed::Accepted)
    }
}

/// Parse a table from YAML or JSON text and validate it.
pub fn parse_table(text: &str) -> std::result::Result<RangeTable, String> {
    let mut table: RangeTable = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
    table.validate().map_err(|e| e.to_string())?;
    Ok(table)
}

fn read_file(path: &Path) -> Result<Option<RangeTable>> {
    let err = |message: String| Error::TableFile {
        path: path.to_path_buf(),
        message,
    };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err(e.to_string())),
    };
    if text.trim().is_empty() {
        return Ok(None);
    }
    parse_table(&text).map(Some).map_err(err)
}

/// Write the table next to `path` and rename it into place (JSON for `.json`, else YAML).
fn write_table(path: &Path, table: &RangeTable) -> std::io::Result<()> {
    let is_json = path.extension().is_some_and(|e| e == "json");
    let bytes = if is_json {
        serde_json::to_vec_pretty(table).map_err(std::io::Error::other)?
    } else {
        serde_yaml::to_string(table)
            .map_err(std::io::Error::other)?
            .into_bytes()
    };
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cleave_proto::range::{ClusterMembers, HashRange};

    pub(crate) fn table(epoch: u64, split: u32) -> RangeTable {
        let mut t = RangeTable {
            epoch,
            ranges: vec![
                HashRange {
                    start: 0,
                    end: split,
                    cluster: "fc-a".into(),
                },
                HashRange {
                    start: split + 1,
                    end: u32::MAX,
                    cluster: "fc-b".into(),
                },
            ],
            clusters: Default::default(),
        };
        for c in ["fc-a", "fc-b"] {
            t.clusters.insert(
                c.into(),
                ClusterMembers {
                    nodes: vec![format!("{c}:1"), format!("{c}:2")],
                    leader: None,
                },
            );
        }
        t
    }

    #[test]
    fn only_a_higher_epoch_replaces_the_table() {
        let tables = Tables::load(None).unwrap();
        assert_eq!(tables.current(), None);
        assert_eq!(tables.push(table(5, 100)), Ok(Pushed::Accepted));
        assert_eq!(tables.push(table(5, 100)), Ok(Pushed::Unchanged));
        assert_eq!(
            tables.push(table(5, 200)),
            Err(PushError::Stale {
                offered: 5,
                current: 5
            })
        );
        assert!(matches!(
            tables.push(table(4, 100)),
            Err(PushError::Stale { .. })
        ));
        assert_eq!(tables.current().unwrap().ranges[0].end, 100);
        assert_eq!(tables.push(table(6, 200)), Ok(Pushed::Accepted));
        assert_eq!(tables.current().unwrap().epoch, 6);
        assert_eq!(tables.current().unwrap().ranges[0].end, 200);
    }

    #[test]
    fn stale_is_stale_and_bad_tables_are_err() {
        let tables = Tables::with_table(table(3, 7)).unwrap();
        let stale = tables.push(table(2, 7)).unwrap_err().to_reply();
        assert_eq!(stale.code, ErrorCode::Stale);
        let mut gap = table(9, 7);
        gap.ranges[1].start = 9;
        let bad = tables.push(gap).unwrap_err();
        assert!(matches!(bad, PushError::Invalid(_)), "{bad:?}");
        assert_eq!(bad.to_reply().code, ErrorCode::Err);
        assert!(bad.to_string().contains("not covered"), "{bad}");
        let junk = tables.push_json(b"{not json").unwrap_err();
        assert_eq!(junk.to_reply().code, ErrorCode::Err);
        assert_eq!(tables.current().unwrap().epoch, 3);
    }

    #[test]
    fn accepted_tables_are_persisted_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.yaml");
        let tables = Tables::load(Some(path.clone())).unwrap();
        assert_eq!(tables.current(), None, "a missing file means no table yet");
        tables.push(table(1, 10)).unwrap();
        tables.push(table(2, 20)).unwrap();
        assert!(
            matches!(tables.push(table(1, 30)), Err(PushError::Stale { .. })),
            "an older table is refused"
        );
        let reloaded = Tables::load(Some(path.clone())).unwrap();
        assert_eq!(reloaded.current().unwrap().epoch, 2);
        assert_eq!(reloaded.current().unwrap().ranges[0].end, 20);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");

        let json = dir.path().join("table.json");
        let tables = Tables::load(Some(json.clone())).unwrap();
        tables.push(table(4, 40)).unwrap();
        let text = std::fs::read_to_string(&json).unwrap();
        assert!(text.trim_start().starts_with('{'), "{text}");
        assert_eq!(
            Tables::load(Some(json)).unwrap().current().unwrap().epoch,
            4
        );
    }

    #[test]
    fn a_router_serves_the_committed_table_only_once_a_push_confirmed_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.yaml");
        let empty = Tables::load(Some(path.clone())).unwrap();
        assert!(!empty.serves_committed(), "no table");
        empty.push(table(5, 10)).unwrap();
        assert!(
            empty.serves_committed(),
            "a pushed table is the committed one"
        );
        // A restarted router reads epoch 5 from its file; the operator may have committed a
        // newer table meanwhile, so it is not ready yet ...
        let restarted = Tables::load(Some(path)).unwrap();
        assert_eq!(restarted.current().unwrap().epoch, 5);
        assert!(!restarted.serves_committed());
        // ... a refused (older) push does not confirm it ...
        assert!(restarted.push(table(4, 10)).is_err());
        assert!(!restarted.serves_committed());
        // ... the same table pushed again does, as does a newer one.
        assert_eq!(restarted.push(table(5, 10)).unwrap(), Pushed::Unchanged);
        assert!(restarted.serves_committed());
    }

    #[test]
    fn the_contract_yaml_loads_and_bad_files_fail_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.yaml");
        std::fs::write(
            &path,
            r#"epoch: 1
ranges:
  - {start: 0, end: 2147483647, cluster: fc-a}
  - {start: 2147483648, end: 4294967295, cluster: fc-b}
clusters:
  fc-a: {nodes: ["127.0.0.1:7101", "127.0.0.1:7102", "127.0.0.1:7103"], leader: "127.0.0.1:7101"}
  fc-b: {nodes: ["127.0.0.1:7201", "127.0.0.1:7202", "127.0.0.1:7203"]}
"#,
        )
        .unwrap();
        let t = Tables::load(Some(path.clone())).unwrap().current().unwrap();
        assert_eq!(t.clusters["fc-a"].leader.as_deref(), Some("127.0.0.1:7101"));
        std::fs::write(&path, "epoch: 1\nranges: []\n").unwrap();
        let e = Tables::load(Some(path.clone())).unwrap_err().to_string();
        assert!(e.contains("table.yaml") && e.contains("no ranges"), "{e}");
        std::fs::write(&path, "").unwrap();
        assert_eq!(Tables::load(Some(path)).unwrap().current(), None);
    }
}
