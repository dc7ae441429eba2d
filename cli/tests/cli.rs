//! The `cleave` binary against a real router and an in-memory stub node: transfers small and
//! multipart, restart on a changed file, listings, and the exit statuses scripts rely on.

use cleave_proto::command::Stat;
use cleave_proto::range::{ClusterMembers, HashRange};
use cleave_proto::{Command, Connection, Frame, RangeTable};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpSocket};

/// How long one `cleave` run may take before the test fails (generous for a loaded machine).
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What the stub node stores: files (data, seq, type) and staged parts.
#[derive(Default)]
struct State {
    files: BTreeMap<String, (Vec<u8>, u64, String)>,
    parts: BTreeMap<(String, String, u32), Vec<u8>>,
    seq: u64,
    log: Vec<String>,
    /// Answer this many READs with -STALE (after replacing the file, as a writer would).
    stale_reads: usize,
}

fn err(s: &str) -> Frame {
    Frame::Error(s.into())
}

impl State {
    fn handle(&mut self, cmd: Command) -> Frame {
        // The router tags writes with their session and says MUX on connect (the stub applies
        // each write as the router sends it; it injects no failures that would need retries).
        let cmd = match cmd {
            Command::Mux => return Frame::ok(),
            Command::Req { cmd, .. } => *cmd,
            cmd => cmd,
        };
        let name = format!("{:?}", cmd.to_frame());
        self.log
            .push(name.split(',').next().unwrap_or_default().to_string());
        match cmd {
            Command::Put(p) => {
                self.seq += 1;
                let ty = p.content_type.unwrap_or_default();
                self.files
                    .insert(p.path.to_string(), (p.data.to_vec(), self.seq, ty));
                Frame::Integer(self.seq as i64)
            }
            Command::Part(p) => {
                self.seq += 1;
                let key = (p.path.to_string(), p.upload, p.index);
                self.parts.insert(key, p.data.to_vec());
                Frame::Integer(self.seq as i64)
            }
            Command::Commit(c) => {
                let mut data = vec![];
                for i in 0..c.parts {
                    let key = (c.path.to_string(), c.upload.clone(), i);
                    match self.parts.remove(&key) {
                        Some(p) => data.extend(p),
                        None => return err("NOTFOUND missing part"),
                    }
                }
                self.seq += 1;
                let ty = c.content_type.unwrap_or_default();
                self.files.insert(c.path.to_string(), (data, self.seq, ty));
                Frame::Integer(self.seq as i64)
            }
            Command::Abort(a) => {
                self.parts
                    .retain(|(p, u, _), _| !(*p == a.path.as_str() && *u == a.upload));
                Frame::Integer(self.seq as i64)
            }
            Command::Delete(p) => match self.files.remove(p.as_str()) {
                Some(_) => {
                    self.seq += 1;
                    Frame::Integer(self.seq as i64)
                }
                None => err("NOTFOUND no such file or directory"),
            },
            Command::Stat(p) => match self.files.get(p.as_str()) {
                Some((data, seq, ty)) => Stat {
                    kind: "file".into(),
                    size: data.len() as u64,
                    etag: "etag".into(),
                    content_type: ty.clone(),
                    modified_ms: 1_000,
                    seq: *seq,
                }
                .to_frame(),
                None if !self.entries(p.as_str()).is_empty() => Stat {
                    kind: "dir".into(),
                    ..Stat::default()
                }
                .to_frame(),
                None => err("NOTFOUND no such file or directory"),
            },
            Command::Select(p) => match self.files.get(p.as_str()) {
                Some((data, ..)) => Frame::bulk(data.clone()),
                None => err("NOTFOUND no such file or directory"),
            },
            Command::Read(r) => {
                let Some((data, seq, _)) = self.files.get(r.path.as_str()).cloned() else {
                    return err("NOTFOUND no such file or directory");
                };
                if self.stale_reads > 0 {
                    self.stale_reads -= 1;
                    self.seq += 1;
                    self.files.get_mut(r.path.as_str()).unwrap().1 = self.seq;
                    return err("STALE file changed");
                }
                if r.version.is_some_and(|v| v != seq) {
                    return err("STALE file changed");
                }
                let start = (r.offset as usize).min(data.len());
                let end = (start + r.length as usize).min(data.len());
                Frame::bulk(data[start..end].to_vec())
            }
            Command::List(l) => {
                let after = l.after.unwrap_or_default();
                let page: Vec<Frame> = self
                    .entries(l.path.as_str())
                    .into_iter()
                    .filter(|e| *e > after)
                    .take(l.limit as usize)
                    .map(Frame::bulk)
                    .collect();
                Frame::Array(page)
            }
            other => err(&format!("ERR stub cannot {other:?}")),
        }
    }

