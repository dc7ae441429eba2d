//! `COMMAND`: Cleave's client commands described in Redis's command-info shape, with their key
//! positions (a path is the key), so that cluster-aware and pipelining clients know where keys
//! are, and `COMMAND DOCS` for `redis-cli`'s hints.

use crate::command::redis::CommandQuery;
use crate::frame::Frame;

/// One line per command: name, arity (Redis's: negative means "at least"), flags
/// (comma-separated), first key, last key (-1: the last argument), step, group, summary.
const TABLE: &[&str] = &[
    "insert -3 write 1 1 1 string create or replace a file",
    "update -3 write 1 1 1 string replace an existing file",
    "delete 2 write 1 1 1 generic delete a file",
    "select 2 readonly 1 1 1 string a file's contents or a directory's entries",
    "list -2 readonly 1 1 1 generic one page of a directory",
    "stat 2 readonly,fast 1 1 1 generic a file's size, etag, type, time and seq",
    "read -4 readonly 1 1 1 string a byte range of a file",
    "part 5 write 1 1 1 string stage one part of a multipart upload",
    "commit -4 write 1 1 1 string complete a multipart upload",
    "abort 3 write 1 1 1 string drop a multipart upload",
    "get 2 readonly,fast 1 1 1 string a file's contents, nil if absent",
    "set 3 write 1 1 1 string create or replace a file",
    "del -2 write 1 -1 1 generic delete files, counting those that existed",
    "exists -2 readonly,fast 1 -1 1 generic count the keys that are files",
    "strlen 2 readonly,fast 1 1 1 string a file's size, 0 if absent",
    "getrange 4 readonly 1 1 1 string a byte range with Redis's index rules",
    "ping -1 fast,stale 0 0 0 connection PONG, or the message",
    "echo 2 fast 0 0 0 connection the message",
    "hello -1 fast,noauth 0 0 0 connection switch to RESP2 or RESP3",
    "auth -2 fast,noauth 0 0 0 connection present the admin credential",
    "client -2 stale 0 0 0 connection the connection's name and library",
    "info -1 stale 0 0 0 server server, clients and stats",
    "command -1 stale 0 0 0 server this table",
    "config -3 admin 0 0 0 server CONFIG GET: nothing to configure",
    "quit 1 fast 0 0 0 connection close the connection",
    "reset 1 fast 0 0 0 connection back to RESP2, no name",
    "dbsize 1 readonly 0 0 0 server an error: there is no global key count",
];

/// One parsed line of [`TABLE`].
struct Row {
    name: &'static str,
    arity: i64,
    flags: Vec<&'static str>,
    keys: [i64; 3],
    group: &'static str,
    summary: String,
}

fn row(line: &'static str) -> Row {
    let mut f = line.split(' ');
    let mut next = || f.next().expect("a complete TABLE line");
    let name = next();
    let arity = next().parse().expect("arity");
    let flags = next().split(',').collect();
    let keys = [(); 3].map(|_| next().parse().expect("key position"));
    let group = next();
    let summary = f.collect::<Vec<_>>().join(" ");
    Row {
        name,
        arity,
        flags,
        keys,
        group,
        summary,
    }
}

/// The number of commands described.
pub fn count() -> usize {
    TABLE.len()
}

/// Whether `name` (any case) is described.
#[cfg(test)]
pub fn describes(name: &str) -> bool {
    find(name).is_some()
}

fn find(name: &str) -> Option<Row> {
    TABLE
        .iter()
        .map(|l| row(l))
        .find(|r| r.name.eq_ignore_ascii_case(name))
}

/// Redis 7's ten-element command info.
fn info(r: &Row) -> Frame {
    let flags = r.flags.iter().map(|f| Frame::Simple((*f).into())).collect();
    Frame::Array(vec![
        Frame::bulk(r.name),
        Frame::Integer(r.arity),
        Frame::Array(flags),
        Frame::Integer(r.keys[0]),
        Frame::Integer(r.keys[1]),
        Frame::Integer(r.keys[2]),
        Frame::Array(vec![Frame::Simple(format!("@{}", r.group))]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
        Frame::Array(vec![]),
    ])
}

fn docs(r: &Row) -> (Frame, Frame) {
    let doc = Frame::Map(vec![
        (Frame::bulk("summary"), Frame::bulk(r.summary.clone())),
        (Frame::bulk("since"), Frame::bulk("0.1.0")),
        (Frame::bulk("group"), Frame::bulk(r.group)),
    ]);
    (Frame::bulk(r.name), doc)
}

/// The answer to a `COMMAND` query.
pub fn answer(q: &CommandQuery) -> Frame {
    let all = || TABLE.iter().map(|l| row(l));
    match q {
        CommandQuery::All => Frame::Array(all().map(|r| info(&r)).collect()),
        CommandQuery::Count => Frame::Integer(count() as i64),
        CommandQuery::List => Frame::Array(all().map(|r| Frame::bulk(r.name)).collect()),
        CommandQuery::Info(names) if names.is_empty() => answer(&CommandQuery::All),
        CommandQuery::Info(names) => Frame::Array(
            names
                .iter()
                .map(|n| find(n).map_or(Frame::Null, |r| info(&r)))
                .collect(),
        ),
        CommandQuery::Docs(names) if names.is_empty() => {
            Frame::Map(all().map(|r| docs(&r)).collect())
        }
        CommandQuery::Docs(names) => Frame::Map(
            names
                .iter()
                .filter_map(|n| find(n))
                .map(|r| docs(&r))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_line_parses() {
        for line in super::TABLE {
            let r = super::row(line);
            assert!(!r.summary.is_empty(), "{line}");
            assert!(r.keys[0] <= 1 && r.keys[2] >= 0, "{line}");
        }
    }
}
