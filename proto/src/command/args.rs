//! Reading a command's arguments out of a RESP array, with errors a client can read.

use crate::error::{ErrorCode, Reply};
use crate::frame::Frame;
use crate::path::FilePath;
use bytes::Bytes;
use std::vec::IntoIter;

/// A cursor over the arguments of one command (the array elements after the name).
#[derive(Debug)]
pub struct Args {
    name: &'static str,
    items: IntoIter<Frame>,
}

impl Args {
    /// Arguments of the command `name`.
    pub fn new(name: &'static str, items: IntoIter<Frame>) -> Self {
        Args { name, items }
    }

    fn err(&self, msg: impl std::fmt::Display) -> Reply {
        Reply::new(ErrorCode::Err, format!("{}: {msg}", self.name))
    }

    /// The next argument as raw bytes.
    pub fn bytes(&mut self, what: &str) -> Result<Bytes, Reply> {
        match self.items.next() {
            Some(Frame::Bulk(b)) => Ok(b),
            Some(Frame::Simple(s)) => Ok(Bytes::from(s)),
            Some(Frame::Integer(n)) => Ok(Bytes::from(n.to_string())),
            Some(other) => Err(self.err(format!("{what} must be a string, got {other:?}"))),
            None => Err(self.err(format!("missing argument {what}"))),
        }
    }

    /// The next argument as UTF-8 text.
    pub fn string(&mut self, what: &str) -> Result<String, Reply> {
        let b = self.bytes(what)?;
        String::from_utf8(b.to_vec()).map_err(|_| self.err(format!("{what} is not UTF-8")))
    }

    /// The next argument as a validated path.
    pub fn path(&mut self) -> Result<FilePath, Reply> {
        FilePath::from_bytes(&self.bytes("path")?)
    }

    /// The next argument as an unsigned integer.
    pub fn u64(&mut self, what: &str) -> Result<u64, Reply> {
        let s = self.string(what)?;
        s.parse()
            .map_err(|_| self.err(format!("{what} must be a non-negative integer, got {s:?}")))
    }

    /// The next argument if there is one, upper-cased (for option keywords).
    pub fn keyword(&mut self) -> Result<Option<String>, Reply> {
        if self.items.len() == 0 {
            return Ok(None);
        }
        Ok(Some(self.string("option")?.to_ascii_uppercase()))
    }

    /// Whether arguments remain.
    pub fn is_empty(&self) -> bool {
        self.items.len() == 0
    }

    /// All remaining arguments as bytes.
    pub fn rest(&mut self) -> Result<Vec<Bytes>, Reply> {
        let mut out = vec![];
        while !self.is_empty() {
            out.push(self.bytes("argument")?);
        }
        Ok(out)
    }

    /// Fail if arguments remain.
    pub fn finish(self) -> Result<(), Reply> {
        if self.items.len() == 0 {
            Ok(())
        } else {
            Err(self.err(format!("{} unexpected extra argument(s)", self.items.len())))
        }
    }

    /// The remaining arguments as frames (a wrapped command).
    pub fn into_frames(self) -> Vec<Frame> {
        self.items.collect()
    }

    /// An error naming this command, for option parsing in command modules.
    pub fn unknown_option(&self, opt: &str) -> Reply {
        self.err(format!("unknown option {opt:?}"))
    }
}
