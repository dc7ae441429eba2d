//! The node's store: one Redis server, reached through a reconnecting multiplexed connection.
//!
//! Key layout (all keys live in the node's own Redis):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `f:<path>` | hash | a file's metadata: size, etag, type, mtime, seq, blob (chunk key prefix), chunks, csize, upset |
//! | `c:<seq>:<i>` | string | chunk `i` of the file version written by `INSERT`/`UPDATE` at `seq` |
//! | `u:<path>\n<upload>\n<i>` | string | part `i` of a multipart upload (stays in place after `COMMIT`) |
//! | `up:<path>\n<upload>` | hash | part index → part etag, for `COMMIT` and `ABORT` |
//! | `dir:<path>` | sorted set | a directory's entries (score 0, lexicographic; sub-directories end in `/`) |
//! | `meta` | hash | `applied` (seq of the last applied change, written in the same script as the change), `logfirst` (first seq held in the log), `logbytes` (its size) |
//! | `log` | list | the replication log: op and effects alternately, oldest first |
//! | `meta:epoch`, `meta:role`, `meta:leader` | string | the node's role, persisted across restarts |
//! | `meta:resyncing` | string | set while a full resync is incomplete: the data must not be trusted |
//! | `rbuf`, `rbuffx`, `rbufseq` | list | entries buffered while a full resync copies its snapshot |
//!
//! `\n` cannot occur in a path or an upload id, so these keys are unambiguous.

mod scripts;
pub mod snapshot;

use crate::error::{Error, Result};
use crate::op::Op;
use bytes::Bytes;
use cleave_proto::command::Stat;
use cleave_proto::{ErrorCode, FilePath, Reply};
use redis::aio::ConnectionManager;
use redis::Value;
use scripts::Scripts;
use std::time::Duration;

/// How long a node waits for its Redis to come up at start.
const REDIS_STARTUP_WAIT: Duration = Duration::from_secs(30);
/// How long one Redis round trip may take. Generous: a batch may carry 16 MiB of writes, and
/// with `appendfsync always` every batch waits for the disk. (The client's default is 500 ms.)
const REDIS_RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// An entry of the replication log: seq, op, effects.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its sequence number.
    pub seq: u64,
    /// The op as stored (MessagePack).
    pub op: Bytes,
    /// The effects the leader computed (MessagePack).
    pub fx: Bytes,
}

/// What applying a replayed entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Applied; the store is now at this seq.
    Applied(u64),
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
    /// `leader`, `follower`, or empty.
    pub role: String,
    /// The leader followed.
    pub leader: String,
}

