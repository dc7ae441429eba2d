//! Read-only client commands: `SELECT`, `LIST`, `STAT`, `READ`, and the shapes of their replies.

use super::args::Args;
use crate::error::{ErrorCode, Reply};
use crate::frame::Frame;
use crate::path::FilePath;
use bytes::Bytes;

/// Default page size of `LIST` and of a directory `SELECT`.
pub const DEFAULT_LIST_LIMIT: u32 = 1000;
/// Largest page a client may ask for.
pub const MAX_LIST_LIMIT: u32 = 10_000;
/// Largest byte range one `READ` may return.
pub const MAX_READ_LEN: u64 = 64 * 1024 * 1024;

/// `LIST path [AFTER name] [LIMIT n]`: one sorted page of a directory. Sub-directories end in `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List {
    /// The directory.
    pub path: FilePath,
    /// Return names strictly after this one (the previous page's last name).
    pub after: Option<String>,
    /// Page size.
    pub limit: u32,
}

impl List {
    pub(crate) fn parse(mut args: Args) -> Result<Self, Reply> {
        let path = args.path()?;
        let mut list = List {
            path,
            after: None,
            limit: DEFAULT_LIST_LIMIT,
        };
        while let Some(opt) = args.keyword()? {
            match opt.as_str() {
                "AFTER" => list.after = Some(args.string("AFTER name")?),
                "LIMIT" => {
                    let n = args.u64("LIMIT")?;
                    if n == 0 || n > MAX_LIST_LIMIT as u64 {
                        return Err(Reply::new(
                            ErrorCode::Err,
                            format!("LIMIT must be between 1 and {MAX_LIST_LIMIT}"),
                        ));
                    }
                    list.limit = n as u32;
                }
                other => return Err(args.unknown_option(other)),
            }
        }
        args.finish()?;
        Ok(list)
    }

    pub(crate) fn to_frame(&self) -> Frame {
        let mut parts: Vec<Bytes> = vec!["LIST".into(), self.path.to_string().into()];
        if let Some(a) = &self.after {
            parts.extend([Bytes::from("AFTER"), Bytes::from(a.clone())]);
        }
        parts.extend([Bytes::from("LIMIT"), Bytes::from(self.limit.to_string())]);
        Frame::command(parts)
    }
}

/// `READ path offset length [VERSION v]`: a byte range of a file, for files too large to
/// `SELECT` whole. With `VERSION`, fails with `-STALE` if the file was replaced meanwhile, so a
/// reader stitching ranges together never mixes two versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// The file.
    pub path: FilePath,
    /// First byte.
    pub offset: u64,
    /// Number of bytes (at most [`MAX_READ_LEN`]; fewer at the end of the file).
    pub length: u64,
    /// Expected version (the `seq` from `STAT`).
    pub version: Option<u64>,
}

impl Read {
    pub(crate) fn parse(mut args: Args) -> Result<Self, Reply> {
        let path = args.path()?;
        let offset = args.u64("offset")?;
        let length = args.u64("length")?;
        if length > MAX_READ_LEN {
            return Err(Reply::new(
                ErrorCode::TooLarge,
                format!("READ length {length} exceeds {MAX_READ_LEN}"),
            ));
        }
        let mut version = None;
        while let Some(opt) = args.keyword()? {
            match opt.as_str() {
                "VERSION" => version = Some(args.u64("VERSION")?),
                other => return Err(args.unknown_option(other)),
            }
        }
        args.finish()?;
        Ok(Read {
            path,
            offset,
            length,
            version,
        })
    }

    pub(crate) fn to_frame(&self) -> Frame {
        let mut parts: Vec<Bytes> = vec![
            "READ".into(),
            self.path.to_string().into(),
            self.offset.to_string().into(),
            self.length.to_string().into(),
        ];
        if let Some(v) = self.version {
            parts.extend([Bytes::from("VERSION"), Bytes::from(v.to_string())]);
        }
        Frame::command(parts)
    }
}

/// What `STAT` reports about a file or directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stat {
    /// `file` or `dir`.
    pub kind: String,
    /// Size in bytes (0 for a directory).
    pub size: u64,
    /// Hex digest of the contents (xxh3-128), empty for a directory.
    pub etag: String,
    /// MIME type, empty if none was given.
    pub content_type: String,
    /// Last modification, milliseconds since the Unix epoch.
    pub modified_ms: u64,
    /// Sequence number of the write that produced this version (also its version id).
    pub seq: u64,
}

impl Stat {
    /// As a RESP2 "map": a flat array of name/value pairs.
    pub fn to_frame(&self) -> Frame {
        Frame::Array(vec![
            Frame::bulk("kind"),
            Frame::bulk(self.kind.clone()),
            Frame::bulk("size"),
            Frame::Integer(self.size as i64),
            Frame::bulk("etag"),
            Frame::bulk(self.etag.clone()),
            Frame::bulk("type"),
            Frame::bulk(self.content_type.clone()),
            Frame::bulk("modified"),
            Frame::Integer(self.modified_ms as i64),
            Frame::bulk("seq"),
            Frame::Integer(self.seq as i64),
        ])
    }

    /// Parse the reply of `STAT`.
    pub fn from_frame(frame: &Frame) -> Option<Stat> {
        let Frame::Array(items) = frame else {
            return None;
        };
        let mut stat = Stat::default();
        for pair in items.chunks(2) {
            let [k, v] = pair else { return None };
            let text = || {
                v.as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            };
            let int = || match v {
                Frame::Integer(n) => Some(*n as u64),
                _ => None,
            };
            match k.as_bytes()? {
                b"kind" => stat.kind = text()?,
                b"size" => stat.size = int()?,
                b"etag" => stat.etag = text()?,
                b"type" => stat.content_type = text()?,
                b"modified" => stat.modified_ms = int()?,
                b"seq" => stat.seq = int()?,
                _ => {}
            }
        }
        Some(stat)
    }
}
