//! proptest strategies shared by the property tests in `proto/tests/fuzz_*.rs`.
//!
//! Keep one strategy per type here, so a new protocol type (or a new [`Command`] variant) is
//! added in one place and every property picks it up. [`command`] must cover every variant:
//! [`variant_name`] matches exhaustively, so adding a variant without a strategy fails to build.

#![allow(dead_code)] // each test binary uses a different subset

use bytes::Bytes;
use cleave_proto::command::read::{MAX_LIST_LIMIT, MAX_READ_LEN};
use cleave_proto::command::write::MAX_PARTS;
use cleave_proto::command::{
    Abort, ClientCmd, CommandQuery, Commit, GetRange, Hello, List, Part, Put, Read,
};
use cleave_proto::frame::{Frame, Limits};
use cleave_proto::path::{MAX_PATH_LEN, MAX_SEGMENT_LEN};
use cleave_proto::range::{ClusterMembers, HashRange, RangeTable};
use cleave_proto::{Command, FilePath};
use proptest::collection::{btree_set, vec};
use proptest::prelude::*;
use std::collections::BTreeMap;

// ---------------------------------------------------------------------------------------------
// Frames

/// Small limits, so that arbitrary input reaches every limit check.
pub fn tight_limits() -> Limits {
    Limits {
        max_bulk: 16,
        max_array: 4,
        max_depth: 3,
        max_line: 12,
    }
}

/// Text that is valid in a simple string or error line: anything but CR and LF (which the
/// encoder replaces by spaces), at most `max` bytes.
fn line_text(max: usize) -> impl Strategy<Value = String> {
    "[^\r\n]{0,16}".prop_map(move |s: String| {
        let mut end = s.len().min(max);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s[..end].to_string()
    })
}

/// Any frame that `limits` accept: depth, array length, bulk length and line length within
/// bounds. Every such frame must survive encode → decode unchanged.
pub fn frame(limits: Limits) -> impl Strategy<Value = Frame> {
    let leaf = prop_oneof![
        line_text(limits.max_line).prop_map(Frame::Simple),
        line_text(limits.max_line).prop_map(Frame::Error),
        integer(limits.max_line).prop_map(Frame::Integer),
        bulk_bytes(limits.max_bulk).prop_map(Frame::Bulk),
        Just(Frame::Null),
    ];
    let depth = limits.max_depth.min(4) as u32;
    let width = limits.max_array.min(6);
    leaf.prop_recursive(depth, 32, width as u32, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..=width).prop_map(Frame::Array),
            // RESP3 maps: the pair count is bounded like an array's length.
            vec((inner.clone(), inner), 0..=width).prop_map(Frame::Map),
        ]
    })
}

/// An integer whose decimal form fits a line of `max_line` bytes.
fn integer(max_line: usize) -> BoxedStrategy<i64> {
    if max_line >= 20 {
        return prop_oneof![any::<i64>(), -1000i64..1000, Just(i64::MIN), Just(i64::MAX)].boxed();
    }
    let max = 10i64.pow(max_line as u32) - 1;
    let min = -(10i64.pow(max_line as u32 - 1) - 1);
    prop_oneof![min..=max, -1000i64..1000, Just(min), Just(max)].boxed()
}

/// Bulk payloads, binary and often containing CR/LF, at most `max` bytes.
fn bulk_bytes(max: usize) -> impl Strategy<Value = Bytes> {
    let max = max.min(48);
    prop_oneof![
        vec(any::<u8>(), 0..=max),
        vec(
            prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'$'), Just(b'*')],
            0..=max
        ),
    ]
    .prop_map(Bytes::from)
}

