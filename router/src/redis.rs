//! Redis verbs as aliases of the file commands, so that clients with their usual `GET` / `SET`
//! / `DEL` work against a router.
//!
//! - Writes are translated into the native write before they are queued: `SET p v` becomes
//!   `INSERT p v` and `DEL p1 p2` becomes one `DELETE` per key. They then travel through the
//!   connection's [`crate::session::Writes`] exactly like a client's own `INSERT` / `DELETE`
//!   (same session, sequence tags, ordering and retries); only the reply is reshaped on its way
//!   out ([`Post`]).
//! - Reads (`GET`, `EXISTS`, `STRLEN`, `GETRANGE`) run as one read (ordered like any read) made
//!   of native reads sent through [`Forwarder::forward`], and answer in Redis's shapes: nil for
//!   a missing `GET`, counts for `EXISTS`, Redis's index rules for `GETRANGE`.

use crate::forward::Forwarder;
use cleave_proto::command::{GetRange, Put, Read, Stat};
use cleave_proto::{Command, ErrorCode, FilePath, Frame, Reply};

/// How many times `GETRANGE` restarts when the file is replaced between its `STAT` and `READ`.
const GETRANGE_ATTEMPTS: usize = 5;

/// What happens to a native reply before the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Post {
    /// Relay as is.
    Plain,
    /// A `STAT` reply: a map for RESP3 clients (a flat array of pairs for RESP2 ones).
    Stat,
    /// `SET`: a write's seq becomes `+OK`; errors pass.
    Ok,
    /// One `DELETE` of a `DEL` of `total` keys: the replies are summed into one count.
    Count {
        /// Keys in the `DEL`.
        total: usize,
    },
}

/// A native request standing for (part of) an alias.
#[derive(Debug)]
pub struct Native {
    /// The request frame sent on.
    pub frame: Frame,
    /// Its decoded form.
    pub cmd: Command,
    /// What the reply becomes.
    pub post: Post,
}

/// The native writes an alias write stands for; `None` if `cmd` is not one.
pub fn translate_write(cmd: &Command) -> Option<Vec<Native>> {
    match cmd {
        Command::Set(path, value) => {
            let put = Command::Put(Put {
                path: path.clone(),
                data: value.clone(),
                content_type: None,
                must_exist: false,
            });
            Some(vec![Native {
                frame: put.to_frame(),
                cmd: put,
                post: Post::Ok,
            }])
        }
        Command::Del(paths) => Some(
            paths
                .iter()
                .map(|p| {
                    let del = Command::Delete(p.clone());
                    Native {
                        frame: del.to_frame(),
                        cmd: del,
                        post: Post::Count { total: paths.len() },
                    }
                })
                .collect(),
        ),
        _ => None,
    }
}

/// Whether `cmd` is an alias answered by [`read`].
pub fn is_alias_read(cmd: &Command) -> bool {
    matches!(
        cmd,
        Command::Get(_) | Command::Exists(_) | Command::Strlen(_) | Command::GetRange(_)
    )
}

/// `+OK` for a write that succeeded.
pub fn ok_reply(reply: Frame) -> Frame {
    match reply {
        Frame::Integer(_) => Frame::ok(),
        other => other,
    }
}

/// The running sum of a `DEL`'s replies.
#[derive(Debug, Default)]
pub struct Count {
    /// Replies still to come.
    pub left: usize,
    /// Keys deleted so far.
    pub deleted: i64,
    /// The first error other than `NOTFOUND`: the `DEL`'s answer if there is one.
    pub error: Option<Frame>,
}

impl Count {
    /// Add one `DELETE`'s reply.
    pub fn add(&mut self, reply: Frame) {
        self.left = self.left.saturating_sub(1);
        match reply {
            Frame::Integer(_) => self.deleted += 1,
            Frame::Error(e) if e.starts_with("NOTFOUND") => {}
            other => {
                self.error.get_or_insert(other);
            }
        }
    }

    /// The `DEL`'s reply, once every part is in.
    pub fn reply(&mut self) -> Frame {
        self.error
            .take()
            .unwrap_or(Frame::Integer(std::mem::take(&mut self.deleted)))
    }
}

