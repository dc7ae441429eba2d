//! Node↔node replication messages and the request tag that makes writes exactly-once.
//!
//! The leader, the follower and the router build and read these frames here and nowhere else:
//!
//! - `REPL.FETCH epoch follower from from-epoch max-bytes` (a [`super::Command::ReplFetch`])
//!   is answered by a [`FetchReply`]; `from`/`from-epoch` name the follower's last entry, and
//!   the leader serves it only if its own log holds that same entry (log matching);
//! - `SNAP.NEXT epoch cursor` is answered by a [`SnapBatch`];
//! - `REQ session seq <write command ...>` wraps a client write with a per-session sequence
//!   number, so the leader applies each `(session, seq)` once, in order, and answers a retry with
//!   the first outcome (see `docs/replication.md`).

use crate::error::{ErrorCode, Reply};
use crate::frame::Frame;
use bytes::Bytes;

/// Longest session id accepted in `REQ`.
pub const MAX_SESSION_LEN: usize = 128;

/// One entry of a cluster's replication log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// The epoch of the leader that created it.
    pub epoch: u64,
    /// Its sequence number.
    pub seq: u64,
    /// The encoded op (opaque here; the node's store decodes it).
    pub op: Bytes,
    /// The effects the leader computed when it applied the op (opaque here).
    pub fx: Bytes,
}

impl LogEntry {
    /// Bytes the entry carries (for batching budgets).
    pub fn size(&self) -> usize {
        self.op.len() + self.fx.len() + 32
    }
}

/// What a leader answers to `REPL.FETCH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchReply {
    /// The entries after the follower's position (none: a heartbeat), and the commit index.
    Entries {
        /// The leader's commit index: every entry up to it is acknowledged.
        committed: u64,
        /// The leader's newest confirmation round (echoed in the follower's next fetch).
        round: u64,
        /// Contiguous entries, starting right after the follower's position.
        entries: Vec<LogEntry>,
    },
    /// The leader's log no longer reaches back to the follower's position: copy a snapshot.
    FullSync {
        /// The first seq the leader's log still holds.
        first: u64,
    },
    /// The follower's last entry is not in the leader's log (another epoch's entry at that
    /// seq, or a seq the leader never had): the follower holds changes that were never
    /// committed and must discard them.
    Diverged {
        /// Why, for the follower's log.
        reason: String,
    },
}

const ENTRIES: &str = "ENTRIES";
const FULLSYNC: &str = "FULLSYNC";
const DIVERGED: &str = "DIVERGED";

fn bad(what: impl std::fmt::Display) -> Reply {
    Reply::new(
        ErrorCode::Err,
        format!("malformed replication reply: {what}"),
    )
}

fn int(frame: Option<Frame>, what: &str) -> Result<u64, Reply> {
    match frame {
        Some(Frame::Integer(n)) if n >= 0 => Ok(n as u64),
        other => Err(bad(format!(
            "{what} must be a non-negative integer, got {other:?}"
        ))),
    }
}

fn bulk(frame: Option<Frame>, what: &str) -> Result<Bytes, Reply> {
    match frame {
        Some(Frame::Bulk(b)) => Ok(b),
        other => Err(bad(format!("{what} must be a bulk string, got {other:?}"))),
    }
}

impl FetchReply {
    /// Encode for the wire: `[+ENTRIES, :committed, :round, (:epoch, :seq, $op, $fx)...]`,
    /// `[+FULLSYNC, :first]` or `[+DIVERGED, $reason]`.
    pub fn to_frame(&self) -> Frame {
        match self {
            FetchReply::Entries {
                committed,
                round,
                entries,
            } => {
                let mut items = Vec::with_capacity(3 + entries.len() * 4);
                items.push(Frame::Simple(ENTRIES.into()));
                items.push(Frame::Integer(*committed as i64));
                items.push(Frame::Integer(*round as i64));
                for e in entries {
                    items.push(Frame::Integer(e.epoch as i64));
                    items.push(Frame::Integer(e.seq as i64));
                    items.push(Frame::Bulk(e.op.clone()));
                    items.push(Frame::Bulk(e.fx.clone()));
                }
                Frame::Array(items)
            }
            FetchReply::FullSync { first } => Frame::Array(vec![
                Frame::Simple(FULLSYNC.into()),
                Frame::Integer(*first as i64),
            ]),
            FetchReply::Diverged { reason } => Frame::Array(vec![
                Frame::Simple(DIVERGED.into()),
                Frame::bulk(reason.clone()),
            ]),
        }
    }

