//! The commands Cleave speaks so that Redis clients work with their default settings: the
//! handshake and housekeeping every client library sends on connect (`HELLO 3`,
//! `CLIENT SETINFO`, `INFO`, `COMMAND DOCS`, `ECHO`, ...), and familiar verbs as aliases of the
//! file commands (`GET` = `SELECT` of a file, `SET` = `INSERT`, `DEL` = `DELETE` per key, ...).
//!
//! Keys of the aliases are file paths: a client that sends `GET foo` gets `-BADPATH` saying that
//! keys are absolute paths like `/bucket/key`, not a confusing "not found".

use super::args::Args;
use super::Command;
use crate::error::{ErrorCode, Reply};
use crate::frame::Frame;
use crate::path::FilePath;
use bytes::Bytes;

/// Most keys one `DEL` / `EXISTS` may name: each becomes its own request.
pub const MAX_KEYS: usize = 1024;

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol asked for; `None` keeps the current one.
    pub version: Option<u64>,
    /// `AUTH user password`: authenticate first (only with a `version`).
    pub auth: Option<(String, Bytes)>,
    /// A connection name to set, as `CLIENT SETNAME` does (only with a `version`: the syntax
    /// puts it after one).
    pub setname: Option<String>,
}

/// `GETRANGE path start end`: Redis's inclusive range with negative indices from the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetRange {
    /// The file.
    pub path: FilePath,
    /// First byte; negative counts from the end.
    pub start: i64,
    /// Last byte (inclusive); negative counts from the end.
    pub end: i64,
}

impl GetRange {
    /// The byte range `[offset, offset + len)` this asks of a file of `size` bytes, as Redis
    /// computes it; `None` when it is empty.
    pub fn resolve(&self, size: u64) -> Option<(u64, u64)> {
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        let fix = |i: i64| if i < 0 { (size + i).max(0) } else { i };
        let (start, end) = (fix(self.start), fix(self.end).min(size - 1));
        (size > 0 && start <= end && start < size).then(|| (start as u64, (end - start + 1) as u64))
    }
}

/// `CLIENT <subcommand>`: the ones client libraries send on connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientCmd {
    /// `CLIENT SETNAME name`.
    SetName(String),
    /// `CLIENT GETNAME`.
    GetName,
    /// `CLIENT SETINFO LIB-NAME|LIB-VER value`.
    SetInfo(String, String),
    /// `CLIENT ID`.
    Id,
    /// `CLIENT INFO`.
    Info,
    /// `CLIENT NO-EVICT on|off` or `CLIENT NO-TOUCH on|off`: accepted, nothing to change.
    Flag(String, bool),
}

/// `COMMAND [COUNT | INFO name... | DOCS name... | LIST]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandQuery {
    /// `COMMAND`: every command's description.
    All,
    /// `COMMAND COUNT`.
    Count,
    /// `COMMAND LIST`: the names.
    List,
    /// `COMMAND INFO [name...]`.
    Info(Vec<String>),
    /// `COMMAND DOCS [name...]`.
    Docs(Vec<String>),
}