/// Bytes shaped like RESP but mostly wrong: tokens of the protocol (type bytes, CRLF, lengths
/// near the limits, negative and huge numbers) mixed with arbitrary bytes.
pub fn resp_soup() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        4 => prop_oneof![
            Just(b"*".to_vec()),
            Just(b"%".to_vec()),
            Just(b"_".to_vec()),
            Just(b"$".to_vec()),
            Just(b"+".to_vec()),
            Just(b"-".to_vec()),
            Just(b":".to_vec()),
        ],
        4 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        1 => Just(b"\n".to_vec()),
        3 => (0u64..40).prop_map(|n| n.to_string().into_bytes()),
        1 => prop_oneof![
            Just(b"-1".to_vec()),
            Just(b"-2".to_vec()),
            Just(b"+3".to_vec()),
            Just(b"007".to_vec()),
            Just(b"18446744073709551615".to_vec()),
            Just(b"9223372036854775807".to_vec()),
            Just(b"-9223372036854775808".to_vec()),
            Just(b"99999999999999999999999".to_vec()),
            Just(b"67112960".to_vec()),
            Just(b"67112961".to_vec()),
            Just(b"1048576".to_vec()),
            Just(b"1048577".to_vec()),
        ],
        2 => vec(any::<u8>(), 1..6),
        1 => "[a-zA-Z ]{1,8}".prop_map(String::into_bytes),
        1 => Just(vec![0xff, 0xfe]),
    ];
    vec(token, 0..24).prop_map(|ts| ts.concat())
}

/// A valid encoding with a few random edits (flip, insert, delete, truncate).
pub fn mutated_frame_bytes(limits: Limits) -> impl Strategy<Value = Vec<u8>> {
    (
        vec(frame(limits), 1..3),
        vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..4),
    )
        .prop_map(|(frames, edits)| {
            let mut bytes: Vec<u8> = frames.iter().flat_map(|f| f.to_bytes().to_vec()).collect();
            for (at, kind, byte) in edits {
                if bytes.is_empty() {
                    break;
                }
                let i = at.index(bytes.len());
                match kind {
                    0 => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 => {
                        bytes.remove(i);
                    }
                    _ => bytes.truncate(i),
                }
            }
            bytes
        })
}

/// Cut `total` bytes into chunks at arbitrary points: returns the chunk ends, increasing,
/// the last being `total`.
pub fn cuts(total: usize, raw: &[prop::sample::Index]) -> Vec<usize> {
    let mut ends: Vec<usize> = raw.iter().map(|i| i.index(total + 1)).collect();
    ends.push(total);
    ends.sort_unstable();
    ends.dedup();
    ends
}

// ---------------------------------------------------------------------------------------------
// Paths

/// One valid segment: no `/`, no control character, not `.` or `..`, at most
/// [`MAX_SEGMENT_LEN`] bytes. Mostly short; sometimes near the byte limit with multi-byte
/// characters.
pub fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => "[a-z0-9._-]{1,12}",
        4 => "[^/\\p{Cc}]{1,10}",
        1 => ("[a-zé]{1,4}", 250usize..=MAX_SEGMENT_LEN + 4).prop_map(|(unit, n)| {
            let mut s = unit.repeat(n);
            let mut end = s.len().min(MAX_SEGMENT_LEN);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s.truncate(end);
            s
        }),
    ]
    .prop_map(|s| {
        if s == "." || s == ".." {
            format!("{s}x")
        } else {
            s
        }
    })
}

/// The segments of a valid path, at most [`MAX_PATH_LEN`] bytes in total.
pub fn segments() -> impl Strategy<Value = Vec<String>> {
    vec(segment(), 1..8).prop_map(|mut segs| {
        while segs.iter().map(|s| s.len() + 1).sum::<usize>() > MAX_PATH_LEN {
            segs.pop();
        }
        segs
    })
}

/// A valid path.
pub fn file_path() -> impl Strategy<Value = FilePath> {
    segments().prop_map(|segs| {
        let s = format!("/{}", segs.join("/"));
        FilePath::parse(&s).unwrap_or_else(|e| panic!("strategy made a bad path {s:?}: {e}"))
    })
}

// ---------------------------------------------------------------------------------------------
// Range tables

