//! Full resync, both sides: the source streams its data keys in batches (a *fuzzy* snapshot:
//! SCAN + DUMP while writes go on), the receiver restores them and then replays the log from
//! the seq the source had applied *before* the scan started. Every change is logged with
//! its effects (see `apply.lua`), so the replay converges to the source's exact state even
//! though the snapshot itself is not a point in time.

use super::{array, bytes, int, Entry, Store};
use crate::error::{Error, Result};
use bytes::Bytes;
use cleave_proto::owned::{hash_of_key, spans_contain};
use redis::Value;

/// Prefixes of the keys that hold user data (everything else is node-local bookkeeping).
/// Client sessions (`sess`, `sess:<id>`) travel with the data: a retry after a resync or a
/// failover must still find its first outcome.
const DATA_PREFIXES: [&[u8]; 7] = [b"f:", b"c:", b"u:", b"up:", b"dir:", b"sess", b"own"];
/// Stop filling a snapshot batch at about this many bytes.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Keys asked of SCAN per step.
const SCAN_COUNT: u64 = 64;
/// Keys dumped per round trip.
const DUMP_GROUP: usize = 8;

/// One batch of a snapshot.
#[derive(Debug, Default)]
pub struct SnapshotBatch {
    /// Cursor for the next batch; `"0"` when this is the last.
    pub cursor: String,
    /// The source's applied seq before the scan began (first batch only, else 0).
    pub start_seq: u64,
    /// The epoch of the entry at `start_seq`.
    pub start_epoch: u64,
    /// Key and `DUMP` payload pairs.
    pub items: Vec<(Bytes, Bytes)>,
}

fn is_data_key(k: &[u8]) -> bool {
    DATA_PREFIXES.iter().any(|p| k.starts_with(p))
}

/// Whether a snapshot limited to `spans` (empty: every hash) carries key `k`: a data key of a
/// hash in the spans, or a key of the whole cluster (sessions, ownership), which has no hash.
fn wanted(k: &[u8], spans: &[(u32, u32)]) -> bool {
    is_data_key(k) && (spans.is_empty() || hash_of_key(k).is_none_or(|h| spans_contain(spans, h)))
}

/// `<run id>:<scan>[:<hex key>,<hex key>...]`.
fn format_cursor(run_id: &str, scan: &str, pending: &[Vec<u8>]) -> String {
    let mut c = format!("{run_id}:{scan}");
    if !pending.is_empty() {
        c.push(':');
        let hex: Vec<String> = pending
            .iter()
            .map(|k| k.iter().map(|b| format!("{b:02x}")).collect())
            .collect();
        c.push_str(&hex.join(","));
    }
    c
}

/// The SCAN cursor and the pending keys of a cursor handed out by this Redis server.
fn parse_cursor(cursor: &str, run_id: &str) -> Result<(String, Vec<Vec<u8>>)> {
    let restarted = || {
        Error::Apply("the snapshot source's Redis restarted during the snapshot; start over".into())
    };
    let mut parts = cursor.splitn(3, ':');
    let (Some(id), Some(scan)) = (parts.next(), parts.next()) else {
        return Err(restarted());
    };
    if id != run_id || scan.is_empty() || !scan.bytes().all(|b| b.is_ascii_digit()) {
        return Err(restarted());
    }
    let bad = || Error::Apply(format!("malformed snapshot cursor {cursor:.80}"));
    let pending = match parts.next() {
        None => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|h| {
                if h.is_empty() || h.len() % 2 != 0 {
                    return Err(bad());
                }
                (0..h.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&h[i..i + 2], 16).map_err(|_| bad()))
                    .collect::<Result<Vec<u8>>>()
            })
            .collect::<Result<Vec<_>>>()?,
    };
    Ok((scan.to_string(), pending))
}