/// Parse the Redis-compatible command `name` (upper-case; the caller matched it).
pub(super) fn parse(name: &'static str, mut args: Args) -> Result<Command, Reply> {
    let cmd = match name {
        "HELLO" => Command::Hello(hello(args)?),
        "AUTH" => {
            let first = args.bytes("password")?;
            if args.is_empty() {
                Command::Auth {
                    user: None,
                    password: first,
                }
            } else {
                let password = args.bytes("password")?;
                args.finish()?;
                Command::Auth {
                    user: Some(String::from_utf8_lossy(&first).into_owned()),
                    password,
                }
            }
        }
        "COMMAND" => Command::CommandInfo(command(args)?),
        "ECHO" => {
            let msg = args.bytes("message")?;
            args.finish()?;
            Command::Echo(msg)
        }
        "CLIENT" => Command::Client(client(args)?),
        "INFO" => {
            let mut sections = vec![];
            while !args.is_empty() {
                sections.push(args.string("section")?.to_ascii_lowercase());
            }
            Command::Info(sections)
        }
        "QUIT" | "RESET" | "DBSIZE" => {
            args.finish()?;
            match name {
                "QUIT" => Command::Quit,
                "RESET" => Command::Reset,
                _ => Command::DbSize,
            }
        }
        "GET" | "STRLEN" => {
            let key = key(&mut args)?;
            args.finish()?;
            if name == "GET" {
                Command::Get(key)
            } else {
                Command::Strlen(key)
            }
        }
        "SET" => {
            let key = key(&mut args)?;
            let value = args.bytes("value")?;
            if !args.is_empty() {
                return Err(Reply::new(
                    ErrorCode::Err,
                    "SET: options (EX, PX, NX, XX, GET, KEEPTTL) are not supported; files do \
                         not expire",
                ));
            }
            Command::Set(key, value)
        }
        "DEL" => Command::Del(keys(&mut args, name)?),
        "EXISTS" => Command::Exists(keys(&mut args, name)?),
        "GETRANGE" => {
            let path = key(&mut args)?;
            let start = int(&mut args, "start")?;
            let end = int(&mut args, "end")?;
            args.finish()?;
            Command::GetRange(GetRange { path, start, end })
        }
        "CONFIG" => {
            let sub = args.string("subcommand")?.to_ascii_uppercase();
            if sub != "GET" {
                return Err(Reply::new(
                    ErrorCode::Err,
                    format!("CONFIG {sub} is not supported"),
                ));
            }
            let pattern = args.bytes("pattern")?;
            let _ = args.rest()?;
            Command::ConfigGet(pattern)
        }
        _ => unreachable!("every NAME is matched above"),
    };
    Ok(cmd)
}

/// The request frame of a Redis-compatible command (one that [`parse`] returns).
pub(super) fn to_frame(cmd: &Command) -> Frame {
    match cmd {
        Command::Hello(h) => hello_frame(h),
        Command::Auth { user, password } => {
            let mut parts: Vec<Bytes> = vec!["AUTH".into()];
            parts.extend(user.clone().map(Bytes::from));
            parts.push(password.clone());
            Frame::command(parts)
        }
        Command::CommandInfo(q) => command_frame(q),
        Command::Echo(m) => Frame::command([Bytes::from("ECHO"), m.clone()]),
        Command::Client(c) => client_frame(c),
        Command::Info(sections) => {
            Frame::command(std::iter::once("INFO".to_string()).chain(sections.iter().cloned()))
        }
        Command::Quit => Frame::command(["QUIT"]),
        Command::Reset => Frame::command(["RESET"]),
        Command::DbSize => Frame::command(["DBSIZE"]),
        Command::Get(p) => Frame::command(["GET", p.as_str()].map(str::to_owned)),
        Command::Strlen(p) => Frame::command(["STRLEN", p.as_str()].map(str::to_owned)),
        Command::Set(p, v) => Frame::command([
            Bytes::from("SET"),
            Bytes::from(p.as_str().to_owned()),
            v.clone(),
        ]),
        Command::Del(keys) | Command::Exists(keys) => {
            let name = if matches!(cmd, Command::Del(_)) {
                "DEL"
            } else {
                "EXISTS"
            };
            Frame::command(
                std::iter::once(name.to_string()).chain(keys.iter().map(|k| k.to_string())),
            )
        }
        Command::GetRange(g) => Frame::command([
            "GETRANGE".to_string(),
            g.path.to_string(),
            g.start.to_string(),
            g.end.to_string(),
        ]),
        other => unreachable!("{other:?} is not a Redis-compatible command"),
    }
}

