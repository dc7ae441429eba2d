//! A concurrent random workload that records a [`History`]: N clients (tokio tasks) doing
//! `INSERT` / `DELETE` / `SELECT` on a small shared set of paths spread over several roots,
//! every request bounded by a timeout, every outcome classified for the checker.
//!
//! ```no_run
//! # async fn demo(addr: String) {
//! use cleave_e2e::workload::Workload;
//! let w = Workload::new(vec![addr.clone()]);
//! let load = tokio::spawn(async move { w.run().await });
//! // ... inject faults, heal ...
//! # }
//! ```

use crate::history::{Clock, History, Kind, Op, Outcome, Summary, Violation};
use bytes::Bytes;
use cleave_proto::{Client, Error, ErrorCode, Selected};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Duration;

/// What to run. Build with [`Workload::new`] and adjust the public fields.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Concurrent clients.
    pub clients: usize,
    /// Where writes go (routers, or a cluster's leader). Each client starts at a different one
    /// and moves to the next when its connection fails.
    pub write_addrs: Vec<String>,
    /// Where reads go; empty means `write_addrs`.
    pub read_addrs: Vec<String>,
    /// How long each client keeps issuing operations.
    pub duration: Duration,
    /// Stop a client after this many operations, if set.
    pub max_ops_per_client: Option<usize>,
    /// Root names are `{prefix}{i}`; values start with the prefix too.
    pub prefix: String,
    /// Roots (the paths spread over clusters by their root's hash).
    pub roots: usize,
    /// Files per root.
    pub files_per_root: usize,
    /// Fraction of operations that are reads.
    pub read_ratio: f64,
    /// Fraction of writes that are deletes.
    pub delete_ratio: f64,
    /// Bytes per inserted value (at least the unique tag's length).
    pub value_size: usize,
    /// Per-request timeout (connecting included): nothing hangs longer.
    pub timeout: Duration,
    /// Pause after an error before the next operation of that client.
    pub error_backoff: Duration,
    /// Seed of the clients' random choices.
    pub seed: u64,
    /// The clock of the recorded history (shared by [`Workload::final_reads`]).
    pub clock: Clock,
}

impl Workload {
    /// Defaults: 4 clients, 10 s, 4 roots × 4 files, half reads, a fifth of writes deletes,
    /// 32-byte values, 5 s timeout.
    pub fn new(addrs: Vec<String>) -> Workload {
        Workload {
            clients: 4,
            write_addrs: addrs,
            read_addrs: vec![],
            duration: Duration::from_secs(10),
            max_ops_per_client: None,
            prefix: "h".into(),
            roots: 4,
            files_per_root: 4,
            read_ratio: 0.5,
            delete_ratio: 0.2,
            value_size: 32,
            timeout: Duration::from_secs(5),
            error_backoff: Duration::from_millis(20),
            seed: 7,
            clock: Clock::new(),
        }
    }

    /// Every path the workload touches.
    pub fn paths(&self) -> Vec<String> {
        (0..self.roots)
            .flat_map(|r| {
                (0..self.files_per_root).map(move |f| format!("/{}{r}/f{f}", self.prefix))
            })
            .collect()
    }

    /// Run every client to the end and return the merged history.
    pub async fn run(&self) -> History {
        self.run_tagged(0).await
    }

    /// [`Workload::run`] with client ids starting at `first_client`: two workloads sharing a
    /// prefix (and a history) must use disjoint ids so that their values stay unique.
    pub async fn run_tagged(&self, first_client: u32) -> History {
        assert!(!self.write_addrs.is_empty(), "no address to write to");
        let paths = self.paths();
        let tasks: Vec<_> = (0..self.clients)
            .map(|i| {
                let w = self.clone();
                let paths = paths.clone();
                tokio::spawn(async move { w.client(first_client + i as u32, paths).await })
            })
            .collect();
        let mut history = History::new();
        for t in tasks {
            for op in t.await.expect("workload client panicked") {
                history.push(op);
            }
        }
        history
    }

