//! Unit tests of the housekeeping answers.

use super::*;
use crate::frame::Frame;

fn info() -> ServerInfo {
    ServerInfo {
        server: "cleave-router",
        role: "master",
        addr: "127.0.0.1:7000".into(),
        uptime_s: 5,
        connected_clients: 2,
        sections: vec![("stats", vec![("total_commands".into(), "9".into())])],
        secret: None,
    }
}

fn secured() -> ServerInfo {
    ServerInfo {
        secret: Some(std::sync::Arc::new(
            crate::auth::Secret::new("0123456789abcdef").unwrap(),
        )),
        ..info()
    }
}

#[test]
fn auth_admits_privileged_commands_only_with_the_secret() {
    let info = secured();
    let secret = info.secret.clone();
    let mut c = ConnState::default();
    let say = |c: &mut ConnState, parts: &[&str]| {
        let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        let cmd = Command::from_frame(Frame::command(owned)).expect("parses");
        answer(&cmd, c, &info).expect("housekeeping").0
    };
    assert!(!allowed(b"NODE.LEAD", &c, secret.as_deref()));
    assert!(allowed(b"SELECT", &c, secret.as_deref()));
    let Frame::Error(e) = say(&mut c, &["AUTH", "admin", "wrong-wrong-wrong"]) else {
        panic!()
    };
    assert!(e.starts_with("WRONGPASS"), "{e}");
    assert!(!allowed(b"TABLE.PUSH", &c, secret.as_deref()));
    assert_eq!(say(&mut c, &["AUTH", "0123456789abcdef"]), Frame::ok());
    assert!(allowed(b"TABLE.PUSH", &c, secret.as_deref()));
    // RESET forgets it, as in Redis.
    say(&mut c, &["RESET"]);
    assert!(!allowed(b"TABLE.PUSH", &c, secret.as_deref()));
    // HELLO ... AUTH: a wrong secret refuses the HELLO too; the right one answers it.
    let Frame::Error(e) = say(
        &mut c,
        &["HELLO", "3", "AUTH", "admin", "nope-nope-nope-nope"],
    ) else {
        panic!()
    };
    assert!(e.starts_with("WRONGPASS"), "{e}");
    assert!(matches!(
        say(&mut c, &["HELLO", "3", "AUTH", "admin", "0123456789abcdef"]),
        Frame::Map(_)
    ));
    assert!(allowed(b"NODE.FOLLOW", &c, secret.as_deref()));
    // A server without a secret lets everything through, and says so on AUTH.
    let open = ConnState::default();
    assert!(allowed(b"NODE.LEAD", &open, None));
}

fn ask(conn: &mut ConnState, parts: &[&str]) -> (Frame, Effect) {
    let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
    let cmd = Command::from_frame(Frame::command(owned)).expect("parses");
    answer(&cmd, conn, &info()).expect("housekeeping")
}

fn map_get<'a>(f: &'a Frame, key: &str) -> &'a Frame {
    let Frame::Map(pairs) = f else {
        panic!("not a map: {f:?}")
    };
    &pairs
        .iter()
        .find(|(k, _)| k.as_bytes() == Some(key.as_bytes()))
        .unwrap_or_else(|| panic!("no {key} in {f:?}"))
        .1
}

#[test]
fn hello_switches_protocol_and_describes_the_server() {
    let mut c = ConnState {
        id: 7,
        ..Default::default()
    };
    let (reply, effect) = ask(&mut c, &["HELLO", "3", "SETNAME", "app"]);
    assert_eq!(effect.protocol, Some(Protocol::Resp3));
    assert_eq!(map_get(&reply, "proto"), &Frame::Integer(3));
    assert_eq!(map_get(&reply, "id"), &Frame::Integer(7));
    assert_eq!(map_get(&reply, "server"), &Frame::bulk("cleave-router"));
    assert_eq!(map_get(&reply, "modules"), &Frame::Array(vec![]));
    assert_eq!(c.name.as_deref(), Some("app"));
    let (reply, effect) = ask(&mut c, &["HELLO"]);
    assert_eq!(
        effect.protocol,
        Some(Protocol::Resp3),
        "HELLO alone keeps it"
    );
    assert_eq!(map_get(&reply, "proto"), &Frame::Integer(3));
    let (_, effect) = ask(&mut c, &["HELLO", "2"]);
    assert_eq!(effect.protocol, Some(Protocol::Resp2));
    for v in ["1", "4", "0"] {
        let (reply, effect) = ask(&mut c, &["HELLO", v]);
        assert!(
            matches!(&reply, Frame::Error(e) if e.starts_with("NOPROTO")),
            "{reply:?}"
        );
        assert_eq!(
            effect,
            Effect::default(),
            "an unknown version changes nothing"
        );
    }
    assert_eq!(c.protocol, Protocol::Resp2);
}