/// Sorted ranges tiling the whole hash space, owned by clusters `c0`..`c3`.
pub fn tiling() -> impl Strategy<Value = Vec<HashRange>> {
    let boundary = prop_oneof![
        any::<u32>(),
        Just(1u32),
        Just(u32::MAX),
        Just(u32::MAX / 2),
        Just(u32::MAX / 2 + 1)
    ];
    (btree_set(boundary, 0..8), vec(0usize..4, 9)).prop_map(|(starts, owners)| {
        let mut starts: Vec<u32> = starts.into_iter().filter(|s| *s != 0).collect();
        starts.insert(0, 0);
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| HashRange {
                start,
                end: starts.get(i + 1).map_or(u32::MAX, |next| next - 1),
                cluster: format!("c{}", owners[i]),
            })
            .collect()
    })
}

/// Members for clusters `c0`..`c3`.
pub fn members() -> BTreeMap<String, ClusterMembers> {
    (0..4)
        .map(|i| {
            (
                format!("c{i}"),
                ClusterMembers {
                    nodes: vec![format!("10.0.0.{i}:7000")],
                    leader: None,
                },
            )
        })
        .collect()
}

/// A validated table.
pub fn range_table() -> impl Strategy<Value = RangeTable> {
    (any::<u64>(), tiling()).prop_map(|(epoch, ranges)| RangeTable {
        epoch,
        ranges,
        clusters: members(),
    })
}

// ---------------------------------------------------------------------------------------------
// Commands

fn upload_id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-]{1,64}"
}

fn data() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of("\\PC{0,20}")
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,24}"
}