    /// One client's loop.
    async fn client(&self, id: u32, paths: Vec<String>) -> Vec<Op> {
        let mut rng = StdRng::seed_from_u64(self.seed.wrapping_mul(1_000_003) ^ u64::from(id));
        let read_addrs = if self.read_addrs.is_empty() {
            &self.write_addrs
        } else {
            &self.read_addrs
        };
        let mut writer = Conn::new(&self.write_addrs, id as usize);
        let mut reader = Conn::new(read_addrs, id as usize);
        let mut ops = Vec::new();
        let mut counter = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed() < self.duration
            && self.max_ops_per_client.is_none_or(|max| ops.len() < max)
        {
            let path = &paths[rng.random_range(0..paths.len())];
            let op = if rng.random_bool(self.read_ratio) {
                let Some(c) = reader.get(self.timeout).await else {
                    tokio::time::sleep(self.error_backoff).await;
                    continue;
                };
                let addr = c.addr().to_string();
                let invoke = self.clock.now();
                let res = tokio::time::timeout(self.timeout, c.select(path)).await;
                let complete = self.clock.now();
                let outcome = match res {
                    Ok(Ok(Selected::File(b))) => Outcome::Read(Some(b)),
                    // Paths are files: a directory is an anomaly, recorded as a value no
                    // write produced so the checker reports it.
                    Ok(Ok(Selected::Dir(entries))) => {
                        Outcome::Read(Some(format!("<directory {entries:?}>").into()))
                    }
                    Ok(Err(e)) if e.code() == Some(ErrorCode::NotFound) => Outcome::Read(None),
                    Ok(Err(e)) => {
                        reader.reset();
                        Outcome::Fail(e.to_string())
                    }
                    Err(_) => {
                        reader.reset();
                        Outcome::Fail("timed out".into())
                    }
                };
                Op::new(id, path, Kind::Select, invoke, complete, outcome).at(&addr)
            } else {
                let Some(c) = writer.get(self.timeout).await else {
                    tokio::time::sleep(self.error_backoff).await;
                    continue;
                };
                let delete = rng.random_bool(self.delete_ratio);
                let kind = if delete {
                    Kind::Delete
                } else {
                    counter += 1;
                    let mut v = format!("{}c{id}-{counter}-", self.prefix).into_bytes();
                    v.resize(v.len().max(self.value_size), b'x');
                    Kind::Insert(Bytes::from(v))
                };
                let invoke = self.clock.now();
                let res = match &kind {
                    Kind::Insert(v) => {
                        tokio::time::timeout(self.timeout, c.insert(path, v.clone())).await
                    }
                    _ => tokio::time::timeout(self.timeout, c.delete(path)).await,
                };
                let complete = self.clock.now();
                let outcome = match res {
                    Ok(Ok(seq)) => Outcome::Written(seq),
                    Ok(Err(e)) => classify_write_error(&e),
                    Err(_) => Outcome::Unknown("timed out".into()),
                };
                let op = Op::new(id, path, kind, invoke, complete, outcome).at(writer.addr());
                if matches!(op.outcome, Outcome::Unknown(_)) {
                    writer.reset();
                }
                op
            };
            let failed = matches!(op.outcome, Outcome::Fail(_) | Outcome::Unknown(_));
            ops.push(op);
            if failed {
                tokio::time::sleep(self.error_backoff).await;
            }
        }
        ops
    }

    /// Read every path once through `addr` (retrying errors for up to 30 s) and append the
    /// reads to `history` as final reads. Call after the system healed and the load stopped.
    pub async fn final_reads(&self, history: &mut History, addr: &str) {
        for path in self.paths() {
            let op = final_read(&self.clock, addr, &path, self.timeout).await;
            history.push(op);
        }
    }

    /// Run, take final reads through `final_addr`, check; see [`assert_history`].
    pub async fn run_and_check(&self, final_addr: &str, min_acked: usize) -> History {
        let mut history = self.run().await;
        self.final_reads(&mut history, final_addr).await;
        assert_history(&history, min_acked);
        history
    }
}

