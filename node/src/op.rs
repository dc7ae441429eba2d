//! The replicated changes ("ops") and their encoding in the replication log.
//!
//! An op is a MessagePack array built here, stored verbatim in the leader's log, shipped to
//! followers, and decoded inside Redis by `store/apply.lua` (Redis embeds `cmsgpack`). The node
//! never has to decode an op in Rust: the bytes it sends to Redis once are the bytes it
//! replicates.
//!
//! Every op is `[name, hash, fields...]`: `hash` is the root hash of the op's path as 8 hex
//! digits (empty for ops without a path), which every Redis key of the file names, and which the
//! leader checks against what its cluster owns (`-MOVED`). The apply script removes it before
//! reading the fields, so the fields below keep their positions:
//!
//! | op | fields |
//! |---|---|
//! | `put` | path, must-exist (0/1), etag, content type, mtime (ms), size, chunk... |
//! | `del` | path |
//! | `part` | path, upload id, index, etag, data |
//! | `commit` | path, upload id, parts, content type, mtime (ms) |
//! | `abort` | path, upload id |
//! | `noop` | (nothing: the first entry of a leader's epoch) |
//! | `own` | table epoch, ranges (`start-end,...`), cluster, fenced (1: a split's fence, the keys outside are kept): that cluster owns exactly these from here on |
//!
//! Everything time- or content-derived (mtime, etag) is decided by the leader and carried in the
//! op, so every replica stores identical metadata.

use bytes::Bytes;
use cleave_proto::command::{Abort, Commit, Part, Put};
use cleave_proto::owned::{key_hash, Ownership};
use cleave_proto::FilePath;
use std::time::{SystemTime, UNIX_EPOCH};

/// Files are stored in chunks of this size, so a byte range touches only the chunks it needs.
pub const CHUNK_SIZE: usize = 1024 * 1024;

/// An encoded op, ready for the apply script and the log.
#[derive(Debug, Clone)]
pub struct Op(pub Bytes);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Content hash used as the etag: xxh3-128, hex.
pub fn etag(data: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(data))
}

struct Writer(Vec<u8>);

impl Writer {
    /// An op named `name` with `fields` fields after the name and the hash.
    fn new(name: &str, path: Option<&FilePath>, fields: u32, capacity: usize) -> Self {
        let mut w = Writer(Vec::with_capacity(capacity + 64));
        rmp::encode::write_array_len(&mut w.0, fields + 2).expect("writing to a Vec cannot fail");
        w.str(name)
            .str(&path.map(|p| key_hash(p.hash())).unwrap_or_default());
        w
    }
    fn str(&mut self, s: &str) -> &mut Self {
        rmp::encode::write_str(&mut self.0, s).expect("writing to a Vec cannot fail");
        self
    }
    /// Binary data, written with a *str* header: Redis' embedded cmsgpack does not decode the
    /// bin family, and Lua strings are byte strings anyway.
    fn bin(&mut self, b: &[u8]) -> &mut Self {
        rmp::encode::write_str_len(&mut self.0, b.len() as u32)
            .expect("writing to a Vec cannot fail");
        self.0.extend_from_slice(b);
        self
    }
    fn uint(&mut self, n: u64) -> &mut Self {
        rmp::encode::write_uint(&mut self.0, n).expect("writing to a Vec cannot fail");
        self
    }
    fn done(self) -> Op {
        Op(Bytes::from(self.0))
    }
}

impl Op {
    /// `INSERT` / `UPDATE`.
    pub fn put(put: &Put) -> Op {
        let chunks: Vec<&[u8]> = put.data.chunks(CHUNK_SIZE).collect();
        let mut w = Writer::new(
            "put",
            Some(&put.path),
            6 + chunks.len() as u32,
            put.data.len(),
        );
        w.str(put.path.as_str())
            .uint(put.must_exist as u64)
            .str(&etag(&put.data))
            .str(put.content_type.as_deref().unwrap_or(""))
            .uint(now_ms())
            .uint(put.data.len() as u64);
        for c in chunks {
            w.bin(c);
        }
        w.done()
    }

