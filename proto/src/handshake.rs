//! Connection housekeeping, answered the same way by routers and nodes: `HELLO` (RESP2 or
//! RESP3), `ECHO`, `PING`, `CLIENT ...`, `INFO`, `COMMAND ...`, `CONFIG GET`, `QUIT`, `RESET`,
//! `DBSIZE`.
//!
//! Client libraries send these on connect with their default settings (redis-py: `HELLO 3` and
//! `CLIENT SETINFO`; ioredis: `INFO` as a ready check; redis-cli: `COMMAND DOCS`;
//! `redis-cli --pipe`: `ECHO`), so one implementation keeps both servers consistent. The state a
//! connection carries (protocol, name, library) lives in [`ConnState`]; an answer may ask the
//! server to switch protocol before writing it, or to close after it ([`Effect`]).

mod commands;

use crate::auth::Secret;
use crate::command::redis::{ClientCmd, Hello};
use crate::command::Command;
use crate::error::{ErrorCode, Reply};
use crate::frame::{Frame, Protocol};
use std::fmt::Write;

/// What one connection has told the server about itself.
#[derive(Debug, Clone, Default)]
pub struct ConnState {
    /// Unique per server process, from 1 (`CLIENT ID`, `HELLO`'s `id`).
    pub id: u64,
    /// The peer's address, for `CLIENT INFO`.
    pub addr: String,
    /// The protocol replies are written in.
    pub protocol: Protocol,
    /// `CLIENT SETNAME` / `HELLO ... SETNAME`.
    pub name: Option<String>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub lib_name: Option<String>,
    /// `CLIENT SETINFO LIB-VER`.
    pub lib_ver: Option<String>,
    /// The connection presented the admin credential (`AUTH`), or the server has none.
    pub admin: bool,
}

/// What the server reports about itself in `HELLO` and `INFO`.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// `cleave-router` or `cleave-node`.
    pub server: &'static str,
    /// `master` (routers, leaders) or `slave` (followers), as Redis clients expect.
    pub role: &'static str,
    /// The listening address.
    pub addr: String,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Open client connections.
    pub connected_clients: u64,
    /// Extra `INFO` sections, e.g. the router's stats: (section, [(field, value)]).
    pub sections: Vec<(&'static str, Vec<(String, String)>)>,
    /// The admin secret `AUTH` is checked against (`None`: none configured).
    pub secret: Option<std::sync::Arc<Secret>>,
}

/// What the server does besides writing the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    /// Switch the connection to this protocol before writing the answer.
    pub protocol: Option<Protocol>,
    /// Close the connection once the answer is written (`QUIT`).
    pub close: bool,
}

/// Upper-case names of the commands [`answer`] handles (PING aside, which servers answer on
/// their own path too), so a server can pick them out before parsing a large request.
pub const NAMES: &[&str] = &[
    "HELLO", "AUTH", "ECHO", "CLIENT", "INFO", "COMMAND", "CONFIG", "QUIT", "RESET", "DBSIZE",
];

/// Whether an upper-case command name is housekeeping.
pub fn is_housekeeping(name: &[u8]) -> bool {
    NAMES.iter().any(|n| n.as_bytes() == name)
}

/// Answer `cmd` if it is housekeeping; `None` for every other command.
pub fn answer(cmd: &Command, conn: &mut ConnState, info: &ServerInfo) -> Option<(Frame, Effect)> {
    let plain = |f: Frame| Some((f, Effect::default()));
    match cmd {
        Command::Ping(None) => plain(Frame::Simple("PONG".into())),
        Command::Ping(Some(m)) | Command::Echo(m) => plain(Frame::Bulk(m.clone())),
        Command::Hello(h) => {
            if let Some((user, password)) = &h.auth {
                if let Err(e) = auth(Some(user), password, conn, info) {
                    return plain(e);
                }
            }
            Some(hello(h, conn, info))
        }
        Command::Auth { user, password } => plain(
            auth(user.as_deref(), password, conn, info)
                .map(|()| Frame::ok())
                .unwrap_or_else(|e| e),
        ),
        Command::Client(c) => plain(client(c, conn)),
        Command::Info(sections) => plain(Frame::Bulk(info_text(sections, info).into())),
        Command::CommandInfo(q) => plain(commands::answer(q)),
        Command::ConfigGet(_) => plain(Frame::Map(vec![])),
        Command::Quit => Some((
            Frame::ok(),
            Effect {
                protocol: None,
                close: true,
            },
        )),
        Command::Reset => {
            *conn = ConnState {
                id: conn.id,
                addr: std::mem::take(&mut conn.addr),
                ..ConnState::default()
            };
            Some((
                Frame::Simple("RESET".into()),
                Effect {
                    protocol: Some(Protocol::Resp2),
                    close: false,
                },
            ))
        }
        Command::DbSize => plain(
            Reply::new(
                ErrorCode::Err,
                "DBSIZE has no meaning here: files are spread over clusters; use LIST /root to \
                 page through a root",
            )
            .to_frame(),
        ),
        _ => None,
    }
}

/// A `STAT` reply (a flat array of name/value pairs) as a map: RESP3 clients get a map, RESP2
/// ones the same flat array as before.
pub fn stat_map(reply: Frame) -> Frame {
    match reply {
        Frame::Array(items) if items.len() % 2 == 0 => {
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut it = items.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                pairs.push((k, v));
            }
            Frame::Map(pairs)
        }
        other => other,
    }
}

