//! The node's store: one Redis server, reached through a reconnecting multiplexed connection.
//!
//! Key layout (all keys live in the node's own Redis):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `f:<h>:<path>` | hash | a file's metadata: size, etag, type, mtime, seq, blob (chunk key prefix), chunks, csize, upset |
//! | `c:<h>:<epoch>.<seq>:<i>` | string | chunk `i` of the file version written by `INSERT`/`UPDATE` at `(epoch, seq)` |
//! | `u:<h>:<path>\n<upload>\n<i>` | string | part `i` of a multipart upload (stays in place after `COMMIT`) |
//! | `up:<h>:<path>\n<upload>` | hash | part index → part etag, for `COMMIT` and `ABORT` |
//! | `dir:<h>:<path>` | sorted set | a directory's entries (score 0, lexicographic; sub-directories end in `/`) |
//! | `own` | hash | `epoch`, `ranges`, `cluster`, `fenced`: the hash ranges `cluster` owns under that table epoch (absent: all); `fenced` 1 for a split's fence, whose refused keys are kept |
//! | `meta:cleaned` | string | the table epoch whose foreign keys this replica has deleted (local, not replicated) |
//! | `meta:cluster` | string | the FileCluster this node belongs to (local; an `own` record of another cluster gives it nothing) |
//! | `meta` | hash | `applied` and `appliedepoch` (seq and epoch of the last applied entry, written in the same script as the change), `logfirst` (first seq held in the log), `baseepoch` (epoch of the entry before it), `logbytes` (its size) |
//! | `log` | list | the replication log: epoch, op and effects of each entry, oldest first |
//! | `sess:<id>` | hash | a client session's dedup record: `last` request number and `r<n>` → first result of the recent requests |
//! | `sess` | sorted set | session id → seq of its last use, to evict the oldest sessions |
//! | `meta:epoch`, `meta:role`, `meta:leader` | string | the node's role, persisted across restarts |
//! | `meta:resyncing` | string | set while a full resync is incomplete: the data must not be trusted |
//! | `rbuf` | list | entries buffered while a full resync copies its snapshot (epoch, seq, op, effects) |
//!
//! `<h>` is the root hash of the file's path as 8 hex digits: every data key names it, so the
//! keys of one hash range can be told apart by name alone (split clone, cleanup). Chunk keys
//! name the writer's epoch and seq, never the seq alone: after a split two clusters go on from
//! the same seq, each in its own ranges.
//! `\n` cannot occur in a path or an upload id, so these keys are unambiguous.

mod apply;
mod cleanup;
mod files;
mod role;
mod scripts;
pub mod snapshot;

pub use apply::{Led, LogRead, Positions};

use crate::error::{Error, Result};
use bytes::Bytes;
use redis::aio::ConnectionManager;
use redis::Value;
use scripts::Scripts;
use std::time::Duration;

/// How long a node waits for its Redis to come up at start.
const REDIS_STARTUP_WAIT: Duration = Duration::from_secs(30);
/// How long one Redis round trip may take. Generous: a batch may carry 16 MiB of writes, and
/// with `appendfsync always` every batch waits for the disk. (The client's default is 500 ms.)
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// An entry of the replication log (epoch, seq, op, effects).
pub use cleave_proto::command::repl::LogEntry as Entry;

/// What applying a replayed entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Applied; the store is now at this seq.
    Applied(u64),
    /// The store does not hold what the node believed (it lost data): it is at this seq.
    Lost(u64),
    /// Already applied before.
    Duplicate,
    /// Out of order: the store is at this seq.
    Gap(u64),
}

/// The answer of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileRead {
    /// Bytes of the file at version `seq`, total `size`.
    File {
        /// Total size.
        size: u64,
        /// Version.
        seq: u64,
        /// The requested bytes.
        data: Bytes,
    },
    /// The file changed: it is now at this version.
    Stale(u64),
    /// No such file.
    None,
}

/// Role information persisted in Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedRole {
    /// Highest epoch seen.
    pub epoch: u64,
    /// `leader`, `follower`, `learner`, or empty.
    pub role: String,
    /// The leader followed.
    pub leader: String,
    /// A learner's snapshot spans (`start-end,...`; empty: every hash).
    pub spans: String,
}

/// A handle to the node's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    scripts: Scripts,
    log_capacity: u64,
    log_max_bytes: u64,
    /// The FileCluster this node belongs to (kept in `meta:cluster`, which the scripts read).
    cluster: String,
}

fn int(v: &Value) -> u64 {
    match v {
        Value::Int(n) => (*n).max(0) as u64,
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0),
        Value::SimpleString(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

fn bytes(v: Value) -> Bytes {
    match v {
        Value::BulkString(b) => Bytes::from(b),
        Value::SimpleString(s) => Bytes::from(s),
        _ => Bytes::new(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        _ => String::new(),
    }
}

fn array(v: Value) -> Vec<Value> {
    match v {
        Value::Array(items) => items,
        _ => vec![],
    }
}

impl Store {
    /// Connect to Redis at `url`, waiting for it to come up, and load the scripts.
    pub async fn connect(url: &str, log_capacity: u64, log_max_bytes: u64) -> Result<Store> {
        let client = redis::Client::open(url).map_err(|e| Error::redis("bad redis url", e))?;
        let deadline = tokio::time::Instant::now() + REDIS_STARTUP_WAIT;
        let conn = loop {
            let config = redis::aio::ConnectionManagerConfig::new()
                .set_response_timeout(Some(REDIS_RESPONSE_TIMEOUT))
                .set_connection_timeout(Some(Duration::from_secs(2)));
            match ConnectionManager::new_with_config(client.clone(), config).await {
                Ok(c) => break c,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    tracing::debug!("redis at {url} not ready: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(Error::redis("cannot connect to redis", e)),
            }
        };
        let mut store = Store {
            conn,
            scripts: Scripts::new(),
            log_capacity: log_capacity.max(1),
            log_max_bytes,
            cluster: String::new(),
        };
        store.scripts.load(&mut store.conn).await?;
        Ok(store)
    }

    /// Name the FileCluster this node belongs to (`meta:cluster`, node-local): the scripts and
    /// the cleaner act only on ownership records of this cluster.
    pub async fn set_cluster(&mut self, cluster: &str) -> Result<()> {
        self.cluster = cluster.to_string();
        redis::cmd("SET")
            .arg("meta:cluster")
            .arg(cluster)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| Error::redis("record the cluster name", e))
    }

    /// The FileCluster this node belongs to.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Run a pipeline of script calls, reloading the scripts once if Redis forgot them
    /// (a restarted Redis). Safe to retry: a `NOSCRIPT` failure executed nothing.
    async fn run(&mut self, pipe: &redis::Pipeline) -> Result<Vec<Value>> {
        match pipe.query_async::<Vec<Value>>(&mut self.conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.scripts.load(&mut self.conn).await?;
                pipe.query_async(&mut self.conn)
                    .await
                    .map_err(|e| Error::redis("redis pipeline", e))
            }
            other => other.map_err(|e| Error::redis("redis pipeline", e)),
        }
    }

    /// A raw connection handle for the snapshot and resync code.
    pub(crate) fn conn(&mut self) -> &mut ConnectionManager {
        &mut self.conn
    }
}
