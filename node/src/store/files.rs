//! Reading files and directories. Every read returns the store's applied seq, read atomically
//! with the data, so the node can hold the answer until everything it may reflect is committed.

use super::{array, bytes, int, text, FileRead, Store};
use crate::error::{Error, Result};
use cleave_proto::command::Stat;
use cleave_proto::owned::{key_hash, Ownership};
use cleave_proto::FilePath;
use redis::Value;

impl Store {
    /// A byte range of a file, consistent with its metadata; and the store's applied seq.
    pub async fn read(
        &mut self,
        path: &FilePath,
        offset: u64,
        length: u64,
        version: Option<u64>,
    ) -> Result<(FileRead, u64)> {
        let mut pipe = redis::pipe();
        self.scripts.read(&mut pipe, path, offset, length, version);
        let reply = self.run(&pipe).await?.pop().unwrap_or(Value::Nil);
        let mut it = array(reply).into_iter();
        let applied = it.next().map(|v| int(&v)).unwrap_or(0);
        let tag = it.next().map(|v| text(&v)).unwrap_or_default();
        let read = match tag.as_str() {
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
            "moved" => {
                let epoch = it.next().map(|v| int(&v)).unwrap_or(0);
                return Err(Error::Moved {
                    epoch,
                    hash: path.hash(),
                });
            }
            _ => FileRead::None,
        };
        Ok((read, applied))
    }

    /// Metadata of a file, or a directory's stat, or `None`; and the store's applied seq.
    pub async fn stat(&mut self, path: &FilePath) -> Result<(Option<Stat>, u64)> {
        let h = key_hash(path.hash());
        let meta_key = format!("f:{h}:{path}");
        let dir_key = format!("dir:{h}:{path}");
        let (fields, dir, applied, own): (Vec<Option<String>>, bool, Option<u64>, OwnRecord) =
            redis::pipe()
                .atomic()
                .cmd("HMGET")
                .arg(&meta_key)
                .arg(&["size", "etag", "type", "mtime", "seq"])
                .exists(&dir_key)
                .hget("meta", "applied")
                .cmd("HMGET")
                .arg("own")
                .arg(OWN_FIELDS)
                .query_async(self.conn())
                .await
                .map_err(|e| Error::redis("stat", e))?;
        check_owned(&own, path, &self.cluster)?;
        let num = |i: usize| {
            fields
                .get(i)
                .cloned()
                .flatten()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0)
        };
        let applied = applied.unwrap_or(0);
        if fields.first().cloned().flatten().is_some() {
            return Ok((
                Some(Stat {
                    kind: "file".into(),
                    size: num(0),
                    etag: fields[1].clone().unwrap_or_default(),
                    content_type: fields[2].clone().unwrap_or_default(),
                    modified_ms: num(3),
                    seq: num(4),
                }),
                applied,
            ));
        }
        let stat = dir.then(|| Stat {
            kind: "dir".into(),
            ..Stat::default()
        });
        Ok((stat, applied))
    }

    /// One page of a directory, strictly after `after`; and the store's applied seq.
    pub async fn list(
        &mut self,
        path: &FilePath,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, u64)> {
        let min = after.map_or_else(|| "-".to_string(), |a| format!("({a}"));
        let (names, applied, own): (Vec<String>, Option<u64>, OwnRecord) = redis::pipe()
            .atomic()
            .cmd("ZRANGEBYLEX")
            .arg(format!("dir:{}:{path}", key_hash(path.hash())))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .hget("meta", "applied")
            .cmd("HMGET")
            .arg("own")
            .arg(OWN_FIELDS)
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("list", e))?;
        check_owned(&own, path, &self.cluster)?;
        Ok((names, applied.unwrap_or(0)))
    }

    /// What the cluster owns, as its store records it (`None`: everything, no `own` entry yet).
    pub async fn ownership(&mut self) -> Result<Option<Ownership>> {
        let own: OwnRecord = redis::cmd("HMGET")
            .arg("own")
            .arg(OWN_FIELDS)
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("ownership", e))?;
        parse_own(&own)
    }
}

/// The fields of the `own` hash, in the order of [`OwnRecord`].
const OWN_FIELDS: &[&str] = &["epoch", "ranges", "cluster", "fenced"];

/// The `own` hash's `epoch`, `ranges`, `cluster` and `fenced`, read atomically with a read.
type OwnRecord = (Option<u64>, Option<String>, Option<String>, Option<u64>);

fn parse_own(own: &OwnRecord) -> Result<Option<Ownership>> {
    let (Some(epoch), Some(text), cluster, fenced) = own else {
        return Ok(None);
    };
    let ranges = Ownership::parse_ranges(text)
        .map_err(|e| Error::Apply(format!("the store's ownership record: {e}")))?;
    Ok(Some(Ownership {
        cluster: cluster.clone().unwrap_or_default(),
        epoch: *epoch,
        ranges,
        fenced: fenced.unwrap_or(0) == 1,
    }))
}

/// `Err(Moved)` when the store's ownership record does not give `path` to this node's cluster
/// (`mine`): a record of another cluster gives it nothing.
fn check_owned(own: &OwnRecord, path: &FilePath, mine: &str) -> Result<()> {
    match parse_own(own)? {
        Some(o) if o.cluster != mine || !o.contains(path.hash()) => Err(Error::Moved {
            epoch: o.epoch,
            hash: path.hash(),
        }),
        _ => Ok(()),
    }
}
