//! Applying changes and reading the log: the leader's group-commit call, the follower's replay,
//! and the log reads that serve fetches (with the epochs that log matching compares).

use super::{array, bytes, int, text, Entry, Replayed, Store};
use crate::error::{Error, Result};
use crate::op::Op;
use cleave_proto::{ErrorCode, Reply};
use redis::Value;

/// What the leader's apply did with one write.
#[derive(Debug, Clone)]
pub enum Led {
    /// Applied and logged.
    Applied(Entry),
    /// A tagged write refused by a precondition: the refusal is logged (its session advances
    /// on every replica), and the client gets `reply` once `entry` is committed.
    Refused {
        /// The logged refusal.
        entry: Entry,
        /// What the client gets.
        reply: Reply,
    },
    /// Refused without being logged; `applied` is the store's seq when it was judged (the
    /// refusal may reflect writes up to it, so it is answered once they are committed).
    Rejected {
        /// What the client gets.
        reply: Reply,
        /// The store's applied seq at the time.
        applied: u64,
    },
    /// A tagged write that was already processed: its first outcome.
    Again(Result<u64, Reply>),
}

/// The log around a position, read atomically.
#[derive(Debug, Clone, Default)]
pub struct LogRead {
    /// The first seq the log holds (0: empty).
    pub first: u64,
    /// The store's applied seq.
    pub applied: u64,
    /// The epoch of the entry at `applied`.
    pub applied_epoch: u64,
    /// The epoch of the entry at the position asked about, if the store still knows it.
    pub from_epoch: Option<u64>,
    /// Entries after the position.
    pub entries: Vec<Entry>,
}

/// Where a store stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    /// Seq of the last applied entry.
    pub applied: u64,
    /// Its epoch.
    pub applied_epoch: u64,
    /// First seq held in the log (0: empty).
    pub first: u64,
    /// Entries in the log.
    pub len: u64,
}

/// A session's first result, as the apply script records it: `o<seq>` or `e<CODE> <message>`.
fn first_result(r: &str) -> Result<u64, Reply> {
    if let Some(seq) = r.strip_prefix('o') {
        return seq
            .parse()
            .map_err(|_| Reply::new(ErrorCode::Err, format!("bad session record {r:?}")));
    }
    let e = r.strip_prefix('e').unwrap_or(r);
    let (code, msg) = e.split_once(' ').unwrap_or((e, ""));
    Err(Reply::new(ErrorCode::parse(code), msg))
}

impl Store {
    /// Leader: apply writes in order, each getting the next seq at `epoch`. One script call for
    /// the batch. `expect` is the seq the node believes the store is at; a store that disagrees
    /// refuses the whole batch (`Err(Error::Lost)`).
    pub async fn apply_lead(
        &mut self,
        writes: &[(Op, Option<(String, u64)>)],
        epoch: u64,
        expect: u64,
    ) -> Result<Vec<Led>> {
        let mut pipe = redis::pipe();
        let changes = writes.iter().map(|(op, tag)| {
            let (sess, q) = tag
                .as_ref()
                .map(|(s, q)| (s.as_bytes(), *q))
                .unwrap_or((&b""[..], 0));
            (0, 0, op.0.as_ref(), &b""[..], sess, q)
        });
        self.scripts.apply(
            &mut pipe,
            "lead",
            (self.log_capacity, self.log_max_bytes),
            (epoch, Some(expect)),
            changes,
        );
        let replies = array(self.run(&pipe).await?.pop().unwrap_or(Value::Nil));
        if let Some(at) = lost(&replies) {
            return Err(Error::Lost {
                expected: expect,
                found: at,
            });
        }
        if replies.len() != writes.len() {
            return Err(Error::Apply(format!(
                "apply answered {} results for {} writes",
                replies.len(),
                writes.len()
            )));
        }
        Ok(replies
            .into_iter()
            .zip(writes)
            .map(|(v, (op, _))| {
                let mut it = array(v).into_iter();
                let tag = it.next().map(|v| text(&v)).unwrap_or_default();
                let mut next = || it.next().unwrap_or(Value::Nil);
                match tag.as_str() {
                    "ok" => Led::Applied(Entry {
                        epoch,
                        seq: int(&next()),
                        op: op.0.clone(),
                        fx: bytes(next()),
                    }),
                    "fail" => {
                        let seq = int(&next());
                        let fx = bytes(next());
                        let code = text(&next());
                        let msg = text(&next());
                        Led::Refused {
                            entry: Entry {
                                epoch,
                                seq,
                                op: op.0.clone(),
                                fx,
                            },
                            reply: Reply::new(ErrorCode::parse(&code), msg),
                        }
                    }
                    "err" => {
                        let code = text(&next());
                        let msg = text(&next());
                        Led::Rejected {
                            reply: Reply::new(ErrorCode::parse(&code), msg),
                            applied: int(&next()),
                        }
                    }
                    "again" => Led::Again(first_result(&text(&next()))),
                    other => Led::Rejected {
                        reply: Reply::new(
                            ErrorCode::Err,
                            format!("apply script answered {other:?}"),
                        ),
                        applied: 0,
                    },
                }
            })
            .collect())
    }

