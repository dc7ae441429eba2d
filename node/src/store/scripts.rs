//! The Lua scripts that make each change atomic with its seq, loaded once per Redis server.

use crate::error::{Error, Result};
use cleave_proto::owned::key_hash;
use cleave_proto::FilePath;
use redis::aio::ConnectionManager;

const APPLY: &str = include_str!("apply.lua");
const READ: &str = include_str!("read.lua");
const LOG: &str = include_str!("log.lua");

/// The SHA1 handles of the loaded scripts.
#[derive(Clone, Debug)]
pub struct Scripts {
    apply: String,
    read: String,
    log: String,
}

impl Scripts {
    /// Handles computed locally (the same SHA1 Redis computes), so EVALSHA works as soon as
    /// [`Scripts::load`] has run against the current Redis.
    pub fn new() -> Self {
        Scripts {
            apply: redis::Script::new(APPLY).get_hash().to_string(),
            read: redis::Script::new(READ).get_hash().to_string(),
            log: redis::Script::new(LOG).get_hash().to_string(),
        }
    }

    /// `SCRIPT LOAD` all scripts (again, after a Redis restart).
    pub async fn load(&self, conn: &mut ConnectionManager) -> Result<()> {
        for src in [APPLY, READ, LOG] {
            redis::cmd("SCRIPT")
                .arg("LOAD")
                .arg(src)
                .query_async::<String>(conn)
                .await
                .map_err(|e| Error::redis("script load", e))?;
        }
        Ok(())
    }

    /// Queue one apply call for a batch of `(seq, epoch, op, effects, session, session seq)`
    /// changes; `bounds` is the log's (capacity, byte cap), `at` the epoch new entries get and
    /// the applied seq the store must be at (see `apply.lua`).
    pub fn apply<'a>(
        &self,
        pipe: &mut redis::Pipeline,
        mode: &str,
        bounds: (u64, u64),
        at: (u64, Option<u64>),
        changes: impl Iterator<Item = (u64, u64, &'a [u8], &'a [u8], &'a [u8], u64)>,
    ) {
        let expect = at.1.map(|e| e.to_string()).unwrap_or_default();
        let cmd = pipe
            .cmd("EVALSHA")
            .arg(&self.apply)
            .arg(0)
            .arg(mode)
            .arg(bounds.0)
            .arg(bounds.1)
            .arg(at.0)
            .arg(expect);
        for (seq, epoch, op, fx, sess, q) in changes {
            cmd.arg(seq).arg(epoch).arg(op).arg(fx).arg(sess).arg(q);
        }
    }

    /// Queue a range read.
    pub fn read(
        &self,
        pipe: &mut redis::Pipeline,
        path: &FilePath,
        offset: u64,
        length: u64,
        version: Option<u64>,
    ) {
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        pipe.cmd("EVALSHA")
            .arg(&self.read)
            .arg(0)
            .arg(path.as_str())
            .arg(offset)
            .arg(length)
            .arg(version)
            .arg(key_hash(path.hash()));
    }

    /// Queue a log read of at most `max` entries and about `max_bytes` (at least one entry).
    pub fn read_log(&self, pipe: &mut redis::Pipeline, from: u64, max: u64, max_bytes: u64) {
        pipe.cmd("EVALSHA")
            .arg(&self.log)
            .arg(0)
            .arg(from)
            .arg(max)
            .arg(max_bytes);
    }
}
