//! Every command Cleave understands, decoded from a RESP array into one enum.
//!
//! Servers decode a request with [`Command::from_frame`] and dispatch on the variant; clients
//! build the same variants and encode them with [`Command::to_frame`], so both sides share one
//! definition of each command's syntax. Client commands are in [`write`] and [`read`]; the
//! handshake, housekeeping and Redis verbs that client libraries send are in [`redis`]; the
//! internal admin / replication commands are defined here.

pub mod args;
pub mod read;
pub mod redis;
pub mod repl;
pub mod write;

use crate::error::{ErrorCode, Reply};
use crate::frame::Frame;
use crate::path::FilePath;
use args::Args;
use bytes::Bytes;
pub use read::{List, Read, Stat};
pub use redis::{ClientCmd, CommandQuery, GetRange, Hello};
pub use write::{Abort, Commit, Part, Put};

/// A decoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `INSERT` or `UPDATE`.
    Put(Put),
    /// `DELETE path`.
    Delete(FilePath),
    /// `SELECT path`: a file's contents or a directory's first page of entries.
    Select(FilePath),
    /// `LIST path [AFTER name] [LIMIT n]`.
    List(List),
    /// `STAT path`.
    Stat(FilePath),
    /// `READ path offset length [VERSION v]`.
    Read(Read),
    /// `PART path upload index data`.
    Part(Part),
    /// `COMMIT path upload parts [TYPE t]`.
    Commit(Commit),
    /// `ABORT path upload`.
    Abort(Abort),
    /// `PING [message]`.
    Ping(Option<Bytes>),
    /// `HELLO [protover [AUTH user password] [SETNAME name]]`: switch to RESP2 or RESP3 and
    /// describe the server.
    Hello(Hello),
    /// `AUTH [user] password`: present the admin credential (see [`crate::auth`]).
    Auth {
        /// The user name, when given.
        user: Option<String>,
        /// The secret.
        password: Bytes,
    },
    /// `COMMAND [COUNT | LIST | INFO names | DOCS names]`: Cleave's commands and key positions.
    CommandInfo(CommandQuery),
    /// `ECHO message`.
    Echo(Bytes),
    /// `CLIENT <subcommand>`: the connection's name and library info.
    Client(ClientCmd),
    /// `INFO [section...]`: server, clients and stats as Redis's `# Section` text.
    Info(Vec<String>),
    /// `QUIT`: `+OK`, then the server closes the connection.
    Quit,
    /// `RESET`: back to RESP2, no name; `+RESET`.
    Reset,
    /// `DBSIZE`: has no cheap meaning in a distributed file store; a clear error.
    DbSize,
    /// `GET key`: a file's contents, nil when absent (alias of `SELECT`).
    Get(FilePath),
    /// `SET key value`: alias of `INSERT`, answering `+OK`.
    Set(FilePath, Bytes),
    /// `DEL key...`: `DELETE` of each, answering how many existed.
    Del(Vec<FilePath>),
    /// `EXISTS key...`: how many of the keys are files.
    Exists(Vec<FilePath>),
    /// `STRLEN key`: a file's size, 0 when absent.
    Strlen(FilePath),
    /// `GETRANGE key start end`: a ranged `READ` with Redis's index rules.
    GetRange(GetRange),
    /// `CONFIG GET pattern`: answered with an empty map (redis-benchmark asks at start).
    ConfigGet(Bytes),
    /// `NODE.STATUS`: a node's role, epoch, seqs and followers, as JSON.
    NodeStatus,
    /// `NODE.LEAD epoch`: become leader at `epoch`.
    NodeLead {
        /// The new epoch; must not be lower than the node's.
        epoch: u64,
    },
    /// `NODE.FOLLOW epoch leader-address [LEARNER [start-end,...]]`: follow `leader` at
    /// `epoch`; a learner copies the leader's data and log but never counts towards its quorum
    /// (a split's new cluster cloning its source). A learner given spans copies only the data
    /// keys of those hashes in its snapshot (the range it is to take over).
    NodeFollow {
        /// The new epoch; must not be lower than the node's.
        epoch: u64,
        /// The leader's client address.
        leader: String,
        /// Follow as a non-voting learner.
        learner: bool,
        /// The hashes a learner's snapshot copies (empty: all). Only with `learner`.
        spans: Vec<(u32, u32)>,
    },
    /// `NODE.OWN table-epoch start-end[,start-end...] [cluster]`: from now on the cluster owns
    /// exactly these hash ranges (a split's fence). Replicated through the log; answered with the
    /// seq of the entry once it is committed.
    NodeOwn(crate::owned::Ownership),
    /// `NODE.FREEZE epoch ms`: the leader of `epoch` stops applying writes for `ms` (a planned
    /// switchover); answers its applied seq once nothing more can be applied.
    NodeFreeze {
        /// The epoch the node must be leading.
        epoch: u64,
        /// How long the freeze lasts unless a role change ends it first.
        ms: u64,
    },
    /// `REPL.FETCH epoch follower-id from from-epoch round max-bytes`: a follower pulls entries after `from`.
    ReplFetch {
        /// The follower's epoch (fencing).
        epoch: u64,
        /// Stable id of the follower, so the leader can count its acknowledgements.
        follower: String,
        /// The follower's applied seq: it wants `from + 1` onwards.
        from: u64,
        /// The epoch of the follower's entry at `from` (log matching).
        from_epoch: u64,
        /// The newest confirmation round the leader has told this follower about: a fetch
        /// that carries round `r` was sent after round `r` began, so it proves the follower still
        /// followed this leader then (leader reads, see `docs/replication.md`).
        round: u64,
        /// Upper bound on the bytes of entries returned.
        max_bytes: u64,
        /// The fetch comes from a learner (`LEARNER` at the end): its acknowledgements never
        /// count towards the quorum.
        learner: bool,
    },
    /// `REPL.INDEX epoch`: the leader's acknowledged seq, for read-index reads on followers.
    ReplIndex {
        /// The asker's epoch.
        epoch: u64,
    },
    /// `SNAP.NEXT epoch cursor [start-end,...]`: one batch of a full-resync snapshot, of the
    /// data keys of the given hashes only if spans are given (a split's learner).
    SnapNext {
        /// The asker's epoch.
        epoch: u64,
        /// `0` to start; then the cursor returned by the previous batch.
        cursor: String,
        /// The hashes whose data keys the batch holds (empty: all); keys of the whole cluster
        /// (sessions, ownership) always travel.
        spans: Vec<(u32, u32)>,
    },
    /// `REQ session seq <write>`: a write tagged with its session's sequence number, so the
    /// leader applies it once and in session order (see [`repl`]).
    Req {
        /// The session (a router's client connection), unique across routers and restarts.
        session: String,
        /// The write's number within the session, from 1, contiguous.
        seq: u64,
        /// The write itself.
        cmd: Box<Command>,
    },
    /// `MUX`: the sender multiplexes many independent clients over this connection and orders
    /// each client's requests itself, so the node must not order them by arrival.
    Mux,
    /// `TABLE.GET`: a router's current range table, as JSON.
    TableGet,
    /// `TABLE.PUSH json`: offer a router a new range table; taken only if its epoch is higher.
    TablePush(Bytes),
}

