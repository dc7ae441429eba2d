//! State-changing client commands: `INSERT`, `UPDATE`, `DELETE`, and multipart uploads
//! (`PART`, `COMMIT`, `ABORT`) for files larger than one frame.
//!
//! Every successful write returns the sequence number its cluster's leader assigned to it.

use super::args::Args;
use crate::error::Reply;
use crate::frame::Frame;
use crate::path::FilePath;
use bytes::Bytes;

/// `INSERT path data [TYPE content-type]`: create or replace a file.
/// `UPDATE path data [TYPE content-type]`: replace an existing file (`-NOTFOUND` otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Put {
    /// The file.
    pub path: FilePath,
    /// Its whole contents.
    pub data: Bytes,
    /// Optional MIME type, kept in metadata.
    pub content_type: Option<String>,
    /// `true` for UPDATE: the file must already exist.
    pub must_exist: bool,
}

impl Put {
    pub(crate) fn parse(mut args: Args, must_exist: bool) -> Result<Self, Reply> {
        let path = args.path()?;
        let data = payload(&mut args, "data")?;
        let mut content_type = None;
        while let Some(opt) = args.keyword()? {
            match opt.as_str() {
                "TYPE" => content_type = Some(content_type_arg(&mut args)?),
                other => return Err(args.unknown_option(other)),
            }
        }
        args.finish()?;
        Ok(Put {
            path,
            data,
            content_type,
            must_exist,
        })
    }

    pub(crate) fn to_frame(&self) -> Frame {
        let name = if self.must_exist { "UPDATE" } else { "INSERT" };
        let mut parts: Vec<Bytes> =
            vec![name.into(), self.path.to_string().into(), self.data.clone()];
        if let Some(ct) = &self.content_type {
            parts.extend([Bytes::from("TYPE"), Bytes::from(ct.clone())]);
        }
        Frame::command(parts)
    }
}

/// `PART path upload-id index data`: stage one part of a multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The file being uploaded (routes the part to its cluster).
    pub path: FilePath,
    /// Client-chosen upload id (letters, digits, `-`, `_`; at most 64).
    pub upload: String,
    /// Zero-based part number.
    pub index: u32,
    /// The part's bytes.
    pub data: Bytes,
}

/// The largest `INSERT`/`UPDATE`/`PART` payload. With its op's own overhead a write must still
/// fit in one replication frame; larger files are uploaded in parts. Checked when the command is
/// parsed, so a router refuses it before it is tagged and a node never sees it.
pub const MAX_WRITE: usize = 64 * 1024 * 1024;

fn payload(args: &mut Args, what: &str) -> Result<Bytes, Reply> {
    let data = args.bytes(what)?;
    if data.len() > MAX_WRITE {
        return Err(Reply::new(
            crate::ErrorCode::TooLarge,
            format!(
                "{what} of {} bytes exceeds {MAX_WRITE}; upload it in parts (PART/COMMIT)",
                data.len()
            ),
        ));
    }
    Ok(data)
}

/// Longest content type accepted (an entry must fit in one replication frame).
pub const MAX_CONTENT_TYPE: usize = 255;

fn content_type_arg(args: &mut Args) -> Result<String, Reply> {
    let t = args.string("content type")?;
    if t.len() > MAX_CONTENT_TYPE {
        return Err(Reply::new(
            crate::ErrorCode::TooLarge,
            format!(
                "a content type of {} bytes exceeds {MAX_CONTENT_TYPE}",
                t.len()
            ),
        ));
    }
    Ok(t)
}

/// Most parts of one upload (indexes `0..MAX_PARTS`), so a hostile COMMIT cannot ask for
/// billions of parts.
pub const MAX_PARTS: u32 = 100_000;

pub(crate) fn upload_id(args: &mut Args) -> Result<String, Reply> {
    let id = args.string("upload id")?;
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(id)
    } else {
        Err(Reply::new(
            crate::ErrorCode::Err,
            format!("bad upload id {id:?}"),
        ))
    }
}

fn part_count(args: &mut Args, what: &str) -> Result<u32, Reply> {
    let n = args.u64(what)?;
    if n > MAX_PARTS as u64 {
        return Err(Reply::new(
            crate::ErrorCode::TooLarge,
            format!("{what} {n} exceeds {MAX_PARTS}"),
        ));
    }
    Ok(n as u32)
}

impl Part {
    pub(crate) fn parse(mut args: Args) -> Result<Self, Reply> {
        let path = args.path()?;
        let upload = upload_id(&mut args)?;
        let index = part_count(&mut args, "part index")?;
        if index >= MAX_PARTS {
            // A part that no COMMIT (at most MAX_PARTS parts: 0..MAX_PARTS) could ever include.
            return Err(Reply::new(
                crate::ErrorCode::TooLarge,
                format!(
                    "part index {index} exceeds {}: an upload has at most {MAX_PARTS} parts",
                    MAX_PARTS - 1
                ),
            ));
        }
        let data = payload(&mut args, "data")?;
        args.finish()?;
        Ok(Part {
            path,
            upload,
            index,
            data,
        })
    }

    pub(crate) fn to_frame(&self) -> Frame {
        Frame::command([
            Bytes::from("PART"),
            self.path.to_string().into(),
            self.upload.clone().into(),
            self.index.to_string().into(),
            self.data.clone(),
        ])
    }
}

/// `COMMIT path upload-id parts [TYPE content-type]`: atomically publish the staged parts
/// `0..parts` as the file's contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The file.
    pub path: FilePath,
    /// The upload whose parts become the file.
    pub upload: String,
    /// How many parts (0..parts must all be staged).
    pub parts: u32,
    /// Optional MIME type.
    pub content_type: Option<String>,
}

impl Commit {
    pub(crate) fn parse(mut args: Args) -> Result<Self, Reply> {
        let path = args.path()?;
        let upload = upload_id(&mut args)?;
        let parts = part_count(&mut args, "part count")?;
        let mut content_type = None;
        while let Some(opt) = args.keyword()? {
            match opt.as_str() {
                "TYPE" => content_type = Some(content_type_arg(&mut args)?),
                other => return Err(args.unknown_option(other)),
            }
        }
        args.finish()?;
        Ok(Commit {
            path,
            upload,
            parts,
            content_type,
        })
    }

    pub(crate) fn to_frame(&self) -> Frame {
        let mut parts: Vec<Bytes> = vec![
            "COMMIT".into(),
            self.path.to_string().into(),
            self.upload.clone().into(),
            self.parts.to_string().into(),
        ];
        if let Some(ct) = &self.content_type {
            parts.extend([Bytes::from("TYPE"), Bytes::from(ct.clone())]);
        }
        Frame::command(parts)
    }
}

/// `ABORT path upload-id`: drop the staged parts of an upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Abort {
    /// The file the upload was for.
    pub path: FilePath,
    /// The upload to drop.
    pub upload: String,
}

impl Abort {
    pub(crate) fn parse(mut args: Args) -> Result<Self, Reply> {
        let path = args.path()?;
        let upload = upload_id(&mut args)?;
        args.finish()?;
        Ok(Abort { path, upload })
    }

    pub(crate) fn to_frame(&self) -> Frame {
        Frame::command([
            Bytes::from("ABORT"),
            self.path.to_string().into(),
            self.upload.clone().into(),
        ])
    }
}
