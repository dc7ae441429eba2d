//! A small Jepsen-style history checker: every file path is a register, and a recorded history
//! of concurrent `INSERT` / `DELETE` / `SELECT` operations is checked for anomalies that no
//! linearizable store could produce.
//!
//! # The model
//!
//! Every operation has an invocation time (just before the request was sent) and a completion
//! time (just after the reply arrived), both on one monotonic clock. Its outcome is
//!
//! - **Ok**: a write acknowledged with its seq, or a read that returned bytes or `NotFound`;
//! - **Fail**: definitely not applied (`-NOTFOUND` for a `DELETE` of a missing file,
//!   `-BADPATH`, ...); a failed read is ignored;
//! - **Unknown**: timeout, lost connection, `-TRYAGAIN`: it may take effect, or not, at any
//!   instant after its invocation, *even after we stopped waiting* (a router may still retry
//!   it), so its completion time counts as +∞.
//!
//! The contract being checked (brief §4: linearizable reads, exactly-once writes) means that
//! every Ok or Unknown operation takes effect atomically at one instant between its
//! invocation and its (effective) completion, or, for Unknown writes, never; Fail operations
//! never take effect. Every inserted value is unique (writer id + counter), so a read's value
//! names the write that produced it. Absence (`NotFound`) is the initial state of every path
//! (a pseudo-write completed at time 0) and the value written by any `DELETE`, so a read of
//! absence is explained by *any* of those; it is a violation only if none of them can explain
//! it.
//!
//! Write `W` is *definitely before* `W2` when `complete(W) < invoke(W2)`: then W's instant is
//! before W2's. Since values are unique, once an acknowledged W2 took effect after W, W's value
//! can only be seen again if W took effect twice.
//!
//! # The checks (each sound under the model: it can only fire on a real anomaly)
//!
//! - **Phantom read**: a read returned a value no write to that path produced, or the value
//!   of a write that definitely failed, or of a write invoked after the read completed. A
//!   value appears only when its write takes effect, which is after that write's invocation.
//! - **Stale read**: read R returned the value of W (or absence), and an acknowledged W2 to the
//!   same path has `complete(W) < invoke(W2)` and `complete(W2) < invoke(R)`. W2 took effect
//!   after W and before R, so R's instant follows W2's, and W's value was gone by then. For
//!   absence, every candidate (the initial state, every not-failed `DELETE` invoked before R
//!   completed) must be so overwritten.
//! - **Lost write**: the same rule applied to the *final reads*, taken after the system healed
//!   and every acknowledged write completed: the final value must come from a write that was
//!   not failed and not definitely overwritten by an acknowledged write — the last
//!   acknowledged write, or one concurrent with or later than it.
//! - **Non-monotonic read (double application, deposed leader)**: R1 completed before R2 was
//!   invoked (same path, any clients), R1 returned the value of W1, and R2 returned the value
//!   of W2 with `complete(W2) < invoke(W1)`: W1 took effect after W2 and before R1, hence
//!   before R2, so R2 saw a write undone or W2 applied again. For absence in R2 every
//!   candidate must be definitely before W1. This also catches anomalies whose writes were
//!   never acknowledged.
//! - **Seq sanity**: two acknowledged writes on the same cluster never share a seq (each state
//!   change gets the next seq), and if acknowledged W1 is definitely before acknowledged W2 on
//!   the same cluster, `seq(W1) < seq(W2)` (W2's seq is assigned by a leader that has W1:
//!   committed entries survive every role change).
//!
//! A read is reported at most once (phantom, then lost/stale, then non-monotonic). Malformed
//! input (a value inserted twice, an outcome of the wrong shape, completion before
//! invocation) is reported as such.

use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::Instant;

/// Nanoseconds on the history's monotonic clock.
pub type Time = u64;

/// A monotonic clock starting at 0, for recording.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose zero is now. Its first reading is at least 1, so every operation begins
    /// after the initial state (time 0).
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
        }
    }

    /// Nanoseconds since the start (at least 1).
    pub fn now(&self) -> Time {
        (self.start.elapsed().as_nanos() as Time).max(1)
    }
}

