//! The router's front door: handshakes, pipelining, bad input, and redis-cli compatibility.

mod common;

use cleave_proto::frame::Limits;
use cleave_proto::{Connection, Frame};
use common::{bounded, client, leader_like, single_cluster, Router, Stub};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn raw(addr: &str) -> Connection {
    Connection::new(TcpStream::connect(addr).await.unwrap())
}

async fn ask(conn: &mut Connection, parts: &[&str]) -> Frame {
    conn.send(&Frame::command(parts.iter().map(|s| s.to_string())))
        .await
        .unwrap();
    read(conn, &format!("the reply to {parts:?}")).await
}

/// The next frame, within the tests' timeout; a close is a failure.
async fn read(conn: &mut Connection, what: &str) -> Frame {
    bounded(what, conn.read_frame())
        .await
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .unwrap_or_else(|| panic!("{what}: connection closed"))
}

async fn still_serving(addr: &str) {
    client(addr).await.ping().await.unwrap();
}

#[tokio::test]
async fn handshake_commands_satisfy_redis_tools() {
    let router = Router::start(None, 1000).await;
    let mut c = raw(&router.addr).await;
    assert_eq!(ask(&mut c, &["PING"]).await, Frame::Simple("PONG".into()));
    assert_eq!(ask(&mut c, &["ping", "hi"]).await, Frame::bulk("hi"));
    let Frame::Array(hello) = ask(&mut c, &["HELLO"]).await else {
        panic!("HELLO must answer an array")
    };
    assert_eq!(hello[0], Frame::bulk("server"));
    assert_eq!(hello[1], Frame::bulk("cleave-router"));
    assert!(hello.contains(&Frame::bulk("id")));
    assert!(hello.contains(&Frame::Integer(2)));
    assert_eq!(hello.len(), 14);
    assert!(matches!(
        ask(&mut c, &["HELLO", "2"]).await,
        Frame::Array(_)
    ));
    for v in ["1", "4"] {
        assert_eq!(
            ask(&mut c, &["HELLO", v]).await,
            Frame::Error("NOPROTO unsupported protocol version (2 or 3)".into())
        );
    }
    let Frame::Array(docs) = ask(&mut c, &["COMMAND", "DOCS"]).await else {
        panic!("COMMAND DOCS in RESP2 is a flat array")
    };
    assert!(docs.contains(&Frame::bulk("select")));
    assert_eq!(
        ask(&mut c, &["CONFIG", "GET", "save"]).await,
        Frame::Array(vec![])
    );
    assert_eq!(ask(&mut c, &["ECHO", "e"]).await, Frame::bulk("e"));
    // RESP3 from the HELLO 3 reply on: maps and `_` nulls.
    let Frame::Map(hello) = ask(&mut c, &["HELLO", "3"]).await else {
        panic!("HELLO 3 answers a RESP3 map")
    };
    assert!(hello.contains(&(Frame::bulk("proto"), Frame::Integer(3))));
    assert_eq!(ask(&mut c, &["CLIENT", "GETNAME"]).await, Frame::Null);
    assert!(matches!(
        ask(&mut c, &["COMMAND", "DOCS", "get"]).await,
        Frame::Map(_)
    ));
    assert!(matches!(
        ask(&mut c, &["HELLO", "3", "AUTH", "u", "p"]).await,
        Frame::Error(e) if e.contains("without any password configured")
    ));
    assert_eq!(ask(&mut c, &["RESET"]).await, Frame::Simple("RESET".into()));
    assert!(matches!(ask(&mut c, &["HELLO"]).await, Frame::Array(_)));
    assert_eq!(ask(&mut c, &["QUIT"]).await, Frame::ok());
    assert_eq!(
        c.read_frame().await.unwrap(),
        None,
        "QUIT closes the connection"
    );
    still_serving(&router.addr).await;
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let a = Stub::start(leader_like).await;
    let b = Stub::start(leader_like).await;
    let table = single_cluster(1, &[&a.addr, &b.addr], Some(&a.addr));
    let router = Router::start(Some(&table), 2000).await;
    let mut c = raw(&router.addr).await;
    let n = 300;
    for i in 0..n {
        let frame = match i % 3 {
            0 => Frame::command(["INSERT".to_string(), format!("/r{i}/f"), "x".repeat(i)]),
            1 => Frame::command(["SELECT".to_string(), format!("/r{i}/f")]),
            _ => Frame::command(["PING".to_string(), format!("p{i}")]),
        };
        c.write_frame(&frame).await.unwrap();
    }
    c.flush().await.unwrap();
    for i in 0..n {
        let want = match i % 3 {
            0 => Frame::Integer(i as i64),
            1 => Frame::bulk(format!("contents of /r{i}/f")),
            _ => Frame::bulk(format!("p{i}")),
        };
        assert_eq!(read(&mut c, &format!("reply {i}")).await, want, "reply {i}");
    }
}