impl Command {
    /// Decode a request frame.
    pub fn from_frame(frame: Frame) -> Result<Command, Reply> {
        let Frame::Array(items) = frame else {
            return Err(Reply::new(
                ErrorCode::Err,
                "a request must be an array of bulk strings",
            ));
        };
        let mut items = items.into_iter();
        let Some(name) = items.next() else {
            return Err(Reply::new(ErrorCode::Err, "empty request"));
        };
        let Some(name) = name.as_bytes().map(|b| b.to_ascii_uppercase()) else {
            return Err(Reply::new(ErrorCode::Err, "command name must be a string"));
        };
        let name = String::from_utf8_lossy(&name).into_owned();
        let name: &'static str = match KNOWN.iter().find(|k| **k == name) {
            Some(k) => k,
            None => {
                let shown: String = name.chars().take(40).collect();
                return Err(Reply::new(
                    ErrorCode::Err,
                    format!("unknown command '{shown}'"),
                ));
            }
        };
        let mut args = Args::new(name, items);
        let cmd = match name {
            "INSERT" => Command::Put(Put::parse(args, false)?),
            "UPDATE" => Command::Put(Put::parse(args, true)?),
            "DELETE" => Command::Delete(single_path(args)?),
            "SELECT" => Command::Select(single_path(args)?),
            "STAT" => Command::Stat(single_path(args)?),
            "LIST" => Command::List(List::parse(args)?),
            "READ" => Command::Read(Read::parse(args)?),
            "PART" => Command::Part(Part::parse(args)?),
            "COMMIT" => Command::Commit(Commit::parse(args)?),
            "ABORT" => Command::Abort(Abort::parse(args)?),
            "PING" => {
                let msg = if args.is_empty() {
                    None
                } else {
                    Some(args.bytes("message")?)
                };
                args.finish()?;
                Command::Ping(msg)
            }
            "HELLO" | "AUTH" | "COMMAND" | "CONFIG" | "ECHO" | "CLIENT" | "INFO" | "QUIT"
            | "RESET" | "DBSIZE" | "GET" | "STRLEN" | "SET" | "DEL" | "EXISTS" | "GETRANGE" => {
                redis::parse(name, args)?
            }
            "NODE.STATUS" => {
                args.finish()?;
                Command::NodeStatus
            }
            "NODE.LEAD" => {
                let epoch = args.u64("epoch")?;
                args.finish()?;
                Command::NodeLead { epoch }
            }
            "NODE.FOLLOW" => {
                let epoch = args.u64("epoch")?;
                let leader = args.string("leader")?;
                let learner = learner_flag(&mut args)?;
                let spans = match learner && !args.is_empty() {
                    true => spans_arg(&mut args, "NODE.FOLLOW")?,
                    false => Vec::new(),
                };
                args.finish()?;
                Command::NodeFollow {
                    epoch,
                    leader,
                    learner,
                    spans,
                }
            }
            "NODE.OWN" => {
                let epoch = args.u64("table-epoch")?;
                let text = args.string("ranges")?;
                let cluster = match args.is_empty() {
                    true => String::new(),
                    false => args.string("cluster")?,
                };
                let fenced = match args.is_empty() {
                    true => false,
                    false => match args.string("FENCED")?.to_ascii_uppercase().as_str() {
                        "FENCED" => true,
                        other => {
                            return Err(Reply::new(
                                ErrorCode::Err,
                                format!(
                                    "NODE.OWN: expected FENCED after the cluster, got {other:?}"
                                ),
                            ))
                        }
                    },
                };
                args.finish()?;
                let ranges = crate::owned::Ownership::parse_ranges(&text)
                    .map_err(|e| Reply::new(ErrorCode::Err, format!("NODE.OWN: {e}")))?;
                Command::NodeOwn(crate::owned::Ownership {
                    cluster,
                    epoch,
                    ranges,
                    fenced,
                })
            }
            "NODE.FREEZE" => {
                let epoch = args.u64("epoch")?;
                let ms = args.u64("ms")?;
                args.finish()?;
                Command::NodeFreeze { epoch, ms }
            }
            "REPL.FETCH" => {
                let epoch = args.u64("epoch")?;
                let follower = args.string("follower")?;
                let from = args.u64("from")?;
                let from_epoch = args.u64("from-epoch")?;
                let round = args.u64("round")?;
                let max_bytes = args.u64("max-bytes")?;
                let learner = learner_flag(&mut args)?;
                args.finish()?;
                Command::ReplFetch {
                    epoch,
                    follower,
                    from,
                    from_epoch,
                    round,
                    max_bytes,
                    learner,
                }
            }
            "REPL.INDEX" => {
                let epoch = args.u64("epoch")?;
                args.finish()?;
                Command::ReplIndex { epoch }
            }
            "SNAP.NEXT" => {
                let epoch = args.u64("epoch")?;
                let cursor = args.string("cursor")?;
                let spans = match args.is_empty() {
                    true => Vec::new(),
                    false => spans_arg(&mut args, "SNAP.NEXT")?,
                };
                args.finish()?;
                Command::SnapNext {
                    epoch,
                    cursor,
                    spans,
                }
            }
            "REQ" => {
                let session = args.string("session")?;
                if !repl::valid_session(&session) {
                    return Err(Reply::new(
                        ErrorCode::Err,
                        format!("REQ: bad session id {session:?}"),
                    ));
                }
                let seq = args.u64("seq")?;
                if seq == 0 {
                    return Err(Reply::new(ErrorCode::Err, "REQ: seq starts at 1"));
                }
                let inner = Command::from_frame(Frame::Array(args.into_frames()))?;
                if !inner.is_write() || matches!(inner, Command::Req { .. }) {
                    return Err(Reply::new(
                        ErrorCode::Err,
                        "REQ wraps one write (INSERT, UPDATE, DELETE, PART, COMMIT, ABORT)",
                    ));
                }
                Command::Req {
                    session,
                    seq,
                    cmd: Box::new(inner),
                }
            }
            "MUX" => {
                args.finish()?;
                Command::Mux
            }
            "TABLE.GET" => {
                args.finish()?;
                Command::TableGet
            }
            "TABLE.PUSH" => {
                let json = args.bytes("table")?;
                args.finish()?;
                Command::TablePush(json)
            }
            _ => unreachable!("every KNOWN name is matched above"),
        };
        Ok(cmd)
    }

    /// Encode as a request frame (what a client sends).
    pub fn to_frame(&self) -> Frame {
        let num = |n: u64| Bytes::from(n.to_string());
        match self {
            Command::Put(p) => p.to_frame(),
            Command::Delete(p) => Frame::command(["DELETE", p.as_str()].map(str::to_owned)),
            Command::Select(p) => Frame::command(["SELECT", p.as_str()].map(str::to_owned)),
            Command::Stat(p) => Frame::command(["STAT", p.as_str()].map(str::to_owned)),
            Command::List(l) => l.to_frame(),
            Command::Read(r) => r.to_frame(),
            Command::Part(p) => p.to_frame(),
            Command::Commit(c) => c.to_frame(),
            Command::Abort(a) => a.to_frame(),
            Command::Ping(None) => Frame::command(["PING"]),
            Command::Ping(Some(m)) => Frame::command([Bytes::from("PING"), m.clone()]),
            Command::Hello(_)
            | Command::Auth { .. }
            | Command::CommandInfo(_)
            | Command::Echo(_)
            | Command::Client(_)
            | Command::Info(_)
            | Command::Quit
            | Command::Reset
            | Command::DbSize
            | Command::Get(_)
            | Command::Strlen(_)
            | Command::Set(..)
            | Command::Del(_)
            | Command::Exists(_)
            | Command::GetRange(_) => redis::to_frame(self),
            Command::ConfigGet(p) => {
                Frame::command([Bytes::from("CONFIG"), Bytes::from("GET"), p.clone()])
            }
            Command::NodeStatus => Frame::command(["NODE.STATUS"]),
            Command::NodeLead { epoch } => Frame::command([Bytes::from("NODE.LEAD"), num(*epoch)]),
            Command::NodeFollow {
                epoch,
                leader,
                learner,
                spans,
            } => {
                let mut words = vec![
                    Bytes::from("NODE.FOLLOW"),
                    num(*epoch),
                    Bytes::from(leader.clone()),
                ];
                if *learner {
                    words.push(Bytes::from(LEARNER));
                    if !spans.is_empty() {
                        words.push(Bytes::from(crate::owned::spans_text(spans)));
                    }
                }
                Frame::command(words)
            }
            Command::ReplFetch {
                epoch,
                follower,
                from,
                from_epoch,
                round,
                max_bytes,
                learner,
            } => {
                let mut words = vec![
                    Bytes::from("REPL.FETCH"),
                    num(*epoch),
                    Bytes::from(follower.clone()),
                    num(*from),
                    num(*from_epoch),
                    num(*round),
                    num(*max_bytes),
                ];
                if *learner {
                    words.push(Bytes::from(LEARNER));
                }
                Frame::command(words)
            }
            Command::Req { session, seq, cmd } => repl::tag_frame(session, *seq, cmd.to_frame()),
            Command::Mux => Frame::command(["MUX"]),
            Command::NodeFreeze { epoch, ms } => {
                Frame::command([Bytes::from("NODE.FREEZE"), num(*epoch), num(*ms)])
            }
            Command::NodeOwn(own) => {
                let mut words = vec![
                    Bytes::from("NODE.OWN"),
                    num(own.epoch),
                    Bytes::from(own.ranges_text()),
                ];
                if !own.cluster.is_empty() || own.fenced {
                    words.push(Bytes::from(own.cluster.clone()));
                }
                if own.fenced {
                    words.push(Bytes::from("FENCED"));
                }
                Frame::command(words)
            }
            Command::ReplIndex { epoch } => {
                Frame::command([Bytes::from("REPL.INDEX"), num(*epoch)])
            }
            Command::SnapNext {
                epoch,
                cursor,
                spans,
            } => {
                let mut words = vec![
                    Bytes::from("SNAP.NEXT"),
                    num(*epoch),
                    Bytes::from(cursor.clone()),
                ];
                if !spans.is_empty() {
                    words.push(Bytes::from(crate::owned::spans_text(spans)));
                }
                Frame::command(words)
            }
            Command::TableGet => Frame::command(["TABLE.GET"]),
            Command::TablePush(json) => Frame::command([Bytes::from("TABLE.PUSH"), json.clone()]),
        }
    }

    /// The path a client command is about: what a router hashes to route it.
    pub fn path(&self) -> Option<&FilePath> {
        match self {
            Command::Put(p) => Some(&p.path),
            Command::Delete(p) | Command::Select(p) | Command::Stat(p) => Some(p),
            Command::List(l) => Some(&l.path),
            Command::Read(r) => Some(&r.path),
            Command::Part(p) => Some(&p.path),
            Command::Commit(c) => Some(&c.path),
            Command::Abort(a) => Some(&a.path),
            Command::Req { cmd, .. } => cmd.path(),
            _ => None,
        }
    }

    /// Whether the command changes state (must go to the leader).
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Command::Put(_)
                | Command::Delete(_)
                | Command::Part(_)
                | Command::Commit(_)
                | Command::Abort(_)
                | Command::Req { .. }
        )
    }
}

