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