#[tokio::test]
async fn bad_requests_get_errors_and_the_connection_goes_on() {
    let router = Router::start(Some(&single_cluster(1, &["127.0.0.1:1"], None)), 100).await;
    let mut c = raw(&router.addr).await;
    let Frame::Error(e) = ask(&mut c, &["FLUSHALL"]).await else {
        panic!()
    };
    assert!(e.starts_with("ERR unknown command 'FLUSHALL'"), "{e}");
    let Frame::Error(e) = ask(&mut c, &["SELECT", "relative/path"]).await else {
        panic!()
    };
    assert!(e.starts_with("BADPATH "), "{e}");
    let Frame::Error(e) = ask(&mut c, &["SELECT", "/a/../b"]).await else {
        panic!()
    };
    assert!(e.starts_with("BADPATH "), "{e}");
    let Frame::Error(e) = ask(&mut c, &["INSERT", "/a"]).await else {
        panic!()
    };
    assert!(e.contains("missing argument data"), "{e}");
    let Frame::Error(e) = ask(&mut c, &["NODE.STATUS"]).await else {
        panic!()
    };
    assert_eq!(e, "ERR NODE.STATUS is not a router command");
    let Frame::Error(e) = ask(&mut c, &["TABLE.PUSH", "{\"epoch\": 9, \"ranges\": []}"]).await
    else {
        panic!()
    };
    assert!(e.starts_with("ERR invalid range table"), "{e}");
    let overlap = single_cluster(9, &["127.0.0.1:1"], None);
    let mut overlap_json = serde_json::to_value(&overlap).unwrap();
    overlap_json["ranges"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"start": 5, "end": 10, "cluster": "fc"}));
    let Frame::Error(e) = ask(&mut c, &["TABLE.PUSH", &overlap_json.to_string()]).await else {
        panic!()
    };
    assert!(e.contains("overlap"), "{e}");
    assert_eq!(ask(&mut c, &["PING"]).await, Frame::Simple("PONG".into()));
    let table = client(&router.addr).await.table().await.unwrap();
    assert_eq!(table.epoch, 1, "refused tables change nothing");
}

#[tokio::test]
async fn malformed_frames_close_only_that_connection() {
    let router = Router::start(None, 100).await;
    let inputs: [&[u8]; 4] = [
        b"*1\r\n$x\r\n",
        b"GET foo\r\n",
        b"*2\r\n$6\r\nINSERT\r\n$3\r\nabcXY",
        b"*3\r\n$6\r\nINSERT\r\n$2\r\n/a\r\n$999999999\r\n",
    ];
    for input in inputs {
        let mut s = TcpStream::connect(&router.addr).await.unwrap();
        s.write_all(input).await.unwrap();
        let mut c = Connection::with_stream(s, Limits::default());
        let Frame::Error(e) = read(&mut c, "the protocol error").await else {
            panic!("expected an error for {input:?}")
        };
        assert!(e.starts_with("ERR Protocol error: "), "{e}");
        let after = bounded("the close after a protocol error", c.read_frame()).await;
        assert!(after.unwrap().is_none(), "then closed");
        still_serving(&router.addr).await;
    }
}