/// A handle to the node's Redis. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    conn: ConnectionManager,
    scripts: Scripts,
    log_capacity: u64,
    log_max_bytes: u64,
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
        };
        store.scripts.load(&mut store.conn).await?;
        Ok(store)
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

    /// Leader: apply ops in order, each getting the next seq. One script call for the batch.
    pub async fn apply_lead(
        &mut self,
        ops: &[Op],
    ) -> Result<Vec<std::result::Result<Entry, Reply>>> {
        let mut pipe = redis::pipe();
        let changes = ops.iter().map(|op| (0, op.0.as_ref(), &b""[..]));
        self.scripts.apply(
            &mut pipe,
            "lead",
            self.log_capacity,
            self.log_max_bytes,
            changes,
        );
        let replies = array(self.run(&pipe).await?.pop().unwrap_or(Value::Nil));
        if replies.len() != ops.len() {
            return Err(Error::Apply(format!(
                "apply answered {} results for {} ops",
                replies.len(),
                ops.len()
            )));
        }
        Ok(replies
            .into_iter()
            .zip(ops)
            .map(|(v, op)| {
                let mut it = array(v).into_iter();
                let tag = it.next().map(|v| text(&v)).unwrap_or_default();
                let a = it.next().unwrap_or(Value::Nil);
                let b = it.next().unwrap_or(Value::Nil);
                match tag.as_str() {
                    "ok" => Ok(Entry {
                        seq: int(&a),
                        op: op.0.clone(),
                        fx: bytes(b),
                    }),
                    "err" => Err(Reply::new(ErrorCode::parse(&text(&a)), text(&b))),
                    other => Err(Reply::new(
                        ErrorCode::Err,
                        format!("apply script answered {other:?}"),
                    )),
                }
            })
            .collect())
    }

    /// Follower: apply log entries in order. Stops at the first gap.
    pub async fn apply_replay(&mut self, entries: &[Entry]) -> Result<Vec<Replayed>> {
        let mut pipe = redis::pipe();
        let changes = entries
            .iter()
            .map(|e| (e.seq, e.op.as_ref(), e.fx.as_ref()));
        self.scripts.apply(
            &mut pipe,
            "replay",
            self.log_capacity,
            self.log_max_bytes,
            changes,
        );
        let replies = array(self.run(&pipe).await?.pop().unwrap_or(Value::Nil));
        let mut out = vec![];
        for v in replies {
            let items = array(v);
            let tag = items.first().map(text).unwrap_or_default();
            let n = items.get(1).map(int).unwrap_or(0);
            out.push(match tag.as_str() {
                "ok" => Replayed::Applied(n),
                "dup" => Replayed::Duplicate,
                "gap" => Replayed::Gap(n),
                _ => {
                    let msg = items.get(2).map(text).unwrap_or_default();
                    return Err(Error::Apply(format!("replay failed: {tag} {msg}")));
                }
            });
        }
        Ok(out)
    }

    /// Log entries after `from` (at most `max`), with the log's first seq and the applied seq.
    pub async fn read_log(&mut self, from: u64, max: u64) -> Result<(u64, u64, Vec<Entry>)> {
        let mut pipe = redis::pipe();
        self.scripts.read_log(&mut pipe, from, max);
        let reply = self.run(&pipe).await?.pop().unwrap_or(Value::Nil);
        let mut it = array(reply).into_iter();
        let first = it.next().map(|v| int(&v)).unwrap_or(0);
        let applied = it.next().map(|v| int(&v)).unwrap_or(0);
        let mut entries = vec![];
        let mut seq = from;
        while let (Some(op), Some(fx)) = (it.next(), it.next()) {
            seq += 1;
            entries.push(Entry {
                seq,
                op: bytes(op),
                fx: bytes(fx),
            });
        }
        Ok((first, applied, entries))
    }

    /// The applied seq and the log's first seq and length.
    pub async fn positions(&mut self) -> Result<(u64, u64, u64)> {
        let (applied, first): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg("meta")
            .arg(&["applied", "logfirst"])
            .query_async(&mut self.conn)
            .await
            .map_err(|e| Error::redis("read positions", e))?;
        let (applied, first) = (applied.unwrap_or(0), first.unwrap_or(0));
        let len = if first == 0 { 0 } else { applied + 1 - first };
        Ok((applied, first, len))
    }

    /// A byte range of a file, consistent with its metadata.
    pub async fn read(
        &mut self,
        path: &FilePath,
        offset: u64,
        length: u64,
        version: Option<u64>,
    ) -> Result<FileRead> {
        let mut pipe = redis::pipe();
        self.scripts
            .read(&mut pipe, path.as_str(), offset, length, version);
        let reply = self.run(&pipe).await?.pop().unwrap_or(Value::Nil);
        let mut it = array(reply).into_iter();
        let tag = it.next().map(|v| text(&v)).unwrap_or_default();
        Ok(match tag.as_str() {
            "file" => {
                let size = it.next().map(|v| int(&v)).unwrap_or(0);
                let seq = it.next().map(|v| int(&v)).unwrap_or(0);
                FileRead::File {
                    size,
                    seq,
                    data: it.next().map(bytes).unwrap_or_default(),
                }
            }
            "stale" => FileRead::Stale(it.next().map(|v| int(&v)).unwrap_or(0)),
            _ => FileRead::None,
        })
    }

    /// Metadata of a file, or a directory's stat, or `None`.
    pub async fn stat(&mut self, path: &FilePath) -> Result<Option<Stat>> {
        let meta_key = format!("f:{path}");
        let dir_key = format!("dir:{path}");
        let (fields, dir): (Vec<Option<String>>, bool) = redis::pipe()
            .cmd("HMGET")
            .arg(&meta_key)
            .arg(&["size", "etag", "type", "mtime", "seq"])
            .exists(&dir_key)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| Error::redis("stat", e))?;
        let num = |i: usize| {
            fields
                .get(i)
                .cloned()
                .flatten()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        if fields.first().cloned().flatten().is_some() {
            return Ok(Some(Stat {
                kind: "file".into(),
                size: num(0),
                etag: fields[1].clone().unwrap_or_default(),
                content_type: fields[2].clone().unwrap_or_default(),
                modified_ms: num(3),
                seq: num(4),
            }));
        }
        Ok(dir.then(|| Stat {
            kind: "dir".into(),
            ..Stat::default()
        }))
    }

    /// One page of a directory, strictly after `after`.
    pub async fn list(
        &mut self,
        path: &FilePath,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<String>> {
        let min = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        redis::cmd("ZRANGEBYLEX")
            .arg(format!("dir:{path}"))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .query_async(&mut self.conn)
            .await
            .map_err(|e| Error::redis("list", e))
    }

    /// The persisted role.
    pub async fn load_role(&mut self) -> Result<SavedRole> {
        let (epoch, role, leader): (Option<u64>, Option<String>, Option<String>) = redis::pipe()
            .get("meta:epoch")
            .get("meta:role")
            .get("meta:leader")
            .query_async(&mut self.conn)
            .await
            .map_err(|e| Error::redis("load role", e))?;
        Ok(SavedRole {
            epoch: epoch.unwrap_or(0),
            role: role.unwrap_or_default(),
            leader: leader.unwrap_or_default(),
        })
    }

    /// Persist the role (atomically).
    pub async fn save_role(&mut self, saved: &SavedRole) -> Result<()> {
        redis::pipe()
            .atomic()
            .set("meta:epoch", saved.epoch)
            .set("meta:role", &saved.role)
            .set("meta:leader", &saved.leader)
            .query_async::<()>(&mut self.conn)
            .await
            .map_err(|e| Error::redis("save role", e))
    }

    /// A raw connection handle for the snapshot and resync code.
    pub(crate) fn conn(&mut self) -> &mut ConnectionManager {
        &mut self.conn
    }
}