#[test]
fn client_subcommands_keep_connection_state() {
    let mut c = ConnState {
        id: 3,
        addr: "1.2.3.4:5".into(),
        ..Default::default()
    };
    assert_eq!(ask(&mut c, &["CLIENT", "GETNAME"]).0, Frame::Null);
    assert_eq!(ask(&mut c, &["CLIENT", "SETNAME", "w1"]).0, Frame::ok());
    assert_eq!(ask(&mut c, &["CLIENT", "GETNAME"]).0, Frame::bulk("w1"));
    ask(&mut c, &["CLIENT", "SETINFO", "lib-name", "redis-py"]);
    ask(&mut c, &["CLIENT", "SETINFO", "LIB-VER", "8.0"]);
    assert_eq!(ask(&mut c, &["CLIENT", "ID"]).0, Frame::Integer(3));
    let Frame::Bulk(text) = ask(&mut c, &["CLIENT", "INFO"]).0 else {
        panic!()
    };
    let text = String::from_utf8_lossy(&text).to_string();
    assert!(text.contains("id=3 addr=1.2.3.4:5 name=w1 resp=2 lib-name=redis-py lib-ver=8.0"));
    assert_eq!(ask(&mut c, &["CLIENT", "NO-EVICT", "on"]).0, Frame::ok());
    assert_eq!(ask(&mut c, &["CLIENT", "NO-TOUCH", "off"]).0, Frame::ok());
    let (reply, effect) = ask(&mut c, &["RESET"]);
    assert_eq!(reply, Frame::Simple("RESET".into()));
    assert_eq!(effect.protocol, Some(Protocol::Resp2));
    assert_eq!(c.name, None);
    assert_eq!(c.id, 3, "RESET keeps the id");
}

#[test]
fn info_is_redis_text_by_section() {
    let mut c = ConnState::default();
    let Frame::Bulk(all) = ask(&mut c, &["INFO"]).0 else {
        panic!()
    };
    let all = String::from_utf8_lossy(&all).to_string();
    for line in [
        "# Server\r\n",
        "redis_version:",
        "cleave_server:cleave-router",
        "connected_clients:2",
        "loading:0",
        "role:master",
        "# Stats\r\ntotal_commands:9",
        "# Keyspace",
    ] {
        assert!(all.contains(line), "{line} in {all}");
    }
    let Frame::Bulk(one) = ask(&mut c, &["INFO", "Clients"]).0 else {
        panic!()
    };
    assert_eq!(&one[..], b"# Clients\r\nconnected_clients:2\r\n\r\n");
    let Frame::Bulk(none) = ask(&mut c, &["INFO", "nosuch"]).0 else {
        panic!()
    };
    assert!(none.is_empty());
}

#[test]
fn command_describes_keys() {
    let mut c = ConnState::default();
    let count = commands::count() as i64;
    assert_eq!(ask(&mut c, &["COMMAND", "COUNT"]).0, Frame::Integer(count));
    let Frame::Array(all) = ask(&mut c, &["COMMAND"]).0 else {
        panic!()
    };
    assert_eq!(all.len() as i64, count);
    let Frame::Array(info) = ask(&mut c, &["COMMAND", "INFO", "DEL", "nosuch"]).0 else {
        panic!()
    };
    let Frame::Array(del) = &info[0] else {
        panic!()
    };
    assert_eq!(del[0], Frame::bulk("del"));
    assert_eq!(&del[1..2], &[Frame::Integer(-2)]);
    assert_eq!(
        &del[3..6],
        &[Frame::Integer(1), Frame::Integer(-1), Frame::Integer(1)]
    );
    assert_eq!(info[1], Frame::Null);
    let docs = ask(&mut c, &["COMMAND", "DOCS", "get"]).0;
    assert_eq!(
        map_get(map_get(&docs, "get"), "group"),
        &Frame::bulk("string")
    );
    let Frame::Map(every) = ask(&mut c, &["COMMAND", "DOCS"]).0 else {
        panic!()
    };
    assert_eq!(every.len() as i64, count);
    for name in crate::command::KNOWN {
        let internal = name.contains('.') || ["REQ", "MUX"].contains(name);
        assert_eq!(
            commands::describes(name),
            !internal,
            "{name} described iff a client command"
        );
    }
}

#[test]
fn the_rest_of_the_housekeeping() {
    let mut c = ConnState::default();
    assert_eq!(ask(&mut c, &["ECHO", "hi"]).0, Frame::bulk("hi"));
    assert_eq!(ask(&mut c, &["PING"]).0, Frame::Simple("PONG".into()));
    assert_eq!(
        ask(&mut c, &["CONFIG", "GET", "save"]).0,
        Frame::Map(vec![])
    );
    let (reply, effect) = ask(&mut c, &["QUIT"]);
    assert_eq!(reply, Frame::ok());
    assert!(effect.close);
    assert!(matches!(ask(&mut c, &["DBSIZE"]).0, Frame::Error(e) if e.contains("LIST")));
    let get = Command::from_frame(Frame::command(["GET", "/a"])).unwrap();
    assert!(answer(&get, &mut c, &info()).is_none());
}