/// What an operation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `INSERT path value` (create or replace).
    Insert(Bytes),
    /// `DELETE path`.
    Delete,
    /// `SELECT path`.
    Select,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A write was acknowledged with this seq.
    Written(u64),
    /// A read returned the file's bytes, or `None` for `NotFound`.
    Read(Option<Bytes>),
    /// Definitely not applied (a failed read: ignored).
    Fail(String),
    /// A write that may or may not take effect.
    Unknown(String),
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    /// Which client issued it.
    pub client: u32,
    /// The file it is about.
    pub path: String,
    /// What it did.
    pub kind: Kind,
    /// When it was sent.
    pub invoke: Time,
    /// When its reply arrived (or we gave up).
    pub complete: Time,
    /// How it ended.
    pub outcome: Outcome,
    /// A read taken after the system healed and all writes stopped.
    pub final_read: bool,
    /// Where it was sent (for messages; may be empty).
    pub at: String,
}

impl Op {
    /// An operation.
    pub fn new(
        client: u32,
        path: &str,
        kind: Kind,
        invoke: Time,
        complete: Time,
        outcome: Outcome,
    ) -> Op {
        Op {
            client,
            path: path.to_string(),
            kind,
            invoke,
            complete,
            outcome,
            final_read: false,
            at: String::new(),
        }
    }

    /// Say where it was sent.
    pub fn at(mut self, addr: &str) -> Op {
        self.at = addr.to_string();
        self
    }

    /// Mark as a final read.
    pub fn final_read(mut self) -> Op {
        self.final_read = true;
        self
    }

    fn is_write(&self) -> bool {
        !matches!(self.kind, Kind::Select)
    }

    fn acked(&self) -> Option<u64> {
        match self.outcome {
            Outcome::Written(seq) if self.is_write() => Some(seq),
            _ => None,
        }
    }

    /// Completion for "definitely before": +∞ when the outcome is unknown.
    fn effective_complete(&self) -> Time {
        match self.outcome {
            Outcome::Unknown(_) => Time::MAX,
            _ => self.complete,
        }
    }
}

fn show_bytes(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    if s.chars().count() > 24 {
        format!("{:?}…", s.chars().take(24).collect::<String>())
    } else {
        format!("{s:?}")
    }
}

fn show_time(t: Time) -> String {
    if t == Time::MAX {
        "∞".into()
    } else {
        format!("{:.6}s", t as f64 / 1e9)
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{} ", self.client)?;
        if !self.at.is_empty() {
            write!(f, "@{} ", self.at)?;
        }
        match &self.kind {
            Kind::Insert(v) => write!(f, "INSERT {} {}", self.path, show_bytes(v))?,
            Kind::Delete => write!(f, "DELETE {}", self.path)?,
            Kind::Select if self.final_read => write!(f, "final SELECT {}", self.path)?,
            Kind::Select => write!(f, "SELECT {}", self.path)?,
        }
        write!(
            f,
            " [{} .. {}] -> ",
            show_time(self.invoke),
            show_time(self.complete)
        )?;
        match &self.outcome {
            Outcome::Written(seq) => write!(f, "ok seq {seq}"),
            Outcome::Read(Some(v)) => write!(f, "{}", show_bytes(v)),
            Outcome::Read(None) => write!(f, "NotFound"),
            Outcome::Fail(why) => write!(f, "fail ({why})"),
            Outcome::Unknown(why) => write!(f, "unknown ({why})"),
        }
    }
}

/// Which property a violation breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    /// A final read lost an acknowledged write.
    LostWrite,
    /// A read missed a write acknowledged before it began.
    StaleRead,
    /// A read returned a value that was never (or not yet, or unsuccessfully) written.
    PhantomRead,
    /// A later read saw an older value than an earlier read (a write undone or applied twice).
    NonMonotonic,
    /// Two acknowledged writes of one cluster share a seq.
    DuplicateSeq,
    /// An acknowledged write definitely after another has a lower seq.
    SeqOrder,
    /// The history itself is not well formed.
    Malformed,
}