/// Check a credential; on success the connection may send privileged commands.
fn auth(
    user: Option<&str>,
    password: &[u8],
    conn: &mut ConnState,
    info: &ServerInfo,
) -> Result<(), Frame> {
    match &info.secret {
        None => Err(Frame::Error(
            "ERR AUTH called without any password configured (this server needs none)".into(),
        )),
        Some(s) if s.accepts(user, password) => {
            conn.admin = true;
            Ok(())
        }
        Some(_) => {
            conn.admin = false;
            Err(Frame::Error(
                "WRONGPASS invalid username-password pair or user is disabled.".into(),
            ))
        }
    }
}

/// Whether `conn` may send the command named `name` (upper case): anything when the server has
/// no secret or the connection authenticated; otherwise no [`crate::auth::PRIVILEGED`] command.
pub fn allowed(name: &[u8], conn: &ConnState, info_secret: Option<&Secret>) -> bool {
    info_secret.is_none() || conn.admin || !crate::auth::is_privileged(name)
}

fn hello(h: &Hello, conn: &mut ConnState, info: &ServerInfo) -> (Frame, Effect) {
    let protocol = match h.version {
        None => conn.protocol,
        Some(2) => Protocol::Resp2,
        Some(3) => Protocol::Resp3,
        Some(_) => {
            let e = Frame::Error("NOPROTO unsupported protocol version (2 or 3)".into());
            return (e, Effect::default());
        }
    };
    conn.protocol = protocol;
    if let Some(n) = &h.setname {
        conn.name = Some(n.clone());
    }
    let proto = if protocol == Protocol::Resp3 { 3 } else { 2 };
    let reply = Frame::Map(vec![
        (Frame::bulk("server"), Frame::bulk(info.server)),
        (
            Frame::bulk("version"),
            Frame::bulk(env!("CARGO_PKG_VERSION")),
        ),
        (Frame::bulk("proto"), Frame::Integer(proto)),
        (Frame::bulk("id"), Frame::Integer(conn.id as i64)),
        (Frame::bulk("mode"), Frame::bulk("standalone")),
        (Frame::bulk("role"), Frame::bulk(info.role)),
        (Frame::bulk("modules"), Frame::Array(vec![])),
    ]);
    let effect = Effect {
        protocol: Some(protocol),
        close: false,
    };
    (reply, effect)
}

fn client(c: &ClientCmd, conn: &mut ConnState) -> Frame {
    match c {
        ClientCmd::SetName(n) => {
            conn.name = (!n.is_empty()).then(|| n.clone());
            Frame::ok()
        }
        ClientCmd::GetName => conn
            .name
            .as_ref()
            .map_or(Frame::Null, |n| Frame::bulk(n.clone())),
        ClientCmd::SetInfo(attr, v) => {
            let slot = if attr == "LIB-NAME" {
                &mut conn.lib_name
            } else {
                &mut conn.lib_ver
            };
            *slot = Some(v.clone());
            Frame::ok()
        }
        ClientCmd::Id => Frame::Integer(conn.id as i64),
        ClientCmd::Info => {
            let resp = if conn.protocol == Protocol::Resp3 {
                3
            } else {
                2
            };
            Frame::bulk(format!(
                "id={} addr={} name={} resp={} lib-name={} lib-ver={}\n",
                conn.id,
                conn.addr,
                conn.name.as_deref().unwrap_or(""),
                resp,
                conn.lib_name.as_deref().unwrap_or(""),
                conn.lib_ver.as_deref().unwrap_or(""),
            ))
        }
        ClientCmd::Flag(..) => Frame::ok(),
    }
}

/// `INFO` text: Redis's `# Section` / `field:value` lines, so clients' parsers read it.
/// `redis_version` is the Redis version whose client-facing behaviour Cleave follows.
fn info_text(wanted: &[String], info: &ServerInfo) -> String {
    let pick = |s: &str| {
        wanted.is_empty()
            || wanted
                .iter()
                .any(|w| w == s || w == "all" || w == "default" || w == "everything")
    };
    let mut sections: Vec<(&str, Vec<(String, String)>)> = vec![
        (
            "server",
            vec![
                ("redis_version".into(), "7.2.0".into()),
                ("redis_mode".into(), "standalone".into()),
                ("cleave_server".into(), info.server.into()),
                ("cleave_version".into(), env!("CARGO_PKG_VERSION").into()),
                ("process_id".into(), std::process::id().to_string()),
                ("tcp_addr".into(), info.addr.clone()),
                ("uptime_in_seconds".into(), info.uptime_s.to_string()),
            ],
        ),
        (
            "clients",
            vec![(
                "connected_clients".into(),
                info.connected_clients.to_string(),
            )],
        ),
        ("persistence", vec![("loading".into(), "0".into())]),
        ("replication", vec![("role".into(), info.role.into())]),
    ];
    sections.extend(info.sections.iter().cloned());
    sections.push(("keyspace", vec![]));
    let mut out = String::new();
    for (name, fields) in sections.iter().filter(|(n, _)| pick(n)) {
        let mut title = name.to_string();
        title[..1].make_ascii_uppercase();
        let _ = write!(out, "# {title}\r\n");
        for (k, v) in fields {
            let _ = write!(out, "{k}:{v}\r\n");
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests;