#[tokio::test]
async fn an_oversized_bulk_is_refused_without_reading_it() {
    let router = Router::start(None, 100).await;
    let mut s = TcpStream::connect(&router.addr).await.unwrap();
    let header = format!(
        "*3\r\n$6\r\nINSERT\r\n$2\r\n/a\r\n${}\r\n",
        cleave_proto::frame::DEFAULT_MAX_BULK + 1
    );
    s.write_all(header.as_bytes()).await.unwrap();
    let mut c = Connection::with_stream(s, Limits::default());
    let Frame::Error(e) = read(&mut c, "the refusal of an oversized bulk").await else {
        panic!()
    };
    assert!(e.contains("exceeds the limit"), "{e}");
    still_serving(&router.addr).await;
}

#[tokio::test]
async fn redis_cli_can_talk_to_the_router() {
    assert!(
        std::process::Command::new("redis-cli")
            .arg("--version")
            .output()
            .is_ok(),
        "redis-cli is not installed: run `make deps` (make test does)"
    );
    let node = Stub::start(leader_like).await;
    let router = Router::start(Some(&single_cluster(1, &[&node.addr], None)), 1000).await;
    let port = router.addr.rsplit(':').next().unwrap().to_string();
    let run = |args: Vec<String>| {
        let what = format!("redis-cli {}", args.join(" "));
        let cli = tokio::task::spawn_blocking(move || {
            let out = std::process::Command::new("redis-cli")
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        });
        async move { bounded(&what, cli).await }
    };
    let base = vec!["-h".to_string(), "127.0.0.1".into(), "-p".into(), port];
    let mut ping = base.clone();
    ping.push("PING".into());
    assert_eq!(run(ping).await.unwrap(), "PONG");
    let mut insert = base.clone();
    insert.extend(["INSERT".into(), "/photos/cat".into(), "meow".into()]);
    assert_eq!(run(insert).await.unwrap(), "4");
    let mut select = base;
    select.extend(["SELECT".into(), "/photos/cat".into()]);
    assert_eq!(run(select).await.unwrap(), "contents of /photos/cat");
}

/// Pins that a range table with a field the router does not know (a typo such as `leadr`, or a
/// field of a newer format) is refused with an error naming the field, whether it comes from
/// the table file at start (the router does not start on a table it would misread) or from a
/// `TABLE.PUSH` (the served table is unchanged), instead of the field being silently ignored.
#[tokio::test]
async fn a_table_with_unknown_fields_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "a cluster's field",
            "epoch: 3\nranges:\n- {start: 0, end: 4294967295, cluster: fc}\n\
             clusters:\n  fc:\n    nodes: ['127.0.0.1:1']\n    leadr: '127.0.0.1:1'\n",
            "leadr",
        ),
        (
            "a top-level field",
            "epoch: 3\nepochs: 4\nranges:\n- {start: 0, end: 4294967295, cluster: fc}\n\
             clusters:\n  fc:\n    nodes: ['127.0.0.1:1']\n",
            "epochs",
        ),
        (
            "a range's field",
            "epoch: 3\nranges:\n- {start: 0, end: 4294967295, cluster: fc, owner: fc}\n\
             clusters:\n  fc:\n    nodes: ['127.0.0.1:1']\n",
            "owner",
        ),
    ];
    for (what, yaml, field) in cases {
        let file = dir.path().join("table.yaml");
        std::fs::write(&file, yaml).unwrap();
        let e = cleave_router::table::Tables::load(Some(file.clone()))
            .err()
            .unwrap_or_else(|| panic!("{what}: a table file with `{field}` was accepted"))
            .to_string();
        assert!(
            e.contains(&file.display().to_string())
                && e.contains(&format!("unknown field `{field}`")),
            "{what}: {e}"
        );
    }

    let router = Router::start(Some(&single_cluster(1, &["127.0.0.1:1"], None)), 100).await;
    let mut c = raw(&router.addr).await;
    let mut pushed = serde_json::to_value(single_cluster(2, &["127.0.0.1:1"], None)).unwrap();
    pushed["clusters"]["fc"]["leadr"] = "127.0.0.1:1".into();
    let Frame::Error(e) = ask(&mut c, &["TABLE.PUSH", &pushed.to_string()]).await else {
        panic!("a pushed table with `leadr` was accepted")
    };
    assert!(
        e.starts_with("ERR invalid range table") && e.contains("unknown field `leadr`"),
        "{e}"
    );
    let table = client(&router.addr).await.table().await.unwrap();
    assert_eq!(table.epoch, 1, "the refused table changed nothing");
}