    /// Decode a reply; entries must be contiguous.
    pub fn from_frame(frame: Frame) -> Result<FetchReply, Reply> {
        let Frame::Array(items) = frame else {
            return Err(bad(format!("expected an array, got {frame:?}")));
        };
        let mut it = items.into_iter();
        let tag = match it.next() {
            Some(Frame::Simple(t)) => t,
            other => return Err(bad(format!("missing tag, got {other:?}"))),
        };
        match tag.as_str() {
            ENTRIES => {
                let committed = int(it.next(), "committed")?;
                let round = int(it.next(), "round")?;
                let mut entries: Vec<LogEntry> = Vec::with_capacity(it.len() / 4);
                while it.len() > 0 {
                    let epoch = int(it.next(), "epoch")?;
                    let seq = int(it.next(), "seq")?;
                    let op = bulk(it.next(), "op")?;
                    let fx = bulk(it.next(), "effects")?;
                    if let Some(prev) = entries.last() {
                        if seq != prev.seq + 1 || epoch < prev.epoch {
                            return Err(bad(format!(
                                "entry ({epoch}, {seq}) does not follow ({}, {})",
                                prev.epoch, prev.seq
                            )));
                        }
                    }
                    entries.push(LogEntry { epoch, seq, op, fx });
                }
                Ok(FetchReply::Entries {
                    committed,
                    round,
                    entries,
                })
            }
            FULLSYNC => Ok(FetchReply::FullSync {
                first: int(it.next(), "first")?,
            }),
            DIVERGED => Ok(FetchReply::Diverged {
                reason: String::from_utf8_lossy(&bulk(it.next(), "reason")?).into_owned(),
            }),
            other => Err(bad(format!("unknown tag {other:?}"))),
        }
    }
}

/// One batch of a full-resync snapshot (`SNAP.NEXT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapBatch {
    /// The cursor for the next batch; `"0"` when this was the last.
    pub cursor: String,
    /// The source's applied seq before its scan began: replay the log from after it.
    pub start_seq: u64,
    /// The epoch of the entry at `start_seq` (for log matching when replay begins).
    pub start_epoch: u64,
    /// Keys and their `DUMP` payloads.
    pub items: Vec<(Bytes, Bytes)>,
}

impl SnapBatch {
    /// Encode: `[$cursor, :start-seq, :start-epoch, [$key, $dump, ...]]`.
    pub fn to_frame(&self) -> Frame {
        let mut items = Vec::with_capacity(self.items.len() * 2);
        for (k, d) in &self.items {
            items.push(Frame::Bulk(k.clone()));
            items.push(Frame::Bulk(d.clone()));
        }
        Frame::Array(vec![
            Frame::bulk(self.cursor.clone()),
            Frame::Integer(self.start_seq as i64),
            Frame::Integer(self.start_epoch as i64),
            Frame::Array(items),
        ])
    }

    /// Decode a batch.
    pub fn from_frame(frame: Frame) -> Result<SnapBatch, Reply> {
        let Frame::Array(parts) = frame else {
            return Err(bad(format!("expected a snapshot array, got {frame:?}")));
        };
        if parts.len() != 4 {
            return Err(bad(format!(
                "a snapshot batch has 4 parts, not {}",
                parts.len()
            )));
        }
        let mut it = parts.into_iter();
        let cursor = String::from_utf8_lossy(&bulk(it.next(), "cursor")?).into_owned();
        let start_seq = int(it.next(), "start seq")?;
        let start_epoch = int(it.next(), "start epoch")?;
        let Some(Frame::Array(flat)) = it.next() else {
            return Err(bad("snapshot items must be an array"));
        };
        if flat.len() % 2 != 0 {
            return Err(bad("snapshot items come in key/value pairs"));
        }
        let mut items = Vec::with_capacity(flat.len() / 2);
        let mut flat = flat.into_iter();
        while flat.len() > 0 {
            items.push((bulk(flat.next(), "key")?, bulk(flat.next(), "dump")?));
        }
        Ok(SnapBatch {
            cursor,
            start_seq,
            start_epoch,
            items,
        })
    }
}