/// An alias's key: a path, or `-BADPATH` that says what keys are.
pub fn key(args: &mut Args) -> Result<FilePath, Reply> {
    let raw = args.bytes("key")?;
    FilePath::from_bytes(&raw).map_err(|e| {
        Reply::new(
            ErrorCode::BadPath,
            format!("{}: keys are absolute paths like /bucket/key", e.message),
        )
    })
}

/// One or more keys, at most [`MAX_KEYS`].
pub fn keys(args: &mut Args, name: &str) -> Result<Vec<FilePath>, Reply> {
    let mut out = vec![key(args)?];
    while !args.is_empty() {
        if out.len() == MAX_KEYS {
            return Err(Reply::new(
                ErrorCode::Err,
                format!("{name}: at most {MAX_KEYS} keys per call"),
            ));
        }
        out.push(key(args)?);
    }
    Ok(out)
}

/// A Redis-style signed integer argument.
pub fn int(args: &mut Args, what: &str) -> Result<i64, Reply> {
    let s = args.string(what)?;
    s.parse().map_err(|_| {
        Reply::new(
            ErrorCode::Err,
            format!("{what} must be an integer, got {s:?}"),
        )
    })
}

/// `HELLO`'s arguments.
pub fn hello(mut args: Args) -> Result<Hello, Reply> {
    let version = if args.is_empty() {
        None
    } else {
        let v = args.string("protover")?;
        Some(v.parse::<u64>().map_err(|_| {
            Reply::new(
                ErrorCode::Err,
                format!("HELLO: protocol version must be an integer, got {v:?}"),
            )
        })?)
    };
    let mut setname = None;
    let mut auth = None;
    while let Some(opt) = args.keyword()? {
        match opt.as_str() {
            "AUTH" => {
                let user = args.string("AUTH username")?;
                auth = Some((user, args.bytes("AUTH password")?));
            }
            "SETNAME" => setname = Some(client_name(args.string("SETNAME name")?)?),
            other => return Err(args.unknown_option(other)),
        }
    }
    Ok(Hello {
        version,
        auth,
        setname,
    })
}

/// A connection name: like Redis, no spaces or line breaks (CLIENT INFO prints it unquoted).
fn client_name(name: String) -> Result<String, Reply> {
    if name.chars().any(|c| c == ' ' || c.is_control()) || name.len() > 256 {
        return Err(Reply::new(
            ErrorCode::Err,
            "client names cannot contain spaces, newlines or special characters (at most 256 bytes)",
        ));
    }
    Ok(name)
}

/// `CLIENT`'s subcommand.
pub fn client(mut args: Args) -> Result<ClientCmd, Reply> {
    let sub = args.string("subcommand")?.to_ascii_uppercase();
    let cmd = match sub.as_str() {
        "SETNAME" => ClientCmd::SetName(client_name(args.string("name")?)?),
        "GETNAME" => ClientCmd::GetName,
        "ID" => ClientCmd::Id,
        "INFO" => ClientCmd::Info,
        "SETINFO" => {
            let attr = args.string("attribute")?.to_ascii_uppercase();
            if attr != "LIB-NAME" && attr != "LIB-VER" {
                return Err(Reply::new(
                    ErrorCode::Err,
                    format!("CLIENT SETINFO: unknown attribute {attr:?} (LIB-NAME or LIB-VER)"),
                ));
            }
            ClientCmd::SetInfo(attr, client_name(args.string("value")?)?)
        }
        "NO-EVICT" | "NO-TOUCH" => {
            let on = match args.string("on|off")?.to_ascii_uppercase().as_str() {
                "ON" => true,
                "OFF" => false,
                other => {
                    return Err(Reply::new(
                        ErrorCode::Err,
                        format!("CLIENT {sub}: expected ON or OFF, got {other:?}"),
                    ))
                }
            };
            ClientCmd::Flag(sub.clone(), on)
        }
        _ => {
            let shown: String = sub.chars().take(40).collect();
            return Err(Reply::new(
                ErrorCode::Err,
                format!(
                    "CLIENT {shown} is not supported (SETNAME, GETNAME, SETINFO, ID, INFO, \
                     NO-EVICT, NO-TOUCH are)"
                ),
            ));
        }
    };
    args.finish()?;
    Ok(cmd)
}