/// One anomaly, naming the operations involved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The broken property.
    pub check: Check,
    /// Indices of the operations involved (into [`History::ops`]).
    pub ops: Vec<usize>,
    /// A full explanation.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.check, self.message)
    }
}

/// Counts of a checked history.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Operations.
    pub ops: usize,
    /// Distinct paths.
    pub paths: usize,
    /// Writes (inserts and deletes).
    pub writes: usize,
    /// Acknowledged writes.
    pub acked_writes: usize,
    /// Writes that definitely failed.
    pub failed_writes: usize,
    /// Writes with an unknown outcome.
    pub unknown_writes: usize,
    /// Reads.
    pub reads: usize,
    /// Reads that returned a value or `NotFound`.
    pub ok_reads: usize,
    /// Of those, `NotFound`.
    pub not_found_reads: usize,
    /// Reads that failed (ignored by the checks).
    pub failed_reads: usize,
    /// Final reads.
    pub final_reads: usize,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ops on {} paths: {} writes ({} acked, {} failed, {} unknown), {} reads ({} ok of which {} NotFound, {} failed, {} final)",
            self.ops,
            self.paths,
            self.writes,
            self.acked_writes,
            self.failed_writes,
            self.unknown_writes,
            self.reads,
            self.ok_reads,
            self.not_found_reads,
            self.failed_reads,
            self.final_reads
        )
    }
}

/// A recorded history, and which cluster each path belongs to (for seq checks).
#[derive(Debug, Clone, Default)]
pub struct History {
    ops: Vec<Op>,
    clusters: BTreeMap<String, String>,
}

/// Where a read's value came from.
#[derive(Debug, Clone, Copy)]
enum Source {
    /// The initial absence.
    Init,
    /// An operation.
    Op(usize),
}

/// Among acknowledged writes sorted by completion, the prefix maximum of some key: answers
/// "of the writes completed strictly before t, which has the largest key?".
struct PrefixMax {
    completes: Vec<Time>,
    best: Vec<(u64, usize)>,
}

impl PrefixMax {
    /// `items`: (complete, key, op index).
    fn new(mut items: Vec<(Time, u64, usize)>) -> PrefixMax {
        items.sort_unstable();
        let mut best: Vec<(u64, usize)> = Vec::with_capacity(items.len());
        for &(_, key, i) in &items {
            let next = match best.last() {
                Some(&(k, j)) if k >= key => (k, j),
                _ => (key, i),
            };
            best.push(next);
        }
        PrefixMax {
            completes: items.iter().map(|x| x.0).collect(),
            best,
        }
    }

    fn before(&self, t: Time) -> Option<(u64, usize)> {
        let n = self.completes.partition_point(|&c| c < t);
        n.checked_sub(1).map(|i| self.best[i])
    }
}

impl History {
    /// An empty history; every path in the default cluster `""`.
    pub fn new() -> History {
        History::default()
    }

    /// Record an operation; returns its index.
    pub fn push(&mut self, op: Op) -> usize {
        self.ops.push(op);
        self.ops.len() - 1
    }

    /// The operations, in recording order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }

    /// Append all of another history's operations (and cluster assignments).
    pub fn extend(&mut self, other: History) {
        self.ops.extend(other.ops);
        self.clusters.extend(other.clusters);
    }

    /// Say which cluster `path` belongs to (seqs are unique and ordered per cluster).
    pub fn set_cluster(&mut self, path: &str, cluster: &str) {
        self.clusters.insert(path.into(), cluster.into());
    }

    /// Assign every path recorded so far to the cluster `cluster_of(path)` names.
    pub fn set_clusters(&mut self, cluster_of: impl Fn(&str) -> String) {
        for p in self.paths() {
            let c = cluster_of(&p);
            self.clusters.insert(p, c);
        }
    }

    fn cluster(&self, path: &str) -> &str {
        self.clusters.get(path).map(String::as_str).unwrap_or("")
    }

    /// The distinct paths of the history.
    pub fn paths(&self) -> BTreeSet<String> {
        self.ops.iter().map(|o| o.path.clone()).collect()
    }