/// Every [`Command`] variant with arbitrary valid fields. When a variant is added, add it here
/// (and to [`variant_name`]).
pub fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        (file_path(), data(), content_type(), any::<bool>()).prop_map(
            |(path, data, content_type, must_exist)| Command::Put(Put {
                path,
                data,
                content_type,
                must_exist,
            })
        ),
        file_path().prop_map(Command::Delete),
        file_path().prop_map(Command::Select),
        (
            file_path(),
            proptest::option::of(text()),
            1..=MAX_LIST_LIMIT
        )
            .prop_map(|(path, after, limit)| Command::List(List { path, after, limit })),
        file_path().prop_map(Command::Stat),
        (
            file_path(),
            any::<u64>(),
            0..=MAX_READ_LEN,
            proptest::option::of(any::<u64>())
        )
            .prop_map(|(path, offset, length, version)| Command::Read(Read {
                path,
                offset,
                length,
                version,
            })),
        (file_path(), upload_id(), 0..MAX_PARTS, data()).prop_map(|(path, upload, index, data)| {
            Command::Part(Part {
                path,
                upload,
                index,
                data,
            })
        }),
        (file_path(), upload_id(), 0..=MAX_PARTS, content_type()).prop_map(
            |(path, upload, parts, content_type)| Command::Commit(Commit {
                path,
                upload,
                parts,
                content_type,
            })
        ),
        (file_path(), upload_id())
            .prop_map(|(path, upload)| Command::Abort(Abort { path, upload })),
        proptest::option::of(data()).prop_map(Command::Ping),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(("[A-Za-z0-9_-]{1,16}", data())),
            proptest::option::of("[A-Za-z0-9_.:-]{0,32}")
        )
            .prop_map(|(version, auth, setname)| {
                // AUTH and SETNAME only follow a protocol version (Redis's syntax).
                let setname = version.and(setname);
                let auth = version.and(auth);
                Command::Hello(Hello {
                    version,
                    auth,
                    setname,
                })
            }),
        (proptest::option::of("[A-Za-z0-9_-]{1,16}"), data())
            .prop_map(|(user, password)| Command::Auth { user, password }),
        prop_oneof![
            Just(CommandQuery::All),
            Just(CommandQuery::Count),
            Just(CommandQuery::List),
            vec(text(), 0..4).prop_map(CommandQuery::Info),
            vec(text(), 0..4).prop_map(CommandQuery::Docs),
        ]
        .prop_map(Command::CommandInfo),
        data().prop_map(Command::Echo),
        prop_oneof![
            "[A-Za-z0-9_.:-]{0,32}".prop_map(ClientCmd::SetName),
            Just(ClientCmd::GetName),
            (
                prop::sample::select(vec!["LIB-NAME", "LIB-VER"]),
                "[A-Za-z0-9_.:-]{0,32}"
            )
                .prop_map(|(a, v)| ClientCmd::SetInfo(a.to_string(), v)),
            Just(ClientCmd::Id),
            Just(ClientCmd::Info),
            (
                prop::sample::select(vec!["NO-EVICT", "NO-TOUCH"]),
                any::<bool>()
            )
                .prop_map(|(f, on)| ClientCmd::Flag(f.to_string(), on)),
        ]
        .prop_map(Command::Client),
        vec("[a-z]{1,12}", 0..3).prop_map(Command::Info),
        Just(Command::Quit),
        Just(Command::Reset),
        Just(Command::DbSize),
        file_path().prop_map(Command::Get),
        (file_path(), data()).prop_map(|(p, v)| Command::Set(p, v)),
        vec(file_path(), 1..5).prop_map(Command::Del),
        vec(file_path(), 1..5).prop_map(Command::Exists),
        file_path().prop_map(Command::Strlen),
        (file_path(), any::<i64>(), any::<i64>())
            .prop_map(|(path, start, end)| Command::GetRange(GetRange { path, start, end })),
        data().prop_map(Command::ConfigGet),
        Just(Command::NodeStatus),
        any::<u64>().prop_map(|epoch| Command::NodeLead { epoch }),
        (any::<u64>(), text(), any::<bool>(), spans()).prop_map(
            |(epoch, leader, learner, spans)| Command::NodeFollow {
                epoch,
                leader,
                learner,
                // Spans travel only after LEARNER.
                spans: if learner { spans } else { Vec::new() },
            }
        ),
        (
            any::<u64>(),
            text(),
            (any::<u64>(), any::<u64>(), any::<u64>()),
            (any::<u64>(), any::<bool>())
        )
            .prop_map(
                |(epoch, follower, (from, from_epoch, round), (max_bytes, learner))| {
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
            ),
        ("[A-Za-z0-9._:-]{1,128}", 1..=u64::MAX, file_path(), data()).prop_map(
            |(session, seq, path, data)| Command::Req {
                session,
                seq,
                cmd: Box::new(Command::Put(Put {
                    path,
                    data,
                    content_type: None,
                    must_exist: false,
                })),
            }
        ),
        Just(Command::Mux),
        any::<u64>().prop_map(|epoch| Command::ReplIndex { epoch }),
        (any::<u64>(), any::<u64>()).prop_map(|(epoch, ms)| Command::NodeFreeze { epoch, ms }),
        (
            any::<u64>(),
            proptest::collection::btree_set(any::<u32>(), 1..16),
            "[a-z0-9-]{0,20}"
        )
            .prop_map(|(epoch, points, cluster)| {
                let ranges = pair_up(points);
                Command::NodeOwn(cleave_proto::owned::Ownership {
                    cluster,
                    epoch,
                    ranges,
                    fenced: epoch % 2 == 0,
                })
            }),
        (any::<u64>(), text(), spans()).prop_map(|(epoch, cursor, spans)| Command::SnapNext {
            epoch,
            cursor,
            spans
        }),
        Just(Command::TableGet),
        data().prop_map(Command::TablePush),
    ]
}

/// Sorted distinct points, paired up: sorted, disjoint spans (an odd one out is a single-hash
/// span).
fn pair_up(points: std::collections::BTreeSet<u32>) -> Vec<(u32, u32)> {
    let points: Vec<u32> = points.into_iter().collect();
    points
        .chunks(2)
        .map(|c| (c[0], *c.last().expect("a chunk is never empty")))
        .collect()
}

/// Learner spans: none (everything) or up to 8 sorted, disjoint spans.
fn spans() -> impl Strategy<Value = Vec<(u32, u32)>> {
    proptest::collection::btree_set(any::<u32>(), 0..16).prop_map(pair_up)
}