    fn entries(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.files
            .keys()
            .filter_map(|k| k.strip_prefix(&prefix))
            .map(|rest| match rest.split_once('/') {
                Some((d, _)) => format!("{d}/"),
                None => rest.to_string(),
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }
}

struct Env {
    router: String,
    state: Arc<Mutex<State>>,
    _stop: tokio::sync::oneshot::Sender<()>,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = listener.local_addr().unwrap().to_string();
    let state = Arc::new(Mutex::new(State::default()));
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let state = shared.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(socket);
                while let Ok(Some(frame)) = conn.read_frame().await {
                    let reply = match Command::from_frame(frame) {
                        Ok(cmd) => state.lock().unwrap().handle(cmd),
                        Err(r) => r.to_frame(),
                    };
                    if conn.send(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let mut table = RangeTable {
        epoch: 1,
        ranges: vec![HashRange {
            start: 0,
            end: u32::MAX,
            cluster: "fc".into(),
        }],
        clusters: Default::default(),
    };
    table.clusters.insert(
        "fc".into(),
        ClusterMembers {
            nodes: vec![node],
            leader: None,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let table_file = dir.path().join("table.yaml");
    std::fs::write(&table_file, serde_yaml::to_string(&table).unwrap()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let router = listener.local_addr().unwrap().to_string();
    let config = cleave_router::Config {
        listen: router.clone(),
        table: Some(table_file),
        retry: Duration::from_millis(500),
        admin_secret: None,
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(cleave_router::run(listener, config, async move {
        let _ = rx.await;
    }));
    Env {
        router,
        state,
        _stop: stop,
        dir,
    }
}

/// Run `cleave --router R args...` with `stdin` piped in; killed and failed after
/// [`RUN_LIMIT`]. A run that succeeds must have taken all of its stdin.
async fn cleave(router: &str, args: &[&str], stdin: Vec<u8>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cleave"));
    cmd.arg("--router").arg(router).args(args);
    cmd.env_remove("CLEAVE_ROUTER");
    run_cleave(cmd, args, stdin).await
}

/// Run `cleave args...` with `CLEAVE_ROUTER=routers` (no `--router`).
async fn cleave_env(routers: &str, args: &[&str], stdin: Vec<u8>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_cleave"));
    cmd.args(args).env("CLEAVE_ROUTER", routers);
    run_cleave(cmd, args, stdin).await
}

async fn run_cleave(mut cmd: std::process::Command, args: &[&str], stdin: Vec<u8>) -> Output {
    let what = format!("cleave {}", args.join(" "));
    tokio::task::spawn_blocking(move || {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        let stdin_len = stdin.len();
        let writer = std::thread::spawn(move || input.write_all(&stdin));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = vec![];
                pipe.read_to_end(&mut buf).map(|_| buf)
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if start.elapsed() > RUN_LIMIT {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {RUN_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let written = writer.join().unwrap();
        if status.success() && stdin_len > 0 {
            written.unwrap_or_else(|e| panic!("{what} succeeded without reading its stdin: {e}"));
        }
        Output {
            status,
            stdout: stdout.join().unwrap().unwrap(),
            stderr: stderr.join().unwrap().unwrap(),
        }
    })
    .await
    .unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_files_round_trip() {
    let e = env().await;
    let local = e.dir.path().join("hello.txt");
    std::fs::write(&local, b"hello cleave").unwrap();
    let local = local.to_str().unwrap();
    let out = cleave(
        &e.router,
        &["put", local, "/docs/hello.txt", "--type", "text/plain"],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(e
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .any(|l| l.contains("INSERT")));

    let out = cleave(&e.router, &["get", "/docs/hello.txt"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"hello cleave");

    let dest = e.dir.path().join("copy.txt");
    let out = cleave(
        &e.router,
        &["get", "/docs/hello.txt", dest.to_str().unwrap()],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), b"hello cleave");
    let out = cleave(
        &e.router,
        &["get", "/docs/hello.txt", e.dir.path().to_str().unwrap()],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read(e.dir.path().join("hello.txt")).unwrap(),
        b"hello cleave"
    );

    let out = cleave(&e.router, &["stat", "/docs/hello.txt", "--json"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["size"], 12);
    assert_eq!(v["type"], "text/plain");
    assert_eq!(v["kind"], "file");

    let out = cleave(
        &e.router,
        &["put", "-", "/docs/piped"],
        b"from stdin".to_vec(),
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave(&e.router, &["get", "/docs/piped", "-"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(out.stdout, b"from stdin");

    let out = cleave(&e.router, &["rm", "/docs/hello.txt"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave(&e.router, &["get", "/docs/hello.txt"], vec![]).await;
    assert_eq!(code(&out), 3, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("cleave: NOTFOUND"),
        "{}",
        stderr(&out)
    );
    let out = cleave(&e.router, &["rm", "/docs/hello.txt"], vec![]).await;
    assert_eq!(code(&out), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_files_go_in_parts_and_come_back_in_pieces() {
    let e = env().await;
    let data = pattern(20 * 1024 * 1024 + 123);
    let local = e.dir.path().join("big.bin");
    std::fs::write(&local, &data).unwrap();
    let out = cleave(
        &e.router,
        &["put", local.to_str().unwrap(), "/big/file"],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    {
        let st = e.state.lock().unwrap();
        let parts = st.log.iter().filter(|l| l.contains("PART")).count();
        assert_eq!(parts, 3, "{:?}", st.log);
        assert!(st.log.iter().any(|l| l.contains("COMMIT")));
        assert!(st.parts.is_empty());
    }
    let dest = e.dir.path().join("big.out");
    let out = cleave(
        &e.router,
        &["get", "/big/file", dest.to_str().unwrap()],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "downloaded bytes differ"
    );
    let reads = e
        .state
        .lock()
        .unwrap()
        .log
        .iter()
        .filter(|l| l.contains("READ"))
        .count();
    assert_eq!(reads, 3);

    // Stdin longer than one piece becomes a multipart upload too.
    let piped = pattern(9 * 1024 * 1024);
    let out = cleave(&e.router, &["put", "-", "/big/piped"], piped.clone()).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave(&e.router, &["get", "/big/piped"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(out.stdout == piped, "piped bytes differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_replaced_during_get_is_read_again_once() {
    let e = env().await;
    let data = pattern(9 * 1024 * 1024);
    let local = e.dir.path().join("big.bin");
    std::fs::write(&local, &data).unwrap();
    let out = cleave(
        &e.router,
        &["put", local.to_str().unwrap(), "/big/f"],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));

    e.state.lock().unwrap().stale_reads = 1;
    let dest = e.dir.path().join("out.bin");
    let out = cleave(
        &e.router,
        &["get", "/big/f", dest.to_str().unwrap()],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(std::fs::read(&dest).unwrap() == data);

    e.state.lock().unwrap().stale_reads = 2;
    let dest = e.dir.path().join("out2.bin");
    let out = cleave(
        &e.router,
        &["get", "/big/f", dest.to_str().unwrap()],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("changed while it was being read"),
        "{}",
        stderr(&out)
    );
    assert!(!dest.exists(), "no partial file is left");
    let leftovers = std::fs::read_dir(e.dir.path()).unwrap().count();
    assert_eq!(leftovers, 3, "table, big.bin, out.bin");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_pages_through_a_directory() {
    let e = env().await;
    for i in 0..25 {
        let out = cleave(&e.router, &["put", "-", &format!("/d/f{i:02}")], vec![b'x']).await;
        assert_eq!(code(&out), 0, "{}", stderr(&out));
    }
    let out = cleave(&e.router, &["put", "-", "/d/sub/inner"], vec![b'y']).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave(&e.router, &["ls", "/d", "--limit", "10"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 10);
    assert!(stderr(&out).contains("--all"));
    let out = cleave(&e.router, &["ls", "/d", "--limit", "10", "--all"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(names.len(), 26);
    assert_eq!(names[0], "f00");
    assert_eq!(names[25], "sub/");
    let out = cleave(&e.router, &["get", "/d"], vec![]).await;
    assert_eq!(code(&out), 4, "a directory is not a file: {}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_statuses_scripts_rely_on() {
    let e = env().await;
    let out = cleave(&e.router, &["get", "relative/path"], vec![]).await;
    assert_eq!(code(&out), 4);
    assert!(stderr(&out).starts_with("cleave: "), "{}", stderr(&out));
    let out = cleave(&e.router, &["stat", "/a/../b"], vec![]).await;
    assert_eq!(code(&out), 4);
    let out = cleave(&e.router, &["put", "/no/such/local/file", "/a/b"], vec![]).await;
    assert_eq!(code(&out), 4, "{}", stderr(&out));
    let out = cleave(&e.router, &["stat", "/nothing/here"], vec![]).await;
    assert_eq!(code(&out), 3);
    let out = cleave(&e.router, &["ls"], vec![]).await;
    assert_eq!(code(&out), 2);

    // A port that is bound (no other test can take it) but not listened on: refused.
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    let out = cleave(&nobody, &["stat", "/a/b"], vec![]).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("cleave: cannot reach the router"),
        "{}",
        stderr(&out)
    );
}

/// A router in front of `upstream` whose connections break: each forwards `serve` requests,
/// then forwards the next one too but closes without answering (a router killed after the
/// request took effect, before its reply).
async fn breaking_router(upstream: String, serve: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let mut conn = Connection::new(socket);
                let mut up = cleave_proto::Client::connect(&upstream).await.unwrap();
                for _ in 0..serve {
                    let Ok(Some(frame)) = conn.read_frame().await else {
                        return;
                    };
                    let reply = up.raw(&frame).await.unwrap();
                    if conn.send(&reply).await.is_err() {
                        return;
                    }
                }
                if let Ok(Some(frame)) = conn.read_frame().await {
                    let _ = up.raw(&frame).await;
                }
            });
        }
    });
    addr
}

/// A port that is bound (no other test can take it) but not listened on: refused.
fn refused_addr() -> (TcpSocket, String) {
    let closed = TcpSocket::new_v4().unwrap();
    closed.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = closed.local_addr().unwrap().to_string();
    (closed, addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_move_on_past_dead_and_breaking_routers() {
    let e = env().await;
    let (_hold, dead) = refused_addr();
    // Multipart upload: two PARTs through the breaking router, then it breaks mid-PART; the
    // rest (that PART again, and the COMMIT) goes to the real router.
    let breaking = breaking_router(e.router.clone(), 2).await;
    let routers = format!("{dead},{breaking},{}", e.router);
    let data = pattern(20 * 1024 * 1024 + 5);
    let local = e.dir.path().join("big.bin");
    std::fs::write(&local, &data).unwrap();
    let out = cleave(
        &routers,
        &["put", local.to_str().unwrap(), "/big/f"],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let stored = e.state.lock().unwrap().files["/big/f"].0.clone();
    assert!(stored == data, "the upload is whole");
    // Ranged download: STAT and the first READ through the breaking router, the next READs
    // through the real one.
    let dest = e.dir.path().join("out.bin");
    let out = cleave(&routers, &["get", "/big/f", dest.to_str().unwrap()], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(
        std::fs::read(&dest).unwrap() == data,
        "the download is whole"
    );
    // Small commands, the list from the environment; the first router dead.
    let two = format!("{dead},{}", e.router);
    let out = cleave_env(&two, &["put", "-", "/small/a"], b"abc".to_vec()).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave_env(&two, &["get", "/small/a"], vec![]).await;
    assert_eq!(
        (code(&out), &out.stdout[..]),
        (0, &b"abc"[..]),
        "{}",
        stderr(&out)
    );
    let out = cleave_env(&two, &["stat", "/small/a"], vec![]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave_env(&two, &["ls", "/small"], vec![]).await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a\n");
    // A DELETE applied, then its connection broke; sent again it finds nothing: done, not
    // "not found".
    let breaking0 = breaking_router(e.router.clone(), 0).await;
    let out = cleave(
        &format!("{breaking0},{}", e.router),
        &["rm", "/small/a"],
        vec![],
    )
    .await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = cleave_env(&two, &["rm", "/small/a"], vec![]).await;
    assert_eq!(code(&out), 3, "gone: {}", stderr(&out));

    // Every router dead: exit 5, naming them all.
    let (_hold2, dead2) = refused_addr();
    let out = cleave(&format!("{dead},{dead2}"), &["stat", "/a/b"], vec![]).await;
    assert_eq!(code(&out), 5, "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(&format!(
            "cleave: cannot reach the router at any of {dead}, {dead2}"
        )),
        "{}",
        stderr(&out)
    );
    // Bad lists are usage errors.
    for bad in ["", "h:1,,h:2", "nohost", "h:99999"] {
        let out = cleave_env(bad, &["stat", "/a/b"], vec![]).await;
        assert_eq!(code(&out), 2, "{bad:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("router address"),
            "{bad:?}: {}",
            stderr(&out)
        );
    }
}

const FC_A: &str = "# The first cluster.\napiVersion: cleave.dev/v1alpha1\nkind: FileCluster\nmetadata:\n  name: fc-a\nspec:\n  replicas: 3\n  minInSync: 1\n";

/// A local `.cleave/status.json` with cluster fc-a led by fc-a-0 (fc-a-2 the freshest
/// follower), and a manifests folder holding fc-a.
fn local_cleave(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let data = dir.join(".cleave");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(&manifests).unwrap();
    let n = |name: &str, role: &str, seq: u64| {
        serde_json::json!({"name": name, "role": role, "address": "", "redis": "", "pid": null,
                           "appliedSeq": seq, "inSync": true})
    };
    let status = serde_json::json!({
        "operatorPid": std::process::id(), "updatedAt": "2025-01-01T00:00:00Z",
        "data": data.display().to_string(), "epoch": 1, "ranges": [], "routers": [], "errors": [],
        "clusters": [{"name": "fc-a", "replicas": 3, "leader": "fc-a-0", "epoch": 2,
                      "conditions": [], "failovers": 1,
                      "lastFailover": {"at": "2025-01-01T00:00:00Z", "from": "fc-a-1", "to": "fc-a-0",
                                       "epoch": 2, "reason": "leader stopped answering", "durationMs": 1800},
                      "nodes": [n("fc-a-0", "leader", 10), n("fc-a-1", "follower", 9), n("fc-a-2", "follower", 10)]}]
    });
    std::fs::write(data.join("status.json"), status.to_string()).unwrap();
    std::fs::write(manifests.join("filecluster-a.yaml"), FC_A).unwrap();
    (data, manifests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchover_edits_the_local_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let (data, manifests) = local_cleave(dir.path());
    let (data, manifests) = (data.to_str().unwrap(), manifests.to_str().unwrap());
    let file = dir.path().join("manifests/filecluster-a.yaml");
    let sw = |extra: &[&str]| {
        let mut a = vec!["switchover", "--data", data, "--manifests", manifests];
        a.extend_from_slice(extra);
        a.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| async move {
        let refs: Vec<&str> = a.iter().map(String::as_str).collect();
        cleave("127.0.0.1:1", &refs, vec![]).await
    };
    // --dry-run prints the change and leaves the file alone; the default node is fc-a-2.
    let out = run(sw(&["fc-a", "--dry-run"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("  spec:\n+   leader: fc-a-2\n"), "{text}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), FC_A);
    // The edit.
    let out = run(sw(&["fc-a"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        FC_A.replace("spec:\n", "spec:\n  leader: fc-a-2\n")
    );
    let out = run(sw(&["fc-a", "fc-a-1"])).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        FC_A.replace("spec:\n", "spec:\n  leader: fc-a-1\n")
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("manifests"))
        .unwrap()
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary file left");
    // Bad requests: clear, non-zero, nothing changed.
    for (args, want) in [
        (sw(&["fc-z"]), "unknown FileCluster fc-z"),
        (sw(&["fc-a", "fc-a-7"]), "unknown node fc-a-7"),
        (sw(&["fc-a", "fc-a-0"]), "fc-a-0 already leads fc-a"),
    ] {
        let out = run(args).await;
        assert_eq!(code(&out), 4, "{}", stderr(&out));
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
    }
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("leader: fc-a-1"));
    // --wait is bounded and says why it gave up (no operator acts here).
    let out = run(sw(&["fc-a", "fc-a-2", "--wait", "--timeout", "1"])).await;
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("fc-a-2 does not lead fc-a after 1 s: leader fc-a-0, epoch 2"),
        "{}",
        stderr(&out)
    );
    // `cleave status` shows the last failover, and --json carries it.
    let out = run(vec!["status".into(), "--data".into(), data.into()]).await;
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(
            "last failover: fc-a-1 -> fc-a-0 at epoch 2 (leader stopped answering), took 1.8 s"
        ),
        "{text}"
    );
    let out = run(vec![
        "status".into(),
        "--data".into(),
        data.into(),
        "--json".into(),
    ])
    .await;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clusters"][0]["lastFailover"]["durationMs"], 1800);
    assert_eq!(v["clusters"][0]["failovers"], 1);
}
