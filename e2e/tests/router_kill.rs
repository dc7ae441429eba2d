//! A router killed (`kill -9`) under concurrent load while every client holds both routers'
//! addresses (`cleave_proto::MultiClient`, as the CLI does): no client sees an error, and the
//! history check passes (no acknowledged write lost, no stale or phantom read).
//!
//! Each client writes only its own files (and reads everyone's): a write whose router died
//! after applying it is sent again through the other router under a new session and may apply
//! twice, which for the same `INSERT` of the same client, before that client's next write,
//! leaves the same state.

use bytes::Bytes;
use cleave_e2e::history::{Clock, Kind, Op, Outcome};
use cleave_e2e::workload::final_read;
use cleave_e2e::{assert_history, wait_until, ClusterOptions, History, System};
use cleave_proto::{ErrorCode, MultiClient, Selected};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

const CLIENTS: u32 = 4;
const ROOTS: u32 = 4;
const FILES: u32 = 2;
/// Bounds every request (a connection that stalls longer counts as broken and moves on).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

fn path(root: u32, client: u32, file: u32) -> String {
    format!("/rk{root}/c{client}f{file}")
}

fn all_paths() -> Vec<String> {
    (0..ROOTS)
        .flat_map(|r| (0..CLIENTS).flat_map(move |c| (0..FILES).map(move |f| path(r, c, f))))
        .collect()
}

struct Shared {
    clock: Clock,
    stop: AtomicBool,
    ops: AtomicUsize,
}

/// One client: writes its own files, reads anyone's, until told to stop. Returns its
/// operations and its errors.
async fn client(id: u32, addrs: Vec<String>, shared: Arc<Shared>) -> (Vec<Op>, Vec<String>) {
    let mut c = MultiClient::new(addrs)
        .starting_at(id as usize)
        .with_timeout(REQUEST_TIMEOUT);
    let paths = all_paths();
    let (mut ops, mut errors) = (Vec::new(), Vec::new());
    let mut n = 0u32;
    while !shared.stop.load(Ordering::SeqCst) {
        n += 1;
        let op = if n % 5 < 3 {
            let p = path(n % ROOTS, id, (n / ROOTS) % FILES);
            let value = Bytes::from(format!("rk-c{id}-{n}-{}", "x".repeat(24)));
            let invoke = shared.clock.now();
            let res = c.insert(&p, value.clone()).await;
            let complete = shared.clock.now();
            let outcome = match res {
                Ok(seq) => Outcome::Written(seq),
                Err(e) => {
                    errors.push(format!("INSERT {p} via {}: {e}", c.addr()));
                    Outcome::Unknown(e.to_string())
                }
            };
            Op::new(id, &p, Kind::Insert(value), invoke, complete, outcome).at(c.addr())
        } else {
            let p = &paths[(n as usize * 7 + id as usize) % paths.len()];
            let invoke = shared.clock.now();
            let res = c.select(p).await;
            let complete = shared.clock.now();
            let outcome = match res {
                Ok(Selected::File(b)) => Outcome::Read(Some(b)),
                Ok(Selected::Dir(d)) => Outcome::Read(Some(format!("<directory {d:?}>").into())),
                Err(e) if e.code() == Some(ErrorCode::NotFound) => Outcome::Read(None),
                Err(e) => {
                    errors.push(format!("SELECT {p} via {}: {e}", c.addr()));
                    Outcome::Fail(e.to_string())
                }
            };
            Op::new(id, p, Kind::Select, invoke, complete, outcome).at(c.addr())
        };
        ops.push(op);
        shared.ops.fetch_add(1, Ordering::SeqCst);
    }
    (ops, errors)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_under_load_costs_no_error_and_no_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut sys = System::start(dir.path(), ClusterOptions::default()).await;
    sys.add_router();
    let addrs = sys.router_addrs();
    assert_eq!(addrs.len(), 2);
    for a in &addrs {
        let a = a.clone();
        wait_until(
            Duration::from_secs(30),
            &format!("router {a} answers"),
            || {
                let a = a.clone();
                async move {
                    match cleave_proto::Client::connect_timeout(&a, Duration::from_secs(2)).await {
                        Ok(mut c) => c.ping().await.is_ok(),
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
    }
    let shared = Arc::new(Shared {
        clock: Clock::new(),
        stop: AtomicBool::new(false),
        ops: AtomicUsize::new(0),
    });
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|id| tokio::spawn(client(id, addrs.clone(), shared.clone())))
        .collect();
    let progress = |at_least: usize, what: &'static str| {
        let shared = shared.clone();
        async move {
            wait_until(Duration::from_secs(60), what, || {
                let n = shared.ops.load(Ordering::SeqCst);
                async move { n >= at_least }
            })
            .await
        }
    };
    progress(1000, "1000 operations before the kill").await;
    // Half the clients started on the first router: it dies with requests in flight.
    sys.router.proc.kill9();
    let before = shared.ops.load(Ordering::SeqCst);
    progress(before + 1000, "1000 more operations after the kill").await;
    shared.stop.store(true, Ordering::SeqCst);
    let mut history = History::new();
    let mut errors = Vec::new();
    for t in tasks {
        let (ops, errs) = t.await.expect("client panicked");
        for op in ops {
            history.push(op);
        }
        errors.extend(errs);
    }
    assert!(
        errors.is_empty(),
        "{} client error(s) although another router was up; the first: {:?}",
        errors.len(),
        &errors[..errors.len().min(8)]
    );
    let survivor = &addrs[1];
    for id in 0..CLIENTS {
        let last = history.ops().iter().rev().find(|o| o.client == id).unwrap();
        assert_eq!(
            &last.at, survivor,
            "client {id} moved to the surviving router"
        );
    }
    for p in all_paths() {
        history.push(final_read(&shared.clock, survivor, &p, REQUEST_TIMEOUT).await);
    }
    history.set_clusters(|p| sys.cluster_of(p));
    let summary = assert_history(&history, 200);
    println!("router kill: {summary}");
}