/// One final read of `path`, retried on errors for up to 30 s.
pub async fn final_read(clock: &Clock, addr: &str, path: &str, timeout: Duration) -> Op {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let invoke = clock.now();
        let attempt = tokio::time::timeout(timeout, async {
            let mut c = Client::connect(addr).await?;
            c.select(path).await
        })
        .await;
        let complete = clock.now();
        let value = match attempt {
            Ok(Ok(Selected::File(b))) => Ok(Some(b)),
            Ok(Ok(Selected::Dir(entries))) => Ok(Some(format!("<directory {entries:?}>").into())),
            Ok(Err(e)) if e.code() == Some(ErrorCode::NotFound) => Ok(None),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("timed out".to_string()),
        };
        match value {
            Ok(v) => {
                return Op::new(
                    u32::MAX,
                    path,
                    Kind::Select,
                    invoke,
                    complete,
                    Outcome::Read(v),
                )
                .final_read()
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "final read of {path} through {addr} still fails after 30 s: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// How a write's error counts: `Fail` only when the write was refused before it could apply
/// (`NOTFOUND`, `EXISTS`, `BADPATH`, `TOOLARGE`); everything else — timeouts, transport errors,
/// `TRYAGAIN`, `NOTLEADER`, `STALE`, `MOVED`, `READONLY` (a router may have retried an attempt that
/// applied) and `ERR` (an internal failure may come after the write applied) — is `Unknown`.
pub fn classify_write_error(e: &Error) -> Outcome {
    match e.code() {
        Some(
            ErrorCode::NotFound | ErrorCode::Exists | ErrorCode::BadPath | ErrorCode::TooLarge,
        ) => Outcome::Fail(e.to_string()),
        _ => Outcome::Unknown(e.to_string()),
    }
}

/// Check `history`; print its summary; panic listing every violation, or if fewer than
/// `min_acked` writes were acknowledged (a test that acknowledged nothing proves nothing).
pub fn assert_history(history: &History, min_acked: usize) -> Summary {
    let summary = history.summary();
    println!("history: {summary}");
    if let Err(violations) = history.check() {
        let mut by_check: std::collections::BTreeMap<_, Vec<&Violation>> = Default::default();
        for v in &violations {
            by_check.entry(v.check).or_default().push(v);
        }
        let mut text = String::new();
        for (check, vs) in &by_check {
            text.push_str(&format!(
                "{check:?}: {} violation(s), the first ones:\n",
                vs.len()
            ));
            for v in vs.iter().take(8) {
                text.push_str(&format!("  {v}\n"));
            }
        }
        panic!(
            "{} violation(s) in a history of {summary}:\n{text}",
            violations.len()
        );
    }
    assert!(
        summary.acked_writes >= min_acked,
        "only {} writes acknowledged, expected at least {min_acked}: {summary}",
        summary.acked_writes
    );
    summary
}

/// A client's connection to one of several addresses, moving on when it fails.
struct Conn<'a> {
    addrs: &'a [String],
    next: usize,
    client: Option<Client>,
}

impl<'a> Conn<'a> {
    fn new(addrs: &'a [String], start: usize) -> Conn<'a> {
        Conn {
            addrs,
            next: start % addrs.len().max(1),
            client: None,
        }
    }

    /// The connection, opening one if needed (bounded by `timeout`); `None` if that failed
    /// (the next attempt tries the next address).
    async fn get(&mut self, timeout: Duration) -> Option<&mut Client> {
        if self.client.is_none() {
            let addr = &self.addrs[self.next];
            match tokio::time::timeout(timeout, Client::connect(addr)).await {
                Ok(Ok(c)) => self.client = Some(c),
                _ => {
                    self.next = (self.next + 1) % self.addrs.len();
                    return None;
                }
            }
        }
        self.client.as_mut()
    }

    /// The address in use (or to be tried next).
    fn addr(&self) -> &str {
        &self.addrs[self.next]
    }

    /// Drop the connection (its state is unknown) and move to the next address.
    fn reset(&mut self) {
        self.client = None;
        self.next = (self.next + 1) % self.addrs.len();
    }
}