/// Check a session id for `REQ`: 1–128 bytes of letters, digits, `-`, `_`, `.`, `:`.
pub fn valid_session(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_SESSION_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Wrap a client's write request frame as `REQ session seq <request...>` without re-encoding
/// its payload (the router forwards the client's frame as received).
pub fn tag_frame(session: &str, seq: u64, request: Frame) -> Frame {
    let mut items = match request {
        Frame::Array(items) => items,
        other => vec![other],
    };
    let mut tagged = Vec::with_capacity(items.len() + 3);
    tagged.push(Frame::bulk("REQ"));
    tagged.push(Frame::bulk(session.to_string()));
    tagged.push(Frame::bulk(seq.to_string()));
    tagged.append(&mut items);
    Frame::Array(tagged)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(epoch: u64, seq: u64) -> LogEntry {
        LogEntry {
            epoch,
            seq,
            op: Bytes::from(format!("op{seq}")),
            fx: Bytes::from(format!("fx{seq}")),
        }
    }

    #[test]
    fn fetch_replies_round_trip() {
        for reply in [
            FetchReply::Entries {
                committed: 7,
                round: 3,
                entries: vec![entry(1, 8), entry(2, 9)],
            },
            FetchReply::Entries {
                committed: 0,
                round: 0,
                entries: vec![],
            },
            FetchReply::FullSync { first: 42 },
            FetchReply::Diverged {
                reason: "seq 5 is epoch 2 here".into(),
            },
        ] {
            assert_eq!(FetchReply::from_frame(reply.to_frame()), Ok(reply));
        }
    }

    #[test]
    fn non_contiguous_or_malformed_entries_are_refused() {
        let gap = FetchReply::Entries {
            committed: 0,
            round: 0,
            entries: vec![entry(1, 8), entry(1, 10)],
        };
        assert!(FetchReply::from_frame(gap.to_frame())
            .unwrap_err()
            .message
            .contains("does not follow"));
        let back_in_epochs = FetchReply::Entries {
            committed: 0,
            round: 0,
            entries: vec![entry(3, 8), entry(2, 9)],
        };
        assert!(FetchReply::from_frame(back_in_epochs.to_frame()).is_err());
        let truncated = Frame::Array(vec![
            Frame::Simple(ENTRIES.into()),
            Frame::Integer(1),
            Frame::Integer(0),
            Frame::Integer(1),
            Frame::Integer(2),
        ]);
        assert!(FetchReply::from_frame(truncated).is_err());
        assert!(FetchReply::from_frame(Frame::Integer(1)).is_err());
        assert!(FetchReply::from_frame(Frame::Array(vec![Frame::Simple("NOPE".into())])).is_err());
    }

    #[test]
    fn snapshot_batches_round_trip_and_refuse_odd_items() {
        let b = SnapBatch {
            cursor: "17".into(),
            start_seq: 9,
            start_epoch: 2,
            items: vec![(Bytes::from("k"), Bytes::from("v"))],
        };
        assert_eq!(SnapBatch::from_frame(b.to_frame()), Ok(b));
        let odd = Frame::Array(vec![
            Frame::bulk("0"),
            Frame::Integer(1),
            Frame::Integer(1),
            Frame::Array(vec![Frame::bulk("k")]),
        ]);
        assert!(SnapBatch::from_frame(odd).is_err());
    }

    #[test]
    fn sessions_are_bounded_and_plain() {
        assert!(valid_session("r7f3a-12"));
        assert!(!valid_session(""));
        assert!(!valid_session("a b"));
        assert!(!valid_session(&"x".repeat(MAX_SESSION_LEN + 1)));
    }

    #[test]
    fn tagging_prepends_without_touching_the_request() {
        let req = Frame::command(["DELETE", "/a/b"]);
        assert_eq!(
            tag_frame("s1", 3, req),
            Frame::command(["REQ", "s1", "3", "DELETE", "/a/b"])
        );
    }
}