    /// `DELETE`.
    pub fn delete(path: &FilePath) -> Op {
        let mut w = Writer::new("del", Some(path), 1, 0);
        w.str(path.as_str());
        w.done()
    }

    /// `PART`.
    pub fn part(part: &Part) -> Op {
        let mut w = Writer::new("part", Some(&part.path), 5, part.data.len());
        w.str(part.path.as_str())
            .str(&part.upload)
            .uint(part.index as u64)
            .str(&etag(&part.data))
            .bin(&part.data);
        w.done()
    }

    /// `COMMIT`.
    pub fn commit(commit: &Commit) -> Op {
        let mut w = Writer::new("commit", Some(&commit.path), 5, 0);
        w.str(commit.path.as_str())
            .str(&commit.upload)
            .uint(commit.parts as u64)
            .str(commit.content_type.as_deref().unwrap_or(""))
            .uint(now_ms());
        w.done()
    }

    /// `ABORT`.
    pub fn abort(abort: &Abort) -> Op {
        let mut w = Writer::new("abort", Some(&abort.path), 2, 0);
        w.str(abort.path.as_str()).str(&abort.upload);
        w.done()
    }

    /// The first entry of a leader's epoch: changes nothing, but once a quorum holds it every
    /// entry before it is committed.
    pub fn noop() -> Op {
        Writer::new("noop", None, 0, 0).done()
    }

    /// `NODE.OWN`: the cluster owns exactly `own.ranges` from this entry on.
    pub fn own(own: &Ownership) -> Op {
        let mut w = Writer::new("own", None, 4, 0);
        w.uint(own.epoch)
            .str(&own.ranges_text())
            .str(&own.cluster)
            .uint(u64::from(own.fenced));
        w.done()
    }

    /// Size in bytes (for batching budgets).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Never true for a real op; here for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_splits_data_into_chunks_and_carries_every_field() {
        let data = Bytes::from(vec![1u8; CHUNK_SIZE * 2 + 10]);
        let put = Put {
            path: FilePath::parse("/a/b").unwrap(),
            data: data.clone(),
            content_type: Some("text/plain".into()),
            must_exist: true,
        };
        let op = Op::put(&put);
        let mut rd = &op.0[..];
        // name, hash, 6 fixed fields + 3 chunks.
        assert_eq!(rmp::decode::read_array_len(&mut rd).unwrap(), 11);
        let text = |rd: &mut &[u8]| {
            let len = rmp::decode::read_str_len(rd).unwrap() as usize;
            let (s, rest) = rd.split_at(len);
            *rd = rest;
            s.to_vec()
        };
        assert_eq!(text(&mut rd), b"put");
        assert_eq!(text(&mut rd), format!("{:08x}", put.path.hash()).as_bytes());
        assert_eq!(text(&mut rd), b"/a/b");
        let must_exist: u64 = rmp::decode::read_int(&mut rd).unwrap();
        assert_eq!(must_exist, 1);
        assert_eq!(text(&mut rd), etag(&data).as_bytes());
        assert_eq!(text(&mut rd), b"text/plain");
        let _mtime: u64 = rmp::decode::read_int(&mut rd).unwrap();
        let size: u64 = rmp::decode::read_int(&mut rd).unwrap();
        assert_eq!(size, data.len() as u64);
        let chunks: Vec<Vec<u8>> = (0..3).map(|_| text(&mut rd)).collect();
        assert_eq!(chunks[0].len(), CHUNK_SIZE);
        assert_eq!(chunks[1].len(), CHUNK_SIZE);
        assert_eq!(chunks[2].len(), 10);
        assert_eq!(
            chunks.concat(),
            data.to_vec(),
            "the chunks are the data, in order"
        );
        assert!(rd.is_empty(), "nothing after the last chunk");
    }

    #[test]
    fn etag_is_the_xxh3_128_of_the_content_in_hex() {
        // Known answers of the reference xxHash implementation.
        assert_eq!(etag(b"abc"), "06b05ab6733a618578af5f94892f3950");
        assert_eq!(etag(b""), "99aa06d3014798d86001c324468d497f");
    }
}