/// `COMMAND`'s subcommand.
pub fn command(mut args: Args) -> Result<CommandQuery, Reply> {
    let Some(sub) = args.keyword()? else {
        return Ok(CommandQuery::All);
    };
    let names = |args: &mut Args| -> Result<Vec<String>, Reply> {
        let mut out = vec![];
        while !args.is_empty() {
            out.push(args.string("command name")?);
        }
        Ok(out)
    };
    let q = match sub.as_str() {
        "COUNT" => CommandQuery::Count,
        "LIST" => CommandQuery::List,
        "INFO" => CommandQuery::Info(names(&mut args)?),
        "DOCS" => CommandQuery::Docs(names(&mut args)?),
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(Reply::new(
                ErrorCode::Err,
                format!("COMMAND {shown} is not supported (COUNT, LIST, INFO, DOCS are)"),
            ));
        }
    };
    if matches!(q, CommandQuery::Count | CommandQuery::List) {
        args.finish()?;
    }
    Ok(q)
}

/// The request frame of a `CLIENT` subcommand.
pub fn client_frame(c: &ClientCmd) -> Frame {
    let parts: Vec<Bytes> = match c {
        ClientCmd::SetName(n) => vec!["CLIENT".into(), "SETNAME".into(), n.clone().into()],
        ClientCmd::GetName => vec!["CLIENT".into(), "GETNAME".into()],
        ClientCmd::SetInfo(a, v) => vec![
            "CLIENT".into(),
            "SETINFO".into(),
            a.clone().into(),
            v.clone().into(),
        ],
        ClientCmd::Id => vec!["CLIENT".into(), "ID".into()],
        ClientCmd::Info => vec!["CLIENT".into(), "INFO".into()],
        ClientCmd::Flag(f, on) => vec![
            "CLIENT".into(),
            f.clone().into(),
            if *on { "ON" } else { "OFF" }.into(),
        ],
    };
    Frame::command(parts)
}

/// The request frame of a `COMMAND` query.
pub fn command_frame(q: &CommandQuery) -> Frame {
    let (sub, names): (Option<&str>, &[String]) = match q {
        CommandQuery::All => (None, &[]),
        CommandQuery::Count => (Some("COUNT"), &[]),
        CommandQuery::List => (Some("LIST"), &[]),
        CommandQuery::Info(n) => (Some("INFO"), n),
        CommandQuery::Docs(n) => (Some("DOCS"), n),
    };
    let mut parts: Vec<Bytes> = vec!["COMMAND".into()];
    parts.extend(sub.map(Bytes::from));
    parts.extend(names.iter().map(|n| Bytes::from(n.clone())));
    Frame::command(parts)
}