/// The keyword that marks `NODE.FOLLOW` and `REPL.FETCH` as a learner's.
pub const LEARNER: &str = "LEARNER";

/// An optional trailing `LEARNER`.
fn learner_flag(args: &mut Args) -> Result<bool, Reply> {
    match args.keyword()? {
        None => Ok(false),
        Some(k) if k == LEARNER => Ok(true),
        Some(other) => Err(Reply::new(
            ErrorCode::Err,
            format!("unexpected {other:?}: the only option is LEARNER"),
        )),
    }
}

/// Hash spans (`start-end,...`, sorted and disjoint) as the next argument of `cmd`.
fn spans_arg(args: &mut Args, cmd: &str) -> Result<Vec<(u32, u32)>, Reply> {
    let text = args.string("spans")?;
    crate::owned::Ownership::parse_ranges(&text)
        .map_err(|e| Reply::new(ErrorCode::Err, format!("{cmd}: {e}")))
}

/// Every command name, upper-case.
pub const KNOWN: &[&str] = &[
    "INSERT",
    "UPDATE",
    "DELETE",
    "SELECT",
    "STAT",
    "LIST",
    "READ",
    "PART",
    "COMMIT",
    "ABORT",
    "PING",
    "HELLO",
    "AUTH",
    "COMMAND",
    "CONFIG",
    "NODE.STATUS",
    "NODE.LEAD",
    "NODE.FOLLOW",
    "NODE.FREEZE",
    "NODE.OWN",
    "REPL.FETCH",
    "REPL.INDEX",
    "SNAP.NEXT",
    "REQ",
    "MUX",
    "TABLE.GET",
    "TABLE.PUSH",
    "ECHO",
    "CLIENT",
    "INFO",
    "QUIT",
    "RESET",
    "DBSIZE",
    "GET",
    "SET",
    "DEL",
    "EXISTS",
    "STRLEN",
    "GETRANGE",
];

