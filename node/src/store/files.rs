//! Reading files and directories. Every read returns the store's applied seq, read atomically
//! with the data, so the node can hold the answer until everything it may reflect is committed.

use super::{array, bytes, int, text, FileRead, Store};
use crate::error::{Error, Result};
use cleave_proto::command::Stat;
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
        self.scripts
            .read(&mut pipe, path.as_str(), offset, length, version);
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
            _ => FileRead::None,
        };
        Ok((read, applied))
    }

    /// Metadata of a file, or a directory's stat, or `None`; and the store's applied seq.
    pub async fn stat(&mut self, path: &FilePath) -> Result<(Option<Stat>, u64)> {
        let meta_key = format!("f:{path}");
        let dir_key = format!("dir:{path}");
        let (fields, dir, applied): (Vec<Option<String>>, bool, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("HMGET")
            .arg(&meta_key)
            .arg(&["size", "etag", "type", "mtime", "seq"])
            .exists(&dir_key)
            .hget("meta", "applied")
            .query_async(self.conn())
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
        let (names, applied): (Vec<String>, Option<u64>) = redis::pipe()
            .atomic()
            .cmd("ZRANGEBYLEX")
            .arg(format!("dir:{path}"))
            .arg(min)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .hget("meta", "applied")
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("list", e))?;
        Ok((names, applied.unwrap_or(0)))
    }
}