    /// Follower: apply log entries in order. Stops at the first gap. `expect`, when given, is
    /// the seq the node believes the store is at (see [`Store::apply_lead`]).
    pub async fn apply_replay(
        &mut self,
        entries: &[Entry],
        expect: Option<u64>,
    ) -> Result<Vec<Replayed>> {
        let mut pipe = redis::pipe();
        let changes = entries
            .iter()
            .map(|e| (e.seq, e.epoch, e.op.as_ref(), e.fx.as_ref(), &b""[..], 0));
        self.scripts.apply(
            &mut pipe,
            "replay",
            (self.log_capacity, self.log_max_bytes),
            (0, expect),
            changes,
        );
        let replies = array(self.run(&pipe).await?.pop().unwrap_or(Value::Nil));
        if let Some(at) = lost(&replies) {
            return Ok(vec![Replayed::Lost(at)]);
        }
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

    /// Log entries after `from` (at most `max` of them and about `max_bytes`, but at least
    /// one), with the log's bounds and the epoch of the entry at `from`. The byte budget is
    /// applied inside Redis, entry by entry, so a log of large entries is never read whole.
    pub async fn read_log(&mut self, from: u64, max: u64, max_bytes: u64) -> Result<LogRead> {
        let mut pipe = redis::pipe();
        self.scripts.read_log(&mut pipe, from, max, max_bytes);
        let reply = self.run(&pipe).await?.pop().unwrap_or(Value::Nil);
        let mut it = array(reply).into_iter();
        let num = |it: &mut std::vec::IntoIter<Value>| match it.next() {
            Some(Value::Int(n)) if n < 0 => None,
            Some(v) => Some(int(&v)),
            None => None,
        };
        let first = num(&mut it).unwrap_or(0);
        let applied = num(&mut it).unwrap_or(0);
        let applied_epoch = num(&mut it).unwrap_or(0);
        let from_epoch = num(&mut it);
        let mut entries = vec![];
        let mut seq = from;
        while let (Some(epoch), Some(op), Some(fx)) = (it.next(), it.next(), it.next()) {
            seq += 1;
            entries.push(Entry {
                epoch: int(&epoch),
                seq,
                op: bytes(op),
                fx: bytes(fx),
            });
        }
        Ok(LogRead {
            first,
            applied,
            applied_epoch,
            from_epoch,
            entries,
        })
    }

    /// The applied seq and its epoch, and the log's first seq and length.
    pub async fn positions(&mut self) -> Result<Positions> {
        let (applied, epoch, first): (Option<u64>, Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg("meta")
            .arg(&["applied", "appliedepoch", "logfirst"])
            .query_async(self.conn())
            .await
            .map_err(|e| Error::redis("read positions", e))?;
        let (applied, first) = (applied.unwrap_or(0), first.unwrap_or(0));
        let len = if first == 0 { 0 } else { applied + 1 - first };
        Ok(Positions {
            applied,
            applied_epoch: epoch.unwrap_or(0),
            first,
            len,
        })
    }
}

/// The seq a store reported when it refused a batch because it lost data.
fn lost(replies: &[Value]) -> Option<u64> {
    match replies {
        [Value::Array(items)] if items.first().map(text).as_deref() == Some("lost") => {
            Some(items.get(1).map(int).unwrap_or(0))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_results_decode_to_the_first_outcome() {
        assert_eq!(first_result("o42"), Ok(42));
        let e = first_result("eNOTFOUND no such file /a/b").unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert_eq!(e.message, "no such file /a/b");
        assert!(first_result("ox").is_err());
    }
}
