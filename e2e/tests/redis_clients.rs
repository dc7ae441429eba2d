//! Real Redis clients, with their default settings, against a real router in front of two
//! real clusters: redis-py (RESP3, its default, and RESP2), ioredis, redis-rs (RESP2 and RESP3),
//! redis-cli (plain, `-3`, `--pipe`) and redis-benchmark on path keys. Each connects, writes,
//! reads, pipelines, moves a 5 MiB value and checks the reply types; bad input to every new
//! command gets a clear error while the router stays up. See docs/clients.md.

use cleave_e2e::clients::{self, need_redis_tools, run, run_ok};
use cleave_e2e::{Cluster, ClusterOptions, System};
use cleave_proto::{Connection, Frame};
use redis::AsyncCommands;
use std::path::Path;
use std::time::Duration;
use tokio::net::TcpStream;

/// Bound on each client program (the 5 MiB values included) on a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(180);
/// Bound on each redis-rs request.
const TIMEOUT: Duration = Duration::from_secs(60);

async fn system(dir: &Path) -> System {
    System::start(dir, ClusterOptions::default()).await
}

fn args(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_py_with_its_defaults_and_with_resp2() {
    let py = clients::python();
    let script = clients::scripts_dir().join("python/check_redis_py.py");
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    for (protocol, prefix) in [("default", "/py3"), ("2", "/py2")] {
        let a = args(&[script.to_str().unwrap(), &sys.router.addr, protocol, prefix]);
        let out = run_ok(&py, &a, None, LIMIT);
        assert_eq!(out.trim(), "ok", "redis-py protocol={protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ioredis_with_its_defaults() {
    let node = clients::node();
    let script = clients::scripts_dir().join("node/check_ioredis.js");
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    let a = args(&[script.to_str().unwrap(), &sys.router.addr, "/io"]);
    assert_eq!(run_ok(&node, &a, None, LIMIT).trim(), "ok");
}

/// redis-rs's multiplexed connection, in RESP2 (its default) and RESP3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rs_in_resp2_and_resp3() {
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    for (query, prefix, resp3) in [("", "/rs2", false), ("?protocol=resp3", "/rs3", true)] {
        let url = format!("redis://{}/{query}", sys.router.addr);
        let client = redis::Client::open(url.as_str()).unwrap();
        // redis-rs times a reply out after 500 ms by default: a 5 MiB SET, replicated before it
        // is acknowledged, can take longer than that on a loaded 2-core CI machine.
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(Some(TIMEOUT));
        let connect = client.get_multiplexed_async_connection_with_config(&config);
        let mut con = tokio::time::timeout(TIMEOUT, connect)
            .await
            .expect("connect in time")
            .unwrap_or_else(|e| panic!("redis-rs connect {url}: {e}"));
        let key = format!("{prefix}/k");
        let _: () = con.set(&key, "v").await.unwrap();
        let got: Option<String> = con.get(&key).await.unwrap();
        assert_eq!(got.as_deref(), Some("v"));
        let none: Option<String> = con.get(format!("{prefix}/none")).await.unwrap();
        assert_eq!(none, None);
        let stat: redis::Value = redis::cmd("STAT")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        match (&stat, resp3) {
            (redis::Value::Map(pairs), true) => assert_eq!(pairs.len(), 6),
            (redis::Value::Array(items), false) => assert_eq!(items.len(), 12),
            other => panic!("STAT as {other:?}"),
        }
        let mut pipe = redis::pipe();
        for i in 0..100 {
            pipe.set(format!("{prefix}/p{i}"), i).ignore();
        }
        for i in 0..100 {
            pipe.get(format!("{prefix}/p{i}"));
        }
        let values: Vec<i64> = pipe.query_async(&mut con).await.unwrap();
        assert_eq!(values, (0..100).collect::<Vec<i64>>());
        let big: Vec<u8> = (0..5 << 20).map(|i: u32| (i % 253) as u8).collect();
        let _: () = con.set(format!("{prefix}/big"), &big).await.unwrap();
        let back: Vec<u8> = con.get(format!("{prefix}/big")).await.unwrap();
        assert!(back == big, "5 MiB round trip");
        let n: i64 = con.strlen(format!("{prefix}/big")).await.unwrap();
        assert_eq!(n, 5 << 20);
        let deleted: i64 = con
            .del(&[
                format!("{prefix}/big"),
                key.clone(),
                format!("{prefix}/none"),
            ])
            .await
            .unwrap();
        assert_eq!(deleted, 2);
        let err = con.get::<_, Option<String>>("nopath").await.unwrap_err();
        assert!(err.to_string().contains("absolute paths"), "{err}");
        let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
        assert_eq!(pong, "PONG", "the connection survives bad input");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cli_plain_resp3_and_pipe() {
    need_redis_tools();
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    let port = sys.router.addr.rsplit(':').next().unwrap().to_string();
    let cli = Path::new("redis-cli");
    let ask = |extra: &[&str], cmd: &[&str]| {
        let mut a = args(&["-p", &port]);
        a.extend(args(extra));
        a.extend(args(cmd));
        run_ok(cli, &a, None, LIMIT).trim_end().to_string()
    };
    // Plain.
    assert_eq!(ask(&[], &["SET", "/cli/k", "hello"]), "OK");
    assert_eq!(ask(&[], &["GET", "/cli/k"]), "hello");
    assert_eq!(ask(&[], &["EXISTS", "/cli/k", "/cli/none"]), "1");
    assert_eq!(ask(&[], &["GETRANGE", "/cli/k", "-4", "-2"]), "ell");
    assert!(ask(&[], &["GET", "k"]).contains("absolute paths like /bucket/key"));
    assert!(ask(&[], &["INFO", "server"]).contains("cleave_server:cleave-router"));
    // RESP3: HELLO 3 at connect, maps and nulls in RESP3 form.
    let hello = ask(&["-3"], &["HELLO", "3"]);
    assert!(hello.contains("proto") && hello.contains('3'), "{hello}");
    let stat = ask(&["-3"], &["STAT", "/cli/k"]);
    assert!(stat.contains("kind") && stat.contains("file"), "{stat}");
    assert_eq!(ask(&["-3"], &["GET", "/cli/k"]), "hello");
    // --pipe: raw RESP on stdin, an ECHO appended by redis-cli to find the end.
    let mut input = Vec::new();
    for i in 0..1000 {
        let (k, v) = (format!("/pipe/k{i}"), format!("v{i}"));
        input.extend(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{k}\r\n${}\r\n{v}\r\n",
                k.len(),
                v.len()
            )
            .bytes(),
        );
    }
    let out = run_ok(cli, &args(&["-p", &port, "--pipe"]), Some(input), LIMIT);
    assert!(out.contains("errors: 0, replies: 1000"), "{out}");
    assert_eq!(ask(&[], &["GET", "/pipe/k999"]), "v999");
    // A 5 MiB value: -x takes the last argument from stdin.
    let big: Vec<u8> = (0..5u32 << 20).map(|i| b'a' + (i % 26) as u8).collect();
    let a = args(&["-p", &port, "-x", "SET", "/cli/big"]);
    assert_eq!(run_ok(cli, &a, Some(big.clone()), LIMIT).trim(), "OK");
    assert_eq!(ask(&[], &["STRLEN", "/cli/big"]), (5u32 << 20).to_string());
    let back = run(cli, &args(&["-p", &port, "GET", "/cli/big"]), None, LIMIT);
    assert!(back.stdout.starts_with(&big), "5 MiB through redis-cli");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_benchmark_set_and_get_on_path_keys() {
    need_redis_tools();
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    let port = sys.router.addr.rsplit(':').next().unwrap().to_string();
    let bench = Path::new("redis-benchmark");
    for cmd in [
        &["SET", "/bench/key:__rand_int__", "xxx"][..],
        &["GET", "/bench/key:__rand_int__"],
    ] {
        let mut a = args(&["-p", &port, "-c", "10", "-n", "2000", "-r", "50", "--csv"]);
        a.extend(args(cmd));
        let out = run_ok(bench, &a, None, LIMIT);
        assert!(
            out.contains("\"SET") || out.contains("\"GET"),
            "redis-benchmark {cmd:?}: {out}"
        );
    }
    // 2000 SETs over 50 keys: every key is there (chance of one missing < 50 x 0.98^2000).
    let cli = Path::new("redis-cli");
    let out = run_ok(
        cli,
        &args(&["-p", &port, "GET", "/bench/key:000000000049"]),
        None,
        LIMIT,
    );
    assert_eq!(out.trim(), "xxx");
}

/// One raw request and its reply, bounded.
async fn ask(conn: &mut Connection, parts: &[&str]) -> Frame {
    conn.send(&Frame::command(parts.iter().map(|s| s.to_string())))
        .await
        .unwrap();
    tokio::time::timeout(TIMEOUT, conn.read_frame())
        .await
        .unwrap_or_else(|_| panic!("no reply to {parts:?} within {TIMEOUT:?}"))
        .unwrap()
        .unwrap_or_else(|| panic!("connection closed after {parts:?}"))
}

fn is_err(f: &Frame, needle: &str) -> bool {
    matches!(f, Frame::Error(e) if e.contains(needle))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_verbs_span_clusters_and_bad_input_gets_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let sys = system(dir.path()).await;
    let mut c = Connection::new(TcpStream::connect(&sys.router.addr).await.unwrap());
    // Roots on both clusters: DEL / EXISTS of one call go to each owner.
    let roots: Vec<String> = (0..8).map(|i| format!("/root{i}/f")).collect();
    let owners: std::collections::BTreeSet<String> =
        roots.iter().map(|r| sys.cluster_of(r)).collect();
    assert_eq!(owners.len(), 2, "the roots cover both clusters");
    for r in &roots {
        assert_eq!(ask(&mut c, &["SET", r, "x"]).await, Frame::ok());
    }
    let mut exists = vec!["EXISTS"];
    exists.extend(roots.iter().map(String::as_str));
    assert_eq!(ask(&mut c, &exists).await, Frame::Integer(8));
    let mut del = vec!["DEL", "/root0/none"];
    del.extend(roots.iter().map(String::as_str));
    assert_eq!(ask(&mut c, &del).await, Frame::Integer(8));
    assert_eq!(ask(&mut c, &exists).await, Frame::Integer(0));
    // Directories are not keys.
    assert_eq!(ask(&mut c, &["SET", "/dir/a/b", "x"]).await, Frame::ok());
    assert!(is_err(&ask(&mut c, &["GET", "/dir/a"]).await, "WRONGTYPE"));
    assert_eq!(ask(&mut c, &["EXISTS", "/dir/a"]).await, Frame::Integer(0));
    // Arity, keys and options.
    for (req, needle) in [
        (&["GET"][..], "missing argument key"),
        (&["GET", "/a", "/b"], "extra"),
        (&["SET", "/a"], "missing argument value"),
        (&["SET", "a", "v"], "absolute paths like /bucket/key"),
        (&["SET", "/a", "v", "NX"], "not supported"),
        (&["DEL"], "missing argument key"),
        (&["DEL", "/ok", "bad"], "BADPATH"),
        (&["EXISTS", "/a/../b"], "BADPATH"),
        (&["STRLEN"], "missing"),
        (&["GETRANGE", "/a", "0"], "missing argument end"),
        (&["GETRANGE", "/a", "x", "1"], "integer"),
        (&["ECHO"], "missing"),
        (&["CLIENT"], "missing"),
        (&["CLIENT", "KILL"], "not supported"),
        (&["CLIENT", "SETNAME", "a b"], "spaces"),
        (&["CLIENT", "SETINFO", "LIB-X", "1"], "LIB-NAME"),
        (&["COMMAND", "GETKEYS", "GET", "/a"], "not supported"),
        (&["INFO", "\u{1}"], ""),
        (&["QUIT", "x"], "extra"),
        (&["RESET", "x"], "extra"),
        (&["DBSIZE"], "LIST"),
        (&["HELLO", "x"], "integer"),
        (&["HELLO", "4"], "NOPROTO"),
        (
            &["HELLO", "3", "AUTH", "default", "pw"],
            "without any password configured",
        ),
        (&["MULTI"], "unknown command"),
    ] {
        let reply = ask(&mut c, req).await;
        if needle.is_empty() {
            assert!(matches!(reply, Frame::Bulk(_)), "{req:?}: {reply:?}");
        } else {
            assert!(is_err(&reply, needle), "{req:?}: {reply:?}");
        }
    }
    // RESP3 edge cases: the protocol switches only on success; RESP3-typed requests are
    // refused; the decoder's bounds hold for maps.
    assert!(matches!(ask(&mut c, &["HELLO", "3"]).await, Frame::Map(_)));
    assert_eq!(ask(&mut c, &["GET", "/nothing/here"]).await, Frame::Null);
    for raw in [&b"%1\r\n$1\r\na\r\n$1\r\nb\r\n"[..], b"_\r\n"] {
        c.send_raw(raw).await.unwrap();
        let reply = tokio::time::timeout(TIMEOUT, c.read_frame())
            .await
            .unwrap()
            .unwrap();
        assert!(
            matches!(&reply, Some(Frame::Error(e)) if e.contains("array")),
            "{reply:?}"
        );
    }
    let mut hostile = Connection::new(TcpStream::connect(&sys.router.addr).await.unwrap());
    hostile.send_raw(b"%99999999999\r\n").await.unwrap();
    let reply = tokio::time::timeout(TIMEOUT, hostile.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(&reply, Some(Frame::Error(e)) if e.contains("Protocol error")),
        "{reply:?}"
    );
    assert_eq!(ask(&mut c, &["PING"]).await, Frame::Simple("PONG".into()));
}

/// A node answers the handshake like a router (RESP3 included), and Redis verbs with an error
/// naming the file commands they stand for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_speaks_resp3_and_housekeeping_too() {
    let c = Cluster::start(
        "resp3node",
        ClusterOptions {
            size: 1,
            min_in_sync: 0,
            ..Default::default()
        },
    )
    .await;
    let mut n = Connection::new(TcpStream::connect(&c.nodes[0].addr).await.unwrap());
    let Frame::Map(hello) = ask(&mut n, &["HELLO", "3", "SETNAME", "probe"]).await else {
        panic!("HELLO 3 answers a map")
    };
    assert!(hello.contains(&(Frame::bulk("server"), Frame::bulk("cleave-node"))));
    assert!(hello.contains(&(Frame::bulk("proto"), Frame::Integer(3))));
    assert_eq!(
        ask(&mut n, &["CLIENT", "GETNAME"]).await,
        Frame::bulk("probe")
    );
    assert!(matches!(
        ask(&mut n, &["INSERT", "/n/f", "abc"]).await,
        Frame::Integer(_)
    ));
    let Frame::Map(stat) = ask(&mut n, &["STAT", "/n/f"]).await else {
        panic!("STAT is a map in RESP3")
    };
    assert!(stat.contains(&(Frame::bulk("size"), Frame::Integer(3))));
    let Frame::Bulk(info) = ask(&mut n, &["INFO", "replication"]).await else {
        panic!("INFO is text")
    };
    assert!(String::from_utf8_lossy(&info).contains("role:"));
    assert!(is_err(
        &ask(&mut n, &["GET", "/n/f"]).await,
        "routers answer it"
    ));
    assert!(is_err(&ask(&mut n, &["HELLO", "7"]).await, "NOPROTO"));
    assert_eq!(ask(&mut n, &["ECHO", "x"]).await, Frame::bulk("x"));
    assert_eq!(ask(&mut n, &["QUIT"]).await, Frame::ok());
    let closed = tokio::time::timeout(TIMEOUT, n.read_frame())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(closed, None, "QUIT closes the connection");
}
