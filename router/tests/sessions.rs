//! Order and exactly-once through the router, against stub nodes that implement the session
//! rule of `REQ session seq <write>` over a map: a seq already applied is answered with its
//! first outcome, the next seq is applied, a later one is refused (`-TRYAGAIN out of order`)
//! without applying. The stubs can drop a connection after applying, answer `TRYAGAIN`, delay,
//! or hand leadership to another stub sharing their state (a failover with replicated sessions).

mod common;

use bytes::{Bytes, BytesMut};
use cleave_proto::frame::Limits;
use cleave_proto::hash::hash_root;
use cleave_proto::range::{ClusterMembers, HashRange};
use cleave_proto::{Command, Connection, Frame, RangeTable};
use common::Router;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{join, sink, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The longest a test waits for one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// What a stub does with the n-th write request (1-based) it receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    /// Answer `-TRYAGAIN` without applying.
    TryAgain,
    /// Apply, then close the connection without answering.
    DropAfterApply,
    /// Apply, close the connection without answering, and make `to` (an index into the
    /// cluster's stubs) the leader: the others answer `-NOTLEADER addr` from then on.
    FailOverAfterApply(usize),
    /// Answer after a pause.
    Delay(Duration),
}

type Faults = Arc<dyn Fn(usize) -> Fault + Send + Sync>;

#[derive(Default)]
struct Session {
    last: u64,
    /// The outcomes of the last 256 seqs.
    results: VecDeque<(u64, Frame)>,
}

/// The state of one cluster, shared by its stubs (replicated, as the node replicates sessions).
#[derive(Default)]
struct State {
    files: HashMap<String, Bytes>,
    sessions: BTreeMap<String, Session>,
    seq: i64,
    /// Writes applied.
    applied: usize,
    /// Write requests received (tagged or not).
    writes: usize,
    /// Writes that came without a session tag.
    untagged: usize,
    /// Connections whose first request was not `MUX`.
    without_mux: usize,
    /// Per session, the highest seq whose reply was sent.
    replied: HashMap<String, u64>,
    /// The most writes of one session the router had sent beyond the last reply the stub gave.
    max_ahead: u64,
    /// Every session id a write came with.
    seen: std::collections::BTreeSet<String>,
    /// Which stub leads (index into `addrs`).
    leader: usize,
    addrs: Vec<String>,
}

impl State {
    fn apply(&mut self, cmd: &Command) -> Frame {
        self.applied += 1;
        let path = cmd.path().map(|p| p.to_string()).unwrap_or_default();
        match cmd {
            Command::Put(p) => {
                self.files.insert(path, p.data.clone());
            }
            Command::Delete(_) => {
                if self.files.remove(&path).is_none() {
                    return Frame::Error("NOTFOUND no such file".into());
                }
            }
            _ => return Frame::Error("ERR stub does not do that".into()),
        }
        self.seq += 1;
        Frame::Integer(self.seq)
    }

    /// The session rule.
    fn request(&mut self, session: &str, seq: u64, cmd: &Command) -> Frame {
        let s = self.sessions.entry(session.to_string()).or_default();
        if seq <= s.last {
            return match s.results.iter().find(|(n, _)| *n == seq) {
                Some((_, f)) => f.clone(),
                None => Frame::Error("ERR seq forgotten".into()),
            };
        }
        if seq > s.last + 1 {
            return Frame::Error(format!("TRYAGAIN out of order: {seq} after {}", s.last));
        }
        let reply = self.apply(cmd);
        let s = self.sessions.get_mut(session).expect("session");
        s.last = seq;
        s.results.push_back((seq, reply.clone()));
        if s.results.len() > 256 {
            s.results.pop_front();
        }
        reply
    }

    fn read(&self, cmd: &Command) -> Frame {
        let path = cmd.path().map(|p| p.to_string()).unwrap_or_default();
        match self.files.get(&path) {
            Some(data) => Frame::Bulk(data.clone()),
            None => Frame::Error("NOTFOUND no such file".into()),
        }
    }
}