fn single_path(mut args: Args) -> Result<FilePath, Reply> {
    let p = args.path()?;
    args.finish()?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> FilePath {
        FilePath::parse(s).unwrap()
    }

    #[test]
    fn every_command_round_trips() {
        let cmds = vec![
            Command::Put(Put {
                path: path("/a/b"),
                data: "x".into(),
                content_type: None,
                must_exist: false,
            }),
            Command::Put(Put {
                path: path("/a/b"),
                data: "y".into(),
                content_type: Some("text/plain".into()),
                must_exist: true,
            }),
            Command::Delete(path("/a/b")),
            Command::Select(path("/a")),
            Command::Stat(path("/a")),
            Command::List(List {
                path: path("/a"),
                after: Some("m".into()),
                limit: 5,
            }),
            Command::Read(Read {
                path: path("/a/f"),
                offset: 10,
                length: 20,
                version: Some(3),
            }),
            Command::Part(Part {
                path: path("/a/f"),
                upload: "u1".into(),
                index: 2,
                data: "p".into(),
            }),
            Command::Commit(Commit {
                path: path("/a/f"),
                upload: "u1".into(),
                parts: 3,
                content_type: None,
            }),
            Command::Abort(Abort {
                path: path("/a/f"),
                upload: "u1".into(),
            }),
            Command::Ping(None),
            Command::Ping(Some("hi".into())),
            Command::Hello(Hello {
                version: Some(3),
                auth: None,
                setname: Some("app".into()),
            }),
            Command::Hello(Hello {
                version: Some(2),
                auth: Some(("admin".into(), "0123456789abcdef".into())),
                setname: None,
            }),
            Command::Hello(Hello {
                version: None,
                auth: None,
                setname: None,
            }),
            Command::Auth {
                user: None,
                password: "0123456789abcdef".into(),
            },
            Command::Auth {
                user: Some("admin".into()),
                password: "0123456789abcdef".into(),
            },
            Command::CommandInfo(CommandQuery::All),
            Command::CommandInfo(CommandQuery::Count),
            Command::CommandInfo(CommandQuery::List),
            Command::CommandInfo(CommandQuery::Info(vec!["get".into()])),
            Command::CommandInfo(CommandQuery::Docs(vec![])),
            Command::Echo("e".into()),
            Command::Client(ClientCmd::SetName("n".into())),
            Command::Client(ClientCmd::GetName),
            Command::Client(ClientCmd::SetInfo("LIB-NAME".into(), "x".into())),
            Command::Client(ClientCmd::Id),
            Command::Client(ClientCmd::Info),
            Command::Client(ClientCmd::Flag("NO-EVICT".into(), true)),
            Command::Info(vec!["server".into()]),
            Command::Quit,
            Command::Reset,
            Command::DbSize,
            Command::Get(path("/a/b")),
            Command::Set(path("/a/b"), "v".into()),
            Command::Del(vec![path("/a/b"), path("/c")]),
            Command::Exists(vec![path("/a/b")]),
            Command::Strlen(path("/a/b")),
            Command::GetRange(GetRange {
                path: path("/a/b"),
                start: -3,
                end: 7,
            }),
            Command::ConfigGet("save".into()),
            Command::NodeStatus,
            Command::NodeLead { epoch: 4 },
            Command::NodeFollow {
                epoch: 4,
                leader: "127.0.0.1:1".into(),
                learner: false,
                spans: vec![],
            },
            Command::NodeFollow {
                epoch: 4,
                leader: "127.0.0.1:1".into(),
                learner: true,
                spans: vec![],
            },
            Command::NodeFollow {
                epoch: 4,
                leader: "127.0.0.1:1".into(),
                learner: true,
                spans: vec![(5, 9), (100, u32::MAX)],
            },
            Command::ReplFetch {
                epoch: 4,
                follower: "n1".into(),
                from: 9,
                from_epoch: 3,
                round: 11,
                max_bytes: 100,
                learner: false,
            },
            Command::ReplFetch {
                epoch: 4,
                follower: "n1".into(),
                from: 9,
                from_epoch: 3,
                round: 11,
                max_bytes: 100,
                learner: true,
            },
            Command::Req {
                session: "r1-2".into(),
                seq: 5,
                cmd: Box::new(Command::Delete(path("/a/b"))),
            },
            Command::Mux,
            Command::ReplIndex { epoch: 4 },
            Command::NodeFreeze { epoch: 4, ms: 2000 },
            Command::NodeOwn(crate::owned::Ownership {
                cluster: String::new(),
                epoch: 7,
                ranges: vec![(0, 9), (20, u32::MAX)],
                fenced: false,
            }),
            Command::NodeOwn(crate::owned::Ownership {
                cluster: String::new(),
                epoch: 8,
                ranges: vec![(0, 9)],
                fenced: true,
            }),
            Command::NodeOwn(crate::owned::Ownership {
                cluster: "fc-b".into(),
                epoch: 7,
                ranges: vec![(0, 9)],
                fenced: false,
            }),
            Command::SnapNext {
                epoch: 4,
                cursor: "0".into(),
                spans: vec![],
            },
            Command::SnapNext {
                epoch: 4,
                cursor: "r:12".into(),
                spans: vec![(0, 2147483647)],
            },
            Command::TableGet,
            Command::TablePush("{}".into()),
        ];
        for cmd in cmds {
            assert_eq!(Command::from_frame(cmd.to_frame()).as_ref(), Ok(&cmd));
        }
    }

    #[test]
    fn names_are_case_insensitive() {
        let cmd = Command::from_frame(Frame::command(["select", "/a"])).unwrap();
        assert_eq!(cmd, Command::Select(path("/a")));
    }

    #[test]
    fn bad_requests_get_clear_errors() {
        let err = |f: Frame| Command::from_frame(f).unwrap_err();
        assert!(err(Frame::command(["FLUSHALL"]))
            .message
            .contains("unknown command 'FLUSHALL'"));
        assert!(err(Frame::command(["INSERT", "/a"]))
            .message
            .contains("missing argument data"));
        assert!(err(Frame::command(["DELETE", "/a", "x"]))
            .message
            .contains("extra"));
        assert_eq!(
            err(Frame::command(["SELECT", "a/b"])).code,
            ErrorCode::BadPath
        );
        assert_eq!(
            err(Frame::command(["READ", "/a", "0", "999999999999"])).code,
            ErrorCode::TooLarge
        );
        assert!(err(Frame::command(["LIST", "/a", "LIMIT", "0"]))
            .message
            .contains("LIMIT"));
        assert!(err(Frame::command(["PART", "/a", "bad id!", "0", "x"]))
            .message
            .contains("upload id"));
        assert!(err(Frame::Integer(3)).message.contains("array"));
        assert!(err(Frame::command(["REQ", "s", "1", "SELECT", "/a"]))
            .message
            .contains("wraps one write"));
        assert!(err(Frame::command(["REQ", "s", "0", "DELETE", "/a"]))
            .message
            .contains("starts at 1"));
        assert!(err(Frame::command(["REQ", "s s", "1", "DELETE", "/a"]))
            .message
            .contains("session"));
        assert_eq!(
            err(Frame::command(["REQ", "s", "1", "DELETE", "a"])).code,
            ErrorCode::BadPath
        );
        assert!(err(Frame::Array(vec![])).message.contains("empty"));
    }

    #[test]
    fn learner_spans_that_are_not_sorted_disjoint_ranges_are_refused() {
        let err = |words: &[&str]| {
            let words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
            Command::from_frame(Frame::command(words)).unwrap_err()
        };
        let follow = |spans: &str| err(&["NODE.FOLLOW", "3", "127.0.0.1:1", "LEARNER", spans]);
        assert!(follow("9-5").message.contains("start greater than end"));
        assert!(follow("0-9,5-20").message.contains("sorted and disjoint"));
        assert!(follow("x").message.contains("START-END"));
        assert!(follow("0-99999999999").message.contains("START-END"));
        assert!(follow(",").message.contains("at least one range"));
        // Spans only make sense for a learner, and nothing may follow them.
        assert!(err(&["NODE.FOLLOW", "3", "127.0.0.1:1", "0-9"])
            .message
            .contains("only option is LEARNER"));
        assert!(
            err(&["NODE.FOLLOW", "3", "127.0.0.1:1", "LEARNER", "0-9", "x"])
                .message
                .contains("extra")
        );
        let snap = err(&["SNAP.NEXT", "3", "0", "7-7,7-8"]);
        assert!(snap.message.starts_with("SNAP.NEXT"), "{snap:?}");
        assert!(err(&["SNAP.NEXT", "3", "0", "0-1", "2-3"])
            .message
            .contains("extra"));
    }
}