/// Answer an alias read.
pub async fn read(fwd: &Forwarder, cmd: Command) -> Frame {
    match cmd {
        Command::Get(path) => get(fwd, path).await,
        Command::Strlen(path) => match file_stat(fwd, &path).await {
            Ok(Some(st)) => Frame::Integer(st.size as i64),
            Ok(None) => Frame::Integer(0),
            Err(e) => e,
        },
        Command::Exists(paths) => {
            let stats = futures::future::join_all(paths.iter().map(|p| file_stat(fwd, p))).await;
            let mut n = 0;
            for st in stats {
                match st {
                    Ok(Some(_)) => n += 1,
                    Ok(None) => {}
                    Err(Frame::Error(e)) if e.starts_with("WRONGTYPE") => {}
                    Err(e) => return e,
                }
            }
            Frame::Integer(n)
        }
        Command::GetRange(g) => getrange(fwd, g).await,
        other => Reply::new(ErrorCode::Err, format!("{other:?} is not an alias read")).to_frame(),
    }
}

async fn native(fwd: &Forwarder, cmd: Command) -> Frame {
    let frame = cmd.to_frame();
    fwd.forward(&cmd, frame).await
}

fn directory(path: &FilePath) -> Frame {
    Frame::Error(format!(
        "WRONGTYPE {path} is a directory, not a file (use LIST {path})"
    ))
}

async fn get(fwd: &Forwarder, path: FilePath) -> Frame {
    match native(fwd, Command::Select(path.clone())).await {
        Frame::Error(e) if e.starts_with("NOTFOUND") => Frame::Null,
        Frame::Array(_) => directory(&path),
        other => other,
    }
}

/// A file's `STAT`: `None` when there is no such file, `WRONGTYPE` for a directory.
async fn file_stat(fwd: &Forwarder, path: &FilePath) -> Result<Option<Stat>, Frame> {
    let reply = native(fwd, Command::Stat(path.clone())).await;
    match &reply {
        Frame::Error(e) if e.starts_with("NOTFOUND") => return Ok(None),
        Frame::Error(_) => return Err(reply),
        _ => {}
    }
    match Stat::from_frame(&reply) {
        Some(st) if st.kind == "file" => Ok(Some(st)),
        Some(_) => Err(directory(path)),
        None => {
            Err(Reply::new(ErrorCode::Err, format!("unexpected STAT reply {reply:?}")).to_frame())
        }
    }
}

async fn getrange(fwd: &Forwarder, g: GetRange) -> Frame {
    let mut last = Frame::Bulk(Default::default());
    for _ in 0..GETRANGE_ATTEMPTS {
        let st = match file_stat(fwd, &g.path).await {
            Ok(Some(st)) => st,
            Ok(None) => return Frame::Bulk(Default::default()),
            Err(e) => return e,
        };
        let Some((offset, length)) = g.resolve(st.size) else {
            return Frame::Bulk(Default::default());
        };
        let read = Command::Read(Read {
            path: g.path.clone(),
            offset,
            length,
            version: Some(st.seq),
        });
        last = native(fwd, read).await;
        match &last {
            // Replaced between the STAT and the READ: size and range may differ, start again.
            Frame::Error(e) if e.starts_with("STALE") => continue,
            Frame::Error(e) if e.starts_with("NOTFOUND") => return Frame::Bulk(Default::default()),
            _ => return last,
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn del_counts_deleted_keys_and_keeps_the_first_real_error() {
        let mut c = Count {
            left: 3,
            ..Default::default()
        };
        c.add(Frame::Integer(17));
        c.add(Frame::Error("NOTFOUND no such file".into()));
        c.add(Frame::Integer(18));
        assert_eq!(c.left, 0);
        assert_eq!(c.reply(), Frame::Integer(2));
        let mut c = Count {
            left: 2,
            ..Default::default()
        };
        c.add(Frame::Error("TRYAGAIN no quorum".into()));
        c.add(Frame::Integer(1));
        assert_eq!(c.reply(), Frame::Error("TRYAGAIN no quorum".into()));
    }

    #[test]
    fn writes_translate_to_native_writes() {
        let p = |s: &str| FilePath::parse(s).unwrap();
        let set = translate_write(&Command::Set(p("/a/b"), "v".into())).unwrap();
        assert_eq!(set.len(), 1);
        assert_eq!(set[0].frame, Frame::command(["INSERT", "/a/b", "v"]));
        assert_eq!(set[0].post, Post::Ok);
        let del = translate_write(&Command::Del(vec![p("/a"), p("/b/c")])).unwrap();
        assert_eq!(del[1].frame, Frame::command(["DELETE", "/b/c"]));
        assert_eq!(del[1].post, Post::Count { total: 2 });
        assert!(translate_write(&Command::Get(p("/a"))).is_none());
        assert_eq!(ok_reply(Frame::Integer(5)), Frame::ok());
        let e = Frame::Error("TOOLARGE x".into());
        assert_eq!(ok_reply(e.clone()), e);
    }
}