/// The stubs of one cluster.
struct Cluster {
    state: Arc<Mutex<State>>,
    addrs: Vec<String>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Cluster {
    async fn start(nodes: usize, faults: impl Fn(usize) -> Fault + Send + Sync + 'static) -> Self {
        let faults: Faults = Arc::new(faults);
        let state = Arc::new(Mutex::new(State::default()));
        let mut listeners = Vec::new();
        for _ in 0..nodes {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        state.lock().unwrap().addrs = addrs.clone();
        let mut tasks = Vec::new();
        for (me, listener) in listeners.into_iter().enumerate() {
            let (state, faults) = (state.clone(), faults.clone());
            tasks.push(tokio::spawn(async move {
                while let Ok((socket, _)) = listener.accept().await {
                    tokio::spawn(serve(me, socket, state.clone(), faults.clone()));
                }
            }));
        }
        Cluster {
            state,
            addrs,
            tasks,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn members(&self) -> ClusterMembers {
        ClusterMembers {
            nodes: self.addrs.clone(),
            leader: Some(self.addrs[0].clone()),
        }
    }
}

async fn serve(me: usize, socket: TcpStream, state: Arc<Mutex<State>>, faults: Faults) {
    socket.set_nodelay(true).unwrap();
    let (read, mut write) = socket.into_split();
    // Requests are taken off the socket as they arrive (so the stub sees how far ahead the
    // router pipelines) and processed one by one, in order.
    let (tx, mut requests) = mpsc::unbounded_channel();
    let reader_state = state.clone();
    let reader = tokio::spawn(async move {
        let mut conn = Connection::with_stream(join(read, sink()), Limits::default());
        while let Ok(Some(frame)) = conn.read_frame().await {
            if let Ok(Command::Req { session, seq, .. }) = Command::from_frame(frame.clone()) {
                let mut st = reader_state.lock().unwrap();
                let replied = st.replied.get(&session).copied().unwrap_or(0);
                st.max_ahead = st.max_ahead.max(seq.saturating_sub(replied));
            }
            if tx.send(frame).is_err() {
                return;
            }
        }
    });
    let _stop_reader = AbortOnDrop(reader);
    let mut first = true;
    while let Some(frame) = requests.recv().await {
        let cmd = match Command::from_frame(frame) {
            Ok(c) => c,
            Err(r) => {
                let _ = send(&mut write, &r.to_frame()).await;
                continue;
            }
        };
        if std::mem::take(&mut first) && cmd != Command::Mux {
            state.lock().unwrap().without_mux += 1;
        }
        let mut fault = Fault::None;
        let mut replied = None;
        let reply = {
            let mut st = state.lock().unwrap();
            let leader = st.leader;
            match &cmd {
                Command::Mux => Frame::ok(),
                c if c.is_write() && leader != me => {
                    st.writes += 1;
                    Frame::Error(format!("NOTLEADER {}", st.addrs[leader]))
                }
                Command::Req { session, seq, cmd } => {
                    st.writes += 1;
                    st.seen.insert(session.clone());
                    fault = faults(st.writes);
                    if fault == Fault::TryAgain {
                        Frame::Error("TRYAGAIN injected".into())
                    } else {
                        replied = Some((session.clone(), *seq));
                        st.request(session, *seq, cmd)
                    }
                }
                c if c.is_write() => {
                    st.writes += 1;
                    st.untagged += 1;
                    st.apply(c)
                }
                c => st.read(c),
            }
        };
        match fault {
            Fault::DropAfterApply => return,
            Fault::FailOverAfterApply(to) => {
                state.lock().unwrap().leader = to;
                return;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            Fault::None | Fault::TryAgain => {}
        }
        if let Some((session, seq)) = replied {
            let mut st = state.lock().unwrap();
            let r = st.replied.entry(session).or_default();
            *r = (*r).max(seq);
        }
        if send(&mut write, &reply).await.is_err() {
            return;
        }
    }
}

async fn send(write: &mut OwnedWriteHalf, frame: &Frame) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    frame.encode(&mut buf);
    write.write_all(&buf).await
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn table(clusters: &[(&str, &Cluster)]) -> RangeTable {
    let n = clusters.len() as u64;
    let width = (u32::MAX as u64 + 1) / n;
    let mut t = RangeTable {
        epoch: 1,
        ranges: vec![],
        clusters: Default::default(),
    };
    for (i, (name, c)) in clusters.iter().enumerate() {
        let start = i as u64 * width;
        let end = if i as u64 == n - 1 {
            u32::MAX as u64
        } else {
            start + width - 1
        };
        t.ranges.push(HashRange {
            start: start as u32,
            end: end as u32,
            cluster: name.to_string(),
        });
        t.clusters.insert(name.to_string(), c.members());
    }
    t.validate().unwrap();
    t
}

fn cmd(parts: &[&str]) -> Frame {
    Frame::command(parts.iter().map(|s| s.to_string()))
}

/// Send `requests` pipelined on one connection and read every reply (each within a timeout).
async fn pipeline(router: &Router, requests: &[Frame]) -> Vec<Frame> {
    let mut c = Connection::new(TcpStream::connect(&router.addr).await.unwrap());
    for r in requests {
        c.write_frame(r).await.unwrap();
    }
    c.flush().await.unwrap();
    let mut replies = Vec::with_capacity(requests.len());
    for i in 0..requests.len() {
        let reply = tokio::time::timeout(REPLY_TIMEOUT, c.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no reply to request {i} within {REPLY_TIMEOUT:?}"))
            .unwrap()
            .unwrap();
        replies.push(reply);
    }
    replies
}

/// `INSERT p a`, `DELETE p`, `INSERT p b` for `triples` triples over `paths` paths (roots from
/// `roots`), with the final content each path must have.
fn triples(triples: usize, roots: &[String]) -> (Vec<Frame>, HashMap<String, Bytes>) {
    let mut reqs = Vec::new();
    let mut want = HashMap::new();
    for i in 0..triples {
        let path = format!("/{}/f", roots[i % roots.len()]);
        let (a, b) = (format!("a{i}"), format!("b{i}"));
        reqs.push(cmd(&["INSERT", &path, &a]));
        reqs.push(cmd(&["DELETE", &path]));
        reqs.push(cmd(&["INSERT", &path, &b]));
        want.insert(path, Bytes::from(b));
    }
    (reqs, want)
}

fn roots(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("p{i}")).collect()
}

/// Every reply is a seq, and seqs grow in request order: the writes took effect in the order
/// they were sent, each once.
fn assert_applied_in_order(replies: &[Frame]) {
    let mut last = 0;
    for (i, r) in replies.iter().enumerate() {
        let Frame::Integer(seq) = r else {
            panic!("request {i}: expected a seq, got {r:?}");
        };
        assert!(
            *seq > last,
            "request {i}: seq {seq} after {last}: reordered"
        );
        last = *seq;
    }
}

#[tokio::test]
async fn pipelined_insert_delete_insert_over_50_paths_keep_their_order() {
    let cluster = Cluster::start(2, |_| Fault::None).await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let (reqs, want) = triples(2000, &roots(50));
    let replies = pipeline(&router, &reqs).await;
    assert_applied_in_order(&replies);
    let st = cluster.state();
    assert_eq!(st.files, want, "every path ends with its last INSERT");
    assert_eq!(st.applied, 6000, "each write applied once");
    assert_eq!(st.untagged, 0, "every write carries its session");
    assert_eq!(st.without_mux, 0, "pooled connections announce MUX");
    assert_eq!(
        st.sessions.len(),
        1,
        "one connection, one cluster: one session"
    );
    assert!(st.sessions.keys().all(|s| s.ends_with(".fc")));
    assert!(
        st.max_ahead > 1 && st.max_ahead <= 256,
        "writes are pipelined, never more than 256 ahead: {}",
        st.max_ahead
    );
}

#[tokio::test]
async fn a_write_whose_reply_was_lost_is_retried_and_applied_once() {
    // The 5th write (the DELETE of the second triple) is applied, then its connection drops.
    let cluster = Cluster::start(1, |n| {
        if n == 5 {
            Fault::DropAfterApply
        } else {
            Fault::None
        }
    })
    .await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let (reqs, want) = triples(30, &roots(5));
    let replies = pipeline(&router, &reqs).await;
    assert_applied_in_order(&replies);
    let st = cluster.state();
    assert_eq!(st.files, want);
    assert_eq!(st.applied, 90, "the lost DELETE was not applied again");
    assert!(st.writes > 90, "the lost write was retried");
}

#[tokio::test]
async fn a_retry_at_a_new_leader_gets_the_first_outcome() {
    // The 2nd write (a DELETE) is applied at the leader, which then loses its connection and
    // its leadership; the retry goes to the new leader, which has the replicated session.
    let cluster = Cluster::start(2, |n| {
        if n == 2 {
            Fault::FailOverAfterApply(1)
        } else {
            Fault::None
        }
    })
    .await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let (reqs, want) = triples(20, &roots(3));
    let replies = pipeline(&router, &reqs).await;
    assert_applied_in_order(&replies);
    let st = cluster.state();
    assert_eq!(st.files, want);
    assert_eq!(st.applied, 60);
    assert_eq!(st.leader, 1);
}

#[tokio::test]
async fn order_survives_tryagain_in_the_middle_of_a_pipeline() {
    // Writes 100 and 101 and 350 are refused with TRYAGAIN; the first 300 writes are slow, so the
    // pipeline behind them is deep when it happens.
    let cluster = Cluster::start(1, |n| match n {
        100 | 101 | 350 => Fault::TryAgain,
        n if n < 300 && n % 10 == 0 => Fault::Delay(Duration::from_millis(2)),
        _ => Fault::None,
    })
    .await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let (reqs, want) = triples(400, &roots(50));
    let replies = pipeline(&router, &reqs).await;
    assert_applied_in_order(&replies);
    let st = cluster.state();
    assert_eq!(st.files, want);
    assert_eq!(st.applied, 1200);
    assert!(st.writes > 1200 + 3, "refused writes were sent again");
}

/// `n` roots whose hash falls in the lower (`low`) or upper half.
fn roots_in_half(n: usize, low: bool) -> Vec<String> {
    (0..)
        .map(|i| format!("r{i}"))
        .filter(|r| (hash_root(r) <= u32::MAX / 2) == low)
        .take(n)
        .collect()
}

#[tokio::test]
async fn writes_to_two_clusters_on_one_connection() {
    let one = Cluster::start(1, |n| {
        if n % 7 == 0 {
            Fault::Delay(Duration::from_millis(1))
        } else {
            Fault::None
        }
    })
    .await;
    let two = Cluster::start(1, |_| Fault::None).await;
    let router = Router::start(Some(&table(&[("one", &one), ("two", &two)])), 5000).await;
    let (low, high) = (roots_in_half(10, true), roots_in_half(10, false));
    let (reqs_one, want_one) = triples(300, &low);
    let (reqs_two, want_two) = triples(300, &high);
    // Runs of 3, 1, 2 and 5 requests alternate between the clusters.
    let mut reqs = Vec::new();
    let (mut a, mut b) = (reqs_one.into_iter(), reqs_two.into_iter());
    for run in [3, 1, 2, 5].iter().cycle().take(400) {
        reqs.extend(a.by_ref().take(*run));
        reqs.extend(b.by_ref().take(*run));
    }
    reqs.extend(a);
    reqs.extend(b);
    let replies = pipeline(&router, &reqs).await;
    assert!(
        replies.iter().all(|r| matches!(r, Frame::Integer(_))),
        "every write succeeded"
    );
    for (c, want, name) in [(&one, want_one, "one"), (&two, want_two, "two")] {
        let st = c.state();
        assert_eq!(st.files, want, "cluster {name}");
        assert_eq!(st.applied, 900, "cluster {name}");
        assert_eq!(st.sessions.len(), 1);
        let (session, s) = st.sessions.iter().next().unwrap();
        assert!(session.ends_with(&format!(".{name}")), "{session}");
        assert_eq!(s.last, 900, "one session, seqs 1..=900");
    }
    let prefix = |c: &Cluster| {
        let st = c.state();
        let s = st.sessions.keys().next().unwrap().clone();
        s[..s.rfind('.').unwrap()].to_string()
    };
    assert_eq!(prefix(&one), prefix(&two), "one connection, one prefix");
}

#[tokio::test]
async fn a_read_after_a_write_on_one_pipelined_connection_sees_it() {
    // Writes are slow, reads go to either stub: a read that overtook its write would see the
    // previous value.
    let cluster = Cluster::start(2, |n| {
        if n % 3 == 0 {
            Fault::Delay(Duration::from_millis(1))
        } else {
            Fault::None
        }
    })
    .await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let mut reqs = Vec::new();
    for i in 0..300 {
        reqs.push(cmd(&["INSERT", "/r/f", &format!("v{i}")]));
        reqs.push(cmd(&["SELECT", "/r/f"]));
        reqs.push(cmd(&["SELECT", "/r/f"]));
    }
    let replies = pipeline(&router, &reqs).await;
    for (i, r) in replies.chunks(3).enumerate() {
        assert!(matches!(r[0], Frame::Integer(_)), "{:?}", r[0]);
        assert_eq!(r[1], Frame::bulk(format!("v{i}")), "read {i} saw its write");
        assert_eq!(r[2], Frame::bulk(format!("v{i}")));
    }
}

#[tokio::test]
async fn a_session_that_gave_up_is_replaced_and_later_writes_apply() {
    // Every write is refused for a while: the router gives up on the first (and the writes
    // behind it, which the node would refuse as out of order), then starts a new session.
    let cluster = Cluster::start(1, |n| {
        if n <= 40 {
            Fault::TryAgain
        } else {
            Fault::None
        }
    })
    .await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 300).await;
    let mut c = Connection::new(TcpStream::connect(&router.addr).await.unwrap());
    let mut refused = 0;
    loop {
        c.send(&cmd(&["INSERT", "/g/f", "x"])).await.unwrap();
        let reply = tokio::time::timeout(REPLY_TIMEOUT, c.read_frame())
            .await
            .expect("reply in time")
            .unwrap()
            .unwrap();
        match reply {
            Frame::Error(e) if e.starts_with("TRYAGAIN") => refused += 1,
            Frame::Integer(_) => break,
            other => panic!("unexpected {other:?}"),
        }
        assert!(refused < 100, "never recovered");
    }
    assert!(refused >= 1);
    let st = cluster.state();
    assert_eq!(st.applied, 1);
    assert_eq!(
        st.seen.len(),
        refused + 1,
        "a new session after each give-up"
    );
    assert_eq!(st.files.get("/g/f"), Some(&Bytes::from("x")));
}

#[tokio::test]
async fn clients_cannot_tag_writes_themselves() {
    let cluster = Cluster::start(1, |_| Fault::None).await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 1000).await;
    let replies = pipeline(
        &router,
        &[
            cmd(&["REQ", "mine", "1", "INSERT", "/a/f", "x"]),
            cmd(&["MUX"]),
            cmd(&["INSERT", "/a/f", "y"]),
        ],
    )
    .await;
    assert!(matches!(&replies[0], Frame::Error(e) if e.starts_with("ERR")));
    assert!(matches!(&replies[1], Frame::Error(e) if e.starts_with("ERR")));
    assert_eq!(replies[2], Frame::Integer(1));
    assert_eq!(cluster.state().applied, 1);
}

/// Throughput through the router with `redis-benchmark` (50 connections, no pipelining), against
/// a stub: `cargo test -p cleave-router --release --test sessions throughput -- --ignored
/// --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn throughput() {
    let cluster = Cluster::start(1, |_| Fault::None).await;
    let router = Router::start(Some(&table(&[("fc", &cluster)])), 5000).await;
    let port = router.addr.rsplit(':').next().unwrap().to_string();
    for args in [
        &["INSERT", "/b/__rand_int__", "xxxxxxxxxxxxxxxx"][..],
        &["SELECT", "/b/__rand_int__"][..],
        &["INSERT", "/b/__rand_int__", "xxxxxxxxxxxxxxxx"][..],
        &["SELECT", "/b/__rand_int__"][..],
    ] {
        let out = tokio::process::Command::new("redis-benchmark")
            .args(["-p", &port, "-c", "50", "-n", "100000", "-r", "1000", "-q"])
            .args(args)
            .output()
            .await
            .expect("redis-benchmark");
        let text = String::from_utf8_lossy(&out.stdout);
        println!(
            "{}: {}",
            args[0],
            text.trim().rsplit('\r').next().unwrap_or("")
        );
    }
}

/// Redis's `SET` and `DEL` are translated into `INSERT` / `DELETE` before they are queued, so
/// they take the same session, order and exactly-once retries: a `DEL` of keys on two clusters
/// is one `DELETE` per key, each in its cluster's session, and a reply lost after applying is
/// retried without applying twice.
#[tokio::test]
async fn redis_set_and_del_ride_the_sessions_and_their_exactly_once_retries() {
    let one = Cluster::start(1, |n| {
        if n == 4 {
            Fault::DropAfterApply
        } else {
            Fault::None
        }
    })
    .await;
    let two = Cluster::start(1, |_| Fault::None).await;
    let router = Router::start(Some(&table(&[("one", &one), ("two", &two)])), 5000).await;
    let (low, high) = (roots_in_half(5, true), roots_in_half(5, false));
    let never = format!("/{}/never", low[0]);
    let (mut reqs, mut want) = (Vec::new(), HashMap::new());
    for i in 0..30 {
        let (a, b) = (format!("/{}/f", low[i % 5]), format!("/{}/f", high[i % 5]));
        let z = format!("z{i}");
        reqs.push(cmd(&["SET", &a, &format!("x{i}")]));
        reqs.push(cmd(&["SET", &b, &format!("y{i}")]));
        reqs.push(cmd(&["DEL", &a, &b, &never]));
        reqs.push(cmd(&["SET", &a, &z]));
        want.insert(a, Bytes::from(z));
    }
    let replies = pipeline(&router, &reqs).await;
    for (i, group) in replies.chunks(4).enumerate() {
        assert_eq!(
            group,
            &[Frame::ok(), Frame::ok(), Frame::Integer(2), Frame::ok()],
            "round {i}"
        );
    }
    let (st1, st2) = (one.state(), two.state());
    assert_eq!(st1.files, want);
    assert!(st2.files.is_empty(), "every key of cluster two was deleted");
    assert_eq!(
        st1.applied, 120,
        "SET, DELETE, DELETE (absent), SET per round, once each"
    );
    assert_eq!(st2.applied, 60, "SET, DELETE per round, once each");
    assert!(
        st1.writes > 120,
        "the write whose reply was lost was retried"
    );
    assert_eq!(
        st1.untagged + st2.untagged,
        0,
        "every write carries its session"
    );
    assert_eq!((st1.sessions.len(), st2.sessions.len()), (1, 1));
}