/// The request frame of `HELLO`.
pub fn hello_frame(h: &Hello) -> Frame {
    let mut parts: Vec<Bytes> = vec!["HELLO".into()];
    parts.extend(h.version.map(|v| Bytes::from(v.to_string())));
    if let Some((user, password)) = &h.auth {
        parts.extend([
            Bytes::from("AUTH"),
            Bytes::from(user.clone()),
            password.clone(),
        ]);
    }
    if let Some(n) = &h.setname {
        parts.extend([Bytes::from("SETNAME"), Bytes::from(n.clone())]);
    }
    Frame::command(parts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn range(start: i64, end: i64) -> GetRange {
        GetRange {
            path: FilePath::parse("/a/b").unwrap(),
            start,
            end,
        }
    }

    #[test]
    fn redis_verbs_want_path_keys_and_clear_arguments() {
        let err = |parts: &[&str]| {
            let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            Command::from_frame(Frame::command(owned)).unwrap_err()
        };
        for bad in [
            &["GET", "foo"][..],
            &["SET", "foo", "v"],
            &["DEL", "/a", "foo"],
            &["EXISTS", "x"],
            &["STRLEN", "k"],
            &["GETRANGE", "k", "0", "1"],
        ] {
            let e = err(bad);
            assert_eq!(e.code, ErrorCode::BadPath, "{bad:?}");
            assert!(
                e.message.contains("absolute paths like /bucket/key"),
                "{e:?}"
            );
        }
        assert!(err(&["GET"]).message.contains("missing argument key"));
        assert!(err(&["GET", "/a", "/b"]).message.contains("extra"));
        assert!(err(&["SET", "/a"])
            .message
            .contains("missing argument value"));
        assert!(err(&["SET", "/a", "v", "EX", "10"])
            .message
            .contains("not supported"));
        assert!(err(&["DEL"]).message.contains("missing argument key"));
        assert!(err(&["GETRANGE", "/a", "x", "1"])
            .message
            .contains("integer"));
        assert!(err(&["ECHO"]).message.contains("missing"));
        assert!(err(&["ECHO", "a", "b"]).message.contains("extra"));
        assert!(err(&["CLIENT", "KILL", "x"])
            .message
            .contains("not supported"));
        assert!(err(&["CLIENT", "SETNAME", "a b"])
            .message
            .contains("spaces"));
        assert!(err(&["CLIENT", "SETINFO", "X", "y"])
            .message
            .contains("LIB-NAME"));
        assert!(err(&["CLIENT", "NO-EVICT", "maybe"])
            .message
            .contains("ON or OFF"));
        assert!(err(&["CLIENT"]).message.contains("missing"));
        assert!(err(&["COMMAND", "GETKEYS"])
            .message
            .contains("not supported"));
        assert!(err(&["COMMAND", "COUNT", "x"]).message.contains("extra"));
        assert!(err(&["HELLO", "3", "AUTH", "u"])
            .message
            .contains("missing"));
        assert!(err(&["AUTH"]).message.contains("missing"));
        assert!(err(&["AUTH", "u", "p", "x"]).message.contains("extra"));
        assert!(err(&["HELLO", "three"]).message.contains("integer"));
        assert!(err(&["HELLO", "3", "SETNAME"]).message.contains("missing"));
        assert!(err(&["HELLO", "3", "FOO"])
            .message
            .contains("unknown option"));
        assert!(err(&["QUIT", "now"]).message.contains("extra"));
        assert!(err(&["DBSIZE", "x"]).message.contains("extra"));
        let many: Vec<String> = std::iter::once("DEL".to_string())
            .chain((0..=MAX_KEYS).map(|i| format!("/k/{i}")))
            .collect();
        assert!(Command::from_frame(Frame::command(many))
            .unwrap_err()
            .message
            .contains("at most"));
    }

    #[test]
    fn getrange_follows_redis() {
        // "This is a string" is 16 bytes: Redis's own examples.
        assert_eq!(range(0, 3).resolve(16), Some((0, 4)));
        assert_eq!(range(-3, -1).resolve(16), Some((13, 3)));
        assert_eq!(range(0, -1).resolve(16), Some((0, 16)));
        assert_eq!(range(10, 100).resolve(16), Some((10, 6)));
        assert_eq!(range(5, 3).resolve(16), None);
        assert_eq!(range(16, 20).resolve(16), None);
        assert_eq!(range(-100, 2).resolve(16), Some((0, 3)));
        assert_eq!(range(0, -100).resolve(16), Some((0, 1)));
        assert_eq!(range(-1, -5).resolve(16), None);
        assert_eq!(range(0, 0).resolve(0), None);
        assert_eq!(range(i64::MIN, i64::MAX).resolve(5), Some((0, 5)));
    }
}