/// The wire name of a command's variant. Exhaustive on purpose: a new variant does not build
/// until it is named here, which is the reminder to give it a strategy in [`command`].
pub fn variant_name(cmd: &Command) -> &'static str {
    match cmd {
        Command::Put(p) if p.must_exist => "UPDATE",
        Command::Put(_) => "INSERT",
        Command::Delete(_) => "DELETE",
        Command::Select(_) => "SELECT",
        Command::List(_) => "LIST",
        Command::Stat(_) => "STAT",
        Command::Read(_) => "READ",
        Command::Part(_) => "PART",
        Command::Commit(_) => "COMMIT",
        Command::Abort(_) => "ABORT",
        Command::Ping(_) => "PING",
        Command::Hello(_) => "HELLO",
        Command::Auth { .. } => "AUTH",
        Command::CommandInfo(_) => "COMMAND",
        Command::Echo(_) => "ECHO",
        Command::Client(_) => "CLIENT",
        Command::Info(_) => "INFO",
        Command::Quit => "QUIT",
        Command::Reset => "RESET",
        Command::DbSize => "DBSIZE",
        Command::Get(_) => "GET",
        Command::Set(..) => "SET",
        Command::Del(_) => "DEL",
        Command::Exists(_) => "EXISTS",
        Command::Strlen(_) => "STRLEN",
        Command::GetRange(_) => "GETRANGE",
        Command::ConfigGet(_) => "CONFIG",
        Command::NodeStatus => "NODE.STATUS",
        Command::NodeLead { .. } => "NODE.LEAD",
        Command::NodeFollow { .. } => "NODE.FOLLOW",
        Command::ReplFetch { .. } => "REPL.FETCH",
        Command::ReplIndex { .. } => "REPL.INDEX",
        Command::NodeFreeze { .. } => "NODE.FREEZE",
        Command::NodeOwn(_) => "NODE.OWN",
        Command::SnapNext { .. } => "SNAP.NEXT",
        Command::Req { .. } => "REQ",
        Command::Mux => "MUX",
        Command::TableGet => "TABLE.GET",
        Command::TablePush(_) => "TABLE.PUSH",
    }
}

/// One argument of a hostile request: words the parser looks for (command names in any case,
/// option keywords, numbers at and past the limits, valid and invalid paths, upload ids) and
/// arbitrary bytes.
pub fn hostile_arg() -> impl Strategy<Value = Bytes> {
    let known: Vec<&'static str> = cleave_proto::command::KNOWN.to_vec();
    prop_oneof![
        3 => prop::sample::select(known).prop_flat_map(|k| {
            vec(any::<bool>(), k.len()).prop_map(move |lower| {
                k.chars()
                    .zip(lower)
                    .map(|(c, l)| if l { c.to_ascii_lowercase() } else { c })
                    .collect::<String>()
            })
        }).prop_map(Bytes::from),
        2 => prop::sample::select(vec![
            "AFTER", "LIMIT", "VERSION", "TYPE", "GET", "SET", "after", "limit", "type",
            "SETNAME", "AUTH", "SETINFO", "LIB-NAME", "COUNT", "DOCS", "INFO", "ON", "off",
        ]).prop_map(Bytes::from),
        3 => prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            (0u64..20).prop_map(|n| n.to_string()),
            Just(MAX_LIST_LIMIT.to_string()),
            Just((MAX_LIST_LIMIT + 1).to_string()),
            Just(MAX_READ_LEN.to_string()),
            Just((MAX_READ_LEN + 1).to_string()),
            Just(MAX_PARTS.to_string()),
            Just((MAX_PARTS + 1).to_string()),
            Just("-1".to_string()),
            Just("18446744073709551616".to_string()),
            Just("+5".to_string()),
            Just(String::new()),
        ].prop_map(Bytes::from),
        3 => file_path().prop_map(|p| Bytes::from(p.to_string())),
        2 => prop::sample::select(vec!["/", "a/b", "/a//b", "/a/..", "/a/./b", "/a/", "/a\0", ""])
            .prop_map(Bytes::from),
        1 => upload_id().prop_map(Bytes::from),
        2 => vec(any::<u8>(), 0..12).prop_map(Bytes::from),
    ]
}