    /// Counts, without checking.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            ops: self.ops.len(),
            paths: self.paths().len(),
            ..Summary::default()
        };
        for op in &self.ops {
            if op.is_write() {
                s.writes += 1;
                match op.outcome {
                    Outcome::Written(_) => s.acked_writes += 1,
                    Outcome::Fail(_) => s.failed_writes += 1,
                    Outcome::Unknown(_) => s.unknown_writes += 1,
                    Outcome::Read(_) => {}
                }
            } else {
                s.reads += 1;
                s.final_reads += usize::from(op.final_read);
                match op.outcome {
                    Outcome::Read(None) => {
                        s.ok_reads += 1;
                        s.not_found_reads += 1;
                    }
                    Outcome::Read(Some(_)) => s.ok_reads += 1,
                    _ => s.failed_reads += 1,
                }
            }
        }
        s
    }

    fn show(&self, s: Source) -> String {
        match s {
            Source::Init => "the initial absence".into(),
            Source::Op(i) => format!("#{i} {}", self.ops[i]),
        }
    }

    fn source_complete(&self, s: Source) -> Time {
        match s {
            Source::Init => 0,
            Source::Op(i) => self.ops[i].effective_complete(),
        }
    }

    /// Check every property; the summary if none is broken, else every violation.
    pub fn check(&self) -> Result<Summary, Vec<Violation>> {
        let mut out = Vec::new();
        self.check_malformed(&mut out);
        if out.is_empty() {
            self.check_reads(&mut out);
            self.check_seqs(&mut out);
        }
        if out.is_empty() {
            Ok(self.summary())
        } else {
            Err(out)
        }
    }

    fn check_malformed(&self, out: &mut Vec<Violation>) {
        let mut values: HashMap<&[u8], usize> = HashMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            let shape_ok = !matches!(
                (&op.kind, &op.outcome),
                (Kind::Select, Outcome::Written(_) | Outcome::Unknown(_))
                    | (Kind::Insert(_) | Kind::Delete, Outcome::Read(_))
            );
            if !shape_ok || op.complete < op.invoke || op.invoke == 0 {
                out.push(Violation {
                    check: Check::Malformed,
                    ops: vec![i],
                    message: format!(
                        "#{i} {op}: outcome of the wrong kind, completion before invocation, or invocation at time 0"
                    ),
                });
            }
            if let Kind::Insert(v) = &op.kind {
                if let Some(&j) = values.get(v.as_ref()) {
                    out.push(Violation {
                        check: Check::Malformed,
                        ops: vec![j, i],
                        message: format!(
                            "value written twice (values must be unique): #{j} {} and #{i} {op}",
                            self.ops[j]
                        ),
                    });
                } else {
                    values.insert(v, i);
                }
            }
        }
    }

    fn check_reads(&self, out: &mut Vec<Violation>) {
        // Per path: the ops of that path.
        let mut by_path: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            by_path.entry(&op.path).or_default().push(i);
        }
        // Inserted values, any path.
        let mut values: HashMap<&[u8], usize> = HashMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if let Kind::Insert(v) = &op.kind {
                values.insert(v, i);
            }
        }
        for ops in by_path.values() {
            self.check_path(ops, &values, out);
        }
    }

    fn check_path(&self, ops: &[usize], values: &HashMap<&[u8], usize>, out: &mut Vec<Violation>) {
        let o = |i: usize| &self.ops[i];
        // Acknowledged writes: of those completed before t, the latest invoked.
        let acked = PrefixMax::new(
            ops.iter()
                .filter(|&&i| o(i).acked().is_some())
                .map(|&i| (o(i).complete, o(i).invoke, i))
                .collect(),
        );
        // Deletes that may have taken effect, by invocation.
        let mut deletes: Vec<usize> = ops
            .iter()
            .copied()
            .filter(|&i| {
                o(i).kind == Kind::Delete
                    && matches!(o(i).outcome, Outcome::Written(_) | Outcome::Unknown(_))
            })
            .collect();
        deletes.sort_by_key(|&i| o(i).invoke);
        // Prefix max of effective completion over deletes sorted by invocation.
        let mut delete_best: Vec<(Time, usize)> = Vec::with_capacity(deletes.len());
        for &i in &deletes {
            let c = o(i).effective_complete();
            let next = match delete_best.last() {
                Some(&(bc, bi)) if bc >= c => (bc, bi),
                _ => (c, i),
            };
            delete_best.push(next);
        }
        // The absence candidate invoked by `t` that completed last.
        let best_absence = |t: Time| -> Source {
            let n = deletes.partition_point(|&i| o(i).invoke <= t);
            match n.checked_sub(1).map(|k| delete_best[k]) {
                Some((_, i)) => Source::Op(i),
                None => Source::Init,
            }
        };

        // Phantom reads; resolve the rest to their source.
        let mut resolved: Vec<(usize, Source)> = Vec::new();
        for &r in ops {
            let read = o(r);
            let Outcome::Read(value) = &read.outcome else {
                continue;
            };
            if read.kind != Kind::Select {
                continue;
            }
            let Some(v) = value else {
                resolved.push((r, best_absence(read.complete)));
                continue;
            };
            let phantom = match values.get(v.as_ref()) {
                None => Some("a value that no write produced".to_string()),
                Some(&w) if o(w).path != read.path => {
                    Some(format!("a value written to another path by #{w} {}", o(w)))
                }
                Some(&w) if matches!(o(w).outcome, Outcome::Fail(_)) => Some(format!(
                    "the value of a write that definitely failed: #{w} {}",
                    o(w)
                )),
                Some(&w) if o(w).invoke > read.complete => Some(format!(
                    "the value of a write invoked after the read completed: #{w} {}",
                    o(w)
                )),
                Some(&w) => {
                    resolved.push((r, Source::Op(w)));
                    None
                }
            };
            if let Some(why) = phantom {
                let mut involved = vec![r];
                involved.extend(values.get(v.as_ref()).copied());
                out.push(Violation {
                    check: Check::PhantomRead,
                    ops: involved,
                    message: format!("#{r} {read} returned {why}"),
                });
            }
        }

        // Stale reads and lost writes.
        let mut flagged = BTreeSet::new();
        for &(r, src) in &resolved {
            let read = o(r);
            let Some((latest_invoke, w2)) = acked.before(read.invoke) else {
                continue;
            };
            if self.source_complete(src) < latest_invoke {
                flagged.insert(r);
                let (check, what) = if read.final_read {
                    (Check::LostWrite, "lost write: the final read")
                } else {
                    (Check::StaleRead, "stale read:")
                };
                let absent = matches!(read.outcome, Outcome::Read(None));
                let explained = if absent {
                    format!("the latest absence it can come from is {}", self.show(src))
                } else {
                    format!("its value was written by {}", self.show(src))
                };
                let mut involved = vec![r, w2];
                if let Source::Op(w) = src {
                    involved.push(w);
                }
                out.push(Violation {
                    check,
                    ops: involved,
                    message: format!(
                        "{what} #{r} {read}; {explained}, which was definitely overwritten by the acknowledged #{w2} {} before the read began",
                        o(w2)
                    ),
                });
            }
        }

        // Non-monotonic reads: of reads completed before R2 began that saw an inserted
        // value, the one whose write began last.
        let seen = PrefixMax::new(
            resolved
                .iter()
                .filter_map(|&(r, src)| match src {
                    Source::Op(w) if matches!(o(w).kind, Kind::Insert(_)) => {
                        Some((o(r).complete, o(w).invoke, r))
                    }
                    _ => None,
                })
                .collect(),
        );
        for &(r2, src2) in &resolved {
            if flagged.contains(&r2) {
                continue;
            }
            let Some((w1_invoke, r1)) = seen.before(o(r2).invoke) else {
                continue;
            };
            if self.source_complete(src2) < w1_invoke {
                let Outcome::Read(Some(v1)) = &o(r1).outcome else {
                    continue;
                };
                let w1 = values[v1.as_ref()];
                let mut involved = vec![r1, w1, r2];
                if let Source::Op(w2) = src2 {
                    involved.push(w2);
                }
                out.push(Violation {
                    check: Check::NonMonotonic,
                    ops: involved,
                    message: format!(
                        "non-monotonic read: #{r1} {} saw #{w1} {} and completed before #{r2} {} began, which returned {} (definitely before #{w1}): a write seen undone or applied twice",
                        o(r1),
                        o(w1),
                        o(r2),
                        match o(r2).outcome {
                            Outcome::Read(None) =>
                                format!("absence whose latest source is {}", self.show(src2)),
                            _ => format!("the value of {}", self.show(src2)),
                        }
                    ),
                });
            }
        }
    }

    fn check_seqs(&self, out: &mut Vec<Violation>) {
        let mut by_cluster: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in self.ops.iter().enumerate() {
            if op.acked().is_some() {
                by_cluster
                    .entry(self.cluster(&op.path))
                    .or_default()
                    .push(i);
            }
        }
        for (cluster, writes) in by_cluster {
            let mut seen: HashMap<u64, usize> = HashMap::new();
            for &i in &writes {
                let seq = self.ops[i].acked().unwrap_or_default();
                if let Some(&j) = seen.get(&seq) {
                    out.push(Violation {
                        check: Check::DuplicateSeq,
                        ops: vec![j, i],
                        message: format!(
                            "duplicate seq {seq} in cluster {cluster:?}: #{j} {} and #{i} {}",
                            self.ops[j], self.ops[i]
                        ),
                    });
                } else {
                    seen.insert(seq, i);
                }
            }
            let by_complete = PrefixMax::new(
                writes
                    .iter()
                    .map(|&i| {
                        let op = &self.ops[i];
                        (op.complete, op.acked().unwrap_or_default(), i)
                    })
                    .collect(),
            );
            for &i in &writes {
                let op = &self.ops[i];
                let seq = op.acked().unwrap_or_default();
                if let Some((earlier, j)) = by_complete.before(op.invoke) {
                    if earlier > seq {
                        out.push(Violation {
                            check: Check::SeqOrder,
                            ops: vec![j, i],
                            message: format!(
                                "seq order in cluster {cluster:?}: #{j} {} was acknowledged before #{i} {} began, yet has the higher seq",
                                self.ops[j], op
                            ),
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Time = 1_000_000_000;

    /// A test history builder: times in whole seconds.
    #[derive(Default)]
    struct H(History);

    impl H {
        fn ins(&mut self, c: u32, p: &str, v: &str, t: (u64, u64), out: Outcome) -> usize {
            let kind = Kind::Insert(Bytes::copy_from_slice(v.as_bytes()));
            self.0.push(Op::new(c, p, kind, t.0 * S, t.1 * S, out))
        }
        fn del(&mut self, c: u32, p: &str, t: (u64, u64), out: Outcome) -> usize {
            self.0
                .push(Op::new(c, p, Kind::Delete, t.0 * S, t.1 * S, out))
        }
        fn get(&mut self, c: u32, p: &str, t: (u64, u64), v: Option<&str>) -> usize {
            let out = Outcome::Read(v.map(|v| Bytes::copy_from_slice(v.as_bytes())));
            self.0
                .push(Op::new(c, p, Kind::Select, t.0 * S, t.1 * S, out))
        }
        fn fin(&mut self, p: &str, t: u64, v: Option<&str>) -> usize {
            let out = Outcome::Read(v.map(|v| Bytes::copy_from_slice(v.as_bytes())));
            let op = Op::new(99, p, Kind::Select, t * S, t * S + 1, out).final_read();
            self.0.push(op)
        }
        fn violations(&self) -> Vec<Violation> {
            match self.0.check() {
                Ok(s) => panic!("expected violations, got {s}"),
                Err(v) => v,
            }
        }
        fn only(&self, check: Check) -> Violation {
            let v = self.violations();
            assert_eq!(v.len(), 1, "{v:#?}");
            assert_eq!(v[0].check, check, "{}", v[0]);
            v[0].clone()
        }
        fn ok(&self) -> Summary {
            self.0
                .check()
                .unwrap_or_else(|v| panic!("unexpected violations: {v:#?}"))
        }
    }

    fn ok(seq: u64) -> Outcome {
        Outcome::Written(seq)
    }
    fn unknown() -> Outcome {
        Outcome::Unknown("timeout".into())
    }
    fn fail() -> Outcome {
        Outcome::Fail("NOTFOUND".into())
    }

    #[test]
    fn sequential_writes_and_reads_pass() {
        let mut h = H::default();
        h.get(0, "/a/x", (1, 2), None);
        h.ins(0, "/a/x", "v1", (3, 4), ok(1));
        h.get(1, "/a/x", (5, 6), Some("v1"));
        h.del(0, "/a/x", (7, 8), ok(2));
        h.get(1, "/a/x", (9, 10), None);
        h.del(0, "/a/x", (11, 12), fail());
        h.ins(1, "/a/x", "v2", (13, 14), ok(3));
        h.fin("/a/x", 20, Some("v2"));
        let s = h.ok();
        assert_eq!(
            (
                s.acked_writes,
                s.failed_writes,
                s.reads,
                s.final_reads,
                s.not_found_reads
            ),
            (3, 1, 4, 1, 2)
        );
    }

    #[test]
    fn concurrent_overlapping_writes_may_be_seen_in_either_order() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 10), ok(2));
        h.ins(1, "/a/x", "v2", (2, 9), ok(1));
        // Reads during and after the overlap: either value, and either can be last.
        h.get(2, "/a/x", (3, 4), Some("v1"));
        h.get(3, "/a/x", (5, 6), Some("v2"));
        h.get(2, "/a/x", (11, 12), Some("v2"));
        h.get(3, "/a/x", (13, 14), Some("v2"));
        h.fin("/a/x", 20, Some("v2"));
        h.ok();
        // A read during the overlap may still see the initial absence.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 10), ok(1));
        h.get(1, "/a/x", (2, 3), None);
        h.get(1, "/a/x", (4, 5), Some("v1"));
        h.fin("/a/x", 20, Some("v1"));
        h.ok();
    }

    #[test]
    fn unknown_writes_may_or_may_not_apply_even_late() {
        // Applied, long after the client gave up (a router retry).
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(1, "/a/x", "v2", (3, 4), unknown());
        h.ins(0, "/a/x", "v3", (5, 6), ok(2));
        h.get(2, "/a/x", (7, 8), Some("v3"));
        h.fin("/a/x", 20, Some("v2"));
        h.ok();
        // Never applied.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(1, "/a/x", "v2", (3, 4), unknown());
        h.fin("/a/x", 20, Some("v1"));
        h.ok();
        // An unknown delete explains a later absence.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.del(1, "/a/x", (3, 4), unknown());
        h.get(1, "/a/x", (5, 6), Some("v1"));
        h.fin("/a/x", 20, None);
        h.ok();
    }

    #[test]
    fn a_lost_acknowledged_write_is_found() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(0, "/a/x", "v2", (3, 4), ok(2));
        h.fin("/a/x", 20, Some("v1"));
        let v = h.only(Check::LostWrite);
        assert!(v.message.contains("INSERT /a/x \"v2\""), "{v}");
        // Lost to absence: the path was never deleted.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.fin("/a/x", 20, None);
        h.only(Check::LostWrite);
        // A delete that failed (NOTFOUND) does not explain absence.
        let mut h = H::default();
        h.del(1, "/a/x", (1, 2), fail());
        h.ins(0, "/a/x", "v1", (3, 4), ok(1));
        h.del(1, "/a/x", (5, 6), fail());
        h.fin("/a/x", 20, None);
        h.only(Check::LostWrite);
    }

    #[test]
    fn a_stale_read_is_found() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(0, "/a/x", "v2", (3, 4), ok(2));
        h.get(1, "/a/x", (5, 6), Some("v1"));
        let v = h.only(Check::StaleRead);
        assert_eq!(v.ops.len(), 3, "{v}");
        // Missing an acknowledged delete.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.del(0, "/a/x", (3, 4), ok(2));
        h.get(1, "/a/x", (5, 6), Some("v1"));
        h.only(Check::StaleRead);
        // Absence after an acknowledged insert, with an older delete.
        let mut h = H::default();
        h.del(0, "/a/x", (1, 2), ok(1));
        h.ins(0, "/a/x", "v1", (3, 4), ok(2));
        h.get(1, "/a/x", (5, 6), None);
        h.only(Check::StaleRead);
        // The same read overlapping the insert is fine.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (3, 5), ok(2));
        h.get(1, "/a/x", (4, 6), None);
        h.ok();
    }

    #[test]
    fn phantom_reads_are_found() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.get(1, "/a/x", (3, 4), Some("nobody wrote this"));
        h.only(Check::PhantomRead);
        // From the future.
        let mut h = H::default();
        h.get(1, "/a/x", (1, 2), Some("v1"));
        h.ins(0, "/a/x", "v1", (3, 4), ok(1));
        h.only(Check::PhantomRead);
        // From a write that definitely failed.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), Outcome::Fail("BADPATH".into()));
        h.get(1, "/a/x", (3, 4), Some("v1"));
        h.only(Check::PhantomRead);
        // Written to another path.
        let mut h = H::default();
        h.ins(0, "/a/y", "v1", (1, 2), ok(1));
        h.get(1, "/a/x", (3, 4), Some("v1"));
        h.only(Check::PhantomRead);
    }

    #[test]
    fn a_write_applied_twice_is_found() {
        // v1 (unknown, so the stale check cannot see it) is overwritten by v2, which a reader
        // sees; a later read sees v1 again: a retry of v1 applied after v2.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), unknown());
        h.ins(1, "/a/x", "v2", (3, 10), unknown());
        h.get(2, "/a/x", (11, 12), Some("v2"));
        h.get(3, "/a/x", (13, 14), Some("v1"));
        // v1 is unknown, so it could still be applied late; v2 is unknown too. Nothing is
        // definitely before anything: fine.
        h.ok();
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(1, "/a/x", "v2", (3, 10), unknown());
        h.get(2, "/a/x", (11, 12), Some("v2"));
        h.get(3, "/a/x", (13, 14), Some("v1"));
        let v = h.only(Check::NonMonotonic);
        assert!(v.message.contains("#2"), "{v}");
        // A delete retried after a later insert was seen.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.del(0, "/a/x", (3, 4), ok(2));
        h.ins(1, "/a/x", "v2", (5, 10), unknown());
        h.get(2, "/a/x", (11, 12), Some("v2"));
        h.get(3, "/a/x", (13, 14), None);
        h.only(Check::NonMonotonic);
    }

    #[test]
    fn duplicate_and_reordered_seqs_are_found() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(7));
        h.ins(1, "/b/y", "v2", (1, 2), ok(7));
        h.only(Check::DuplicateSeq);
        // On different clusters the same seq is fine.
        h.0.set_cluster("/b/y", "fc-b");
        h.ok();

        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(8));
        h.ins(0, "/a/x", "v2", (3, 4), ok(7));
        let v = h.only(Check::SeqOrder);
        assert_eq!(v.ops, vec![0, 1]);
        // Overlapping writes may be sequenced either way.
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 4), ok(8));
        h.ins(1, "/a/x", "v2", (3, 5), ok(7));
        h.fin("/a/x", 9, Some("v1"));
        h.ok();
    }

    #[test]
    fn malformed_histories_are_refused() {
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (1, 2), ok(1));
        h.ins(1, "/a/x", "v1", (3, 4), ok(2));
        h.only(Check::Malformed);
        let mut h = H::default();
        h.ins(0, "/a/x", "v1", (3, 2), ok(1));
        h.only(Check::Malformed);
    }

    #[test]
    fn clock_starts_after_the_initial_state() {
        let c = Clock::new();
        let a = c.now();
        let b = c.now();
        assert!(a >= 1 && b >= a);
    }
}