impl Store {
    /// This Redis server's run id: it changes when Redis restarts.
    async fn run_id(&mut self) -> Result<String> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("info", e))?;
        Ok(info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .unwrap_or("")
            .trim()
            .to_string())
    }

    /// Source side: the next batch of data keys after `cursor` (`"0"` starts a snapshot), of
    /// about [`BATCH_BYTES`], holding only the data keys of hashes in `spans` if any are given
    /// (a split's learner copies only the range it takes over).
    pub async fn snapshot_batch(
        &mut self,
        cursor: &str,
        spans: &[(u32, u32)],
    ) -> Result<SnapshotBatch> {
        self.snapshot_batch_within(cursor, BATCH_BYTES, spans).await
    }

    /// Source side: the next batch after `cursor`, of at most `max_bytes` plus one key (a key
    /// is never split; the largest is a 64 MiB part), of the data keys of `spans` (empty:
    /// every hash).
    ///
    /// The cursor handed out is `<redis run id>:<SCAN cursor>[:<pending keys>]`: a SCAN cursor
    /// means nothing to a restarted Redis (it could skip keys), so a batch asked with another
    /// server's cursor is refused and the receiver starts over. A SCAN step returns up to
    /// [`SCAN_COUNT`] keys and cannot be resumed in its middle, so the keys of a step that did
    /// not fit travel in the cursor (hex, comma-separated) and open the next batch. The size of
    /// each key is asked (`MEMORY USAGE`) before it is dumped, so a batch stops before it would
    /// pass `max_bytes`.
    pub async fn snapshot_batch_within(
        &mut self,
        cursor: &str,
        max_bytes: usize,
        spans: &[(u32, u32)],
    ) -> Result<SnapshotBatch> {
        let mut batch = SnapshotBatch::default();
        let run_id = self.run_id().await?;
        let (mut scan, mut pending) = if cursor == "0" {
            let at = self.positions().await?;
            batch.start_seq = at.applied;
            batch.start_epoch = at.applied_epoch;
            ("0".to_string(), Vec::new())
        } else {
            parse_cursor(cursor, &run_id)?
        };
        // A resumed cursor whose SCAN is complete ("0") has only its pending keys left.
        let mut can_scan = cursor == "0" || scan != "0";
        let mut size = 0;
        loop {
            if pending.is_empty() {
                if !can_scan {
                    break;
                }
                let (next, keys): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
                    .arg(&scan)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(self.conn())
                    .await
                    .map_err(|e| Error::redis("snapshot scan", e))?;
                pending = keys.into_iter().filter(|k| wanted(k, spans)).collect();
                scan = next;
                can_scan = scan != "0";
                continue;
            }
            // Take the next keys while they fit; a batch always holds at least one key.
            let sizes = self.key_sizes(&pending).await?;
            let mut take = 0;
            let mut planned = size;
            for s in &sizes {
                if (size > 0 || take > 0) && planned + s > max_bytes {
                    break;
                }
                planned += s;
                take += 1;
            }
            if take == 0 {
                break;
            }
            let group: Vec<Vec<u8>> = pending.drain(..take).collect();
            size += self.dump_into(&group, &mut batch).await?;
            if take < sizes.len() {
                break;
            }
        }
        batch.cursor = if !can_scan && pending.is_empty() {
            "0".to_string()
        } else {
            format_cursor(&run_id, &scan, &pending)
        };
        Ok(batch)
    }

    /// Approximate bytes of each key (`MEMORY USAGE`; 0 for a key gone meanwhile).
    async fn key_sizes(&mut self, keys: &[Vec<u8>]) -> Result<Vec<usize>> {
        let mut pipe = redis::pipe();
        for k in keys.iter().take(DUMP_GROUP) {
            pipe.cmd("MEMORY").arg("USAGE").arg(k).arg("SAMPLES").arg(0);
        }
        let sizes: Vec<Option<u64>> = pipe
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("snapshot sizes", e))?;
        Ok(sizes.into_iter().map(|s| s.unwrap_or(0) as usize).collect())
    }

    /// `DUMP` each key into the batch (a key deleted meanwhile is skipped: its deletion is in
    /// the log the receiver replays). Returns the bytes added.
    async fn dump_into(&mut self, keys: &[Vec<u8>], batch: &mut SnapshotBatch) -> Result<usize> {
        let mut pipe = redis::pipe();
        for k in keys {
            pipe.cmd("DUMP").arg(k);
        }
        let dumps: Vec<Value> = pipe
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("snapshot dump", e))?;
        let mut added = 0;
        for (k, d) in keys.iter().zip(dumps) {
            if let Value::BulkString(d) = d {
                added += k.len() + d.len();
                batch.items.push((Bytes::from(k.clone()), Bytes::from(d)));
            }
        }
        Ok(added)
    }

    /// Receiver side: discard everything and mark the store as resyncing from `start_seq`.
    /// Atomic, so a crash leaves either the old data or an empty store flagged as incomplete.
    pub async fn begin_resync(
        &mut self,
        start_seq: u64,
        start_epoch: u64,
        role: &super::SavedRole,
    ) -> Result<()> {
        redis::pipe()
            .atomic()
            .cmd("FLUSHDB")
            .set("meta:resyncing", 1)
            .hset_multiple(
                "meta",
                &[
                    ("applied", start_seq),
                    ("appliedepoch", start_epoch),
                    ("baseepoch", start_epoch),
                    ("logfirst", 0),
                    ("logbytes", 0),
                ],
            )
            .set("meta:epoch", role.epoch)
            .set("meta:role", &role.role)
            .set("meta:leader", &role.leader)
            .set("meta:learn", &role.spans)
            .set("meta:cluster", &self.cluster)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("begin resync", e))
    }

    /// Receiver side: restore a batch of dumped keys.
    pub async fn restore(&mut self, items: &[(Bytes, Bytes)]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for (k, d) in items {
            pipe.cmd("RESTORE")
                .arg(k.as_ref())
                .arg(0)
                .arg(d.as_ref())
                .arg("REPLACE")
                .ignore();
        }
        pipe.query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("restore", e))
    }

    /// Whether an interrupted resync left the store incomplete.
    pub async fn is_resyncing(&mut self) -> Result<bool> {
        let v: Option<u64> = redis::cmd("GET")
            .arg("meta:resyncing")
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("get", e))?;
        Ok(v.unwrap_or(0) == 1)
    }

    /// Receiver side: the snapshot and its replay are complete; the data can be trusted.
    pub async fn finish_resync(&mut self) -> Result<()> {
        redis::pipe()
            .del("meta:resyncing")
            .del("rbuf")
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("finish resync", e))
    }

    /// Receiver side: buffer entries fetched while the snapshot is copied.
    pub async fn buffer_push(&mut self, entries: &[Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("RPUSH")
                .arg("rbuf")
                .arg(e.epoch)
                .arg(e.seq)
                .arg(e.op.as_ref())
                .arg(e.fx.as_ref())
                .ignore();
        }
        pipe.query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("buffer", e))
    }

    /// Receiver side: take up to `max` buffered entries from the front.
    pub async fn buffer_take(&mut self, max: usize) -> Result<Vec<Entry>> {
        let end = max as isize * 4 - 1;
        let (items, ()): (Vec<Value>, ()) = redis::pipe()
            .atomic()
            .lrange("rbuf", 0, end)
            .ltrim("rbuf", max as isize * 4, -1)
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("buffer take", e))?;
        let mut out = Vec::with_capacity(items.len() / 4);
        let mut it = items.into_iter();
        while let (Some(epoch), Some(seq), Some(op), Some(fx)) =
            (it.next(), it.next(), it.next(), it.next())
        {
            out.push(Entry {
                epoch: int(&epoch),
                seq: int(&seq),
                op: bytes(op),
                fx: bytes(fx),
            });
        }
        Ok(out)
    }

    /// Receiver side: bytes held in the resync buffer (to bound it).
    pub async fn buffer_bytes(&mut self) -> Result<u64> {
        redis::cmd("MEMORY")
            .arg("USAGE")
            .arg("rbuf")
            .arg("SAMPLES")
            .arg(0)
            .query_async::<Option<u64>>(self.conn())
            .await
            .map(|n| n.unwrap_or(0))
            .map_err(|e| Error::redis("buffer size", e))
    }

    /// A digest of every data key and value, to compare replicas in tests and tools.
    pub async fn data_digest(&mut self) -> Result<(u64, String)> {
        self.data_digest_within(&[]).await
    }

    /// The key count and digest of what a snapshot limited to `spans` would carry (empty:
    /// every data key): compares a split's learner with its source over the moving range.
    pub async fn data_digest_within(&mut self, spans: &[(u32, u32)]) -> Result<(u64, String)> {
        let mut cursor = "0".to_string();
        let mut keys: Vec<Vec<u8>> = vec![];
        loop {
            let (next, batch): (String, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(&cursor)
                .arg("COUNT")
                .arg(1000)
                .query_async(self.conn())
                .await
                .map_err(|e| Error::redis("digest scan", e))?;
            keys.extend(batch.into_iter().filter(|k| wanted(k, spans)));
            cursor = next;
            if cursor == "0" {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        for chunk in keys.chunks(256) {
            let mut pipe = redis::pipe();
            for k in chunk {
                // DUMP payloads embed the encoding, which may differ between replicas; hash the
                // logical value instead.
                pipe.cmd("TYPE").arg(k);
            }
            let types: Vec<String> = pipe
                .query_async(self.conn())
                .await
                .map_err(|e| Error::redis("type", e))?;
            let mut pipe = redis::pipe();
            for (k, t) in chunk.iter().zip(&types) {
                match t.as_str() {
                    "string" => pipe.get(k),
                    "hash" => pipe.hgetall(k),
                    "zset" => pipe.zrange(k, 0, -1),
                    _ => pipe.cmd("TYPE").arg(k),
                };
            }
            let values: Vec<Value> = pipe
                .query_async(self.conn())
                .await
                .map_err(|e| Error::redis("digest", e))?;
            for (k, v) in chunk.iter().zip(values) {
                hasher.update(k);
                hash_value(&mut hasher, v);
            }
        }
        Ok((keys.len() as u64, format!("{:032x}", hasher.digest128())))
    }
}

fn hash_value(h: &mut xxhash_rust::xxh3::Xxh3, v: Value) {
    match v {
        Value::BulkString(b) => h.update(&b),
        Value::Map(pairs) => {
            let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
                .into_iter()
                .map(|(k, v)| (bytes(k).to_vec(), bytes(v).to_vec()))
                .collect();
            pairs.sort();
            for (k, v) in pairs {
                h.update(&k);
                h.update(&v);
            }
        }
        Value::Array(items) => {
            // HGETALL under RESP2 is a flat array of pairs: sort the pairs for a stable digest.
            let flat: Vec<Vec<u8>> = array(Value::Array(items))
                .into_iter()
                .map(|v| bytes(v).to_vec())
                .collect();
            let mut pairs: Vec<&[Vec<u8>]> = flat.chunks(2).collect();
            pairs.sort();
            for p in pairs {
                for x in p {
                    h.update(x);
                }
            }
        }
        other => h.update(format!("{other:?}").as_bytes()),
    }
}

impl Store {
    /// Flag the store as untrusted until a full resync completes (a deposed leader).
    pub async fn mark_resync_needed(&mut self) -> Result<()> {
        redis::cmd("SET")
            .arg("meta:resyncing")
            .arg(1)
            .query_async::<()>(self.conn())
            .await
            .map_err(|e| Error::redis("mark resync", e))
    }
}
