//! Whether the operator's loops are alive, for `/healthz`: a process that still answers HTTP
//! but whose Lease loop or a reconcile pass is stuck must be restarted by the kubelet, and
//! answering 200 regardless would hide exactly that.
//!
//! Two heartbeats: the Lease loop beats on every attempt (as standby and as holder), and each
//! reconcile pass notes when it started and ended. [`Liveness::check`] fails when the Lease loop
//! has been silent for longer than a lease duration, or a pass has been running for longer than
//! twice its timeout (the timeout should have ended it: something below it does not yield).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The operator's heartbeats. Shared (`Arc`) by the Lease loop, the controller and `/healthz`.
#[derive(Debug)]
pub struct Liveness {
    /// The Lease loop's last beat; `None`: no Lease loop (yet).
    lease_beat: Mutex<Option<Instant>>,
    /// How long the Lease loop may stay silent.
    lease_silence: Duration,
    /// Passes running now, by number, with their start.
    passes: Mutex<(u64, HashMap<u64, Instant>)>,
    /// How long a pass may run before the process counts as stuck.
    pass_limit: Duration,
}

/// A running pass; ends it when dropped (also when its future is cancelled).
#[derive(Debug)]
pub struct PassGuard<'a> {
    liveness: &'a Liveness,
    id: u64,
}

impl Drop for PassGuard<'_> {
    fn drop(&mut self) {
        let mut p = self
            .liveness
            .passes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        p.1.remove(&self.id);
    }
}

impl Liveness {
    /// Heartbeats with these limits: the Lease loop may be silent for `lease_silence` (use the
    /// lease duration), a pass may run for `pass_limit` (use twice the pass timeout).
    pub fn new(lease_silence: Duration, pass_limit: Duration) -> Liveness {
        Liveness {
            lease_beat: Mutex::default(),
            lease_silence,
            passes: Mutex::default(),
            pass_limit,
        }
    }

    /// The Lease loop made an attempt at `now` (as holder or standby).
    pub fn lease_beat_at(&self, now: Instant) {
        *self.lease_beat.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }

    /// The Lease loop made an attempt now.
    pub fn lease_beat(&self) {
        self.lease_beat_at(Instant::now());
    }

    /// A pass starts at `now`; it ends when the guard is dropped.
    pub fn pass_started_at(&self, now: Instant) -> PassGuard<'_> {
        let mut p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        p.0 += 1;
        let id = p.0;
        p.1.insert(id, now);
        PassGuard { liveness: self, id }
    }

    /// A pass starts now.
    pub fn pass_started(&self) -> PassGuard<'_> {
        self.pass_started_at(Instant::now())
    }

    /// `Ok` while both loops are alive at `now`; otherwise what is stuck.
    pub fn check_at(&self, now: Instant) -> Result<(), String> {
        let beat = *self.lease_beat.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = beat {
            let silent = now.saturating_duration_since(at);
            if silent > self.lease_silence {
                return Err(format!(
                    "the Lease loop has made no attempt for {} ms (limit {} ms)",
                    silent.as_millis(),
                    self.lease_silence.as_millis()
                ));
            }
        }
        let p = self.passes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(oldest) = p.1.values().min() {
            let running = now.saturating_duration_since(*oldest);
            if running > self.pass_limit {
                return Err(format!(
                    "a reconcile pass has been running for {} ms (limit {} ms)",
                    running.as_millis(),
                    self.pass_limit.as_millis()
                ));
            }
        }
        Ok(())
    }

    /// `Ok` while both loops are alive now: what `/healthz` answers.
    pub fn check(&self) -> Result<(), String> {
        self.check_at(Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn a_silent_lease_loop_is_not_alive() {
        let l = Liveness::new(S(15), S(120));
        let t0 = Instant::now();
        assert!(
            l.check_at(t0 + S(3600)).is_ok(),
            "no Lease loop: nothing to watch"
        );
        l.lease_beat_at(t0);
        assert!(l.check_at(t0 + S(15)).is_ok());
        let err = l.check_at(t0 + S(16)).unwrap_err();
        assert!(err.contains("Lease loop"), "{err}");
        l.lease_beat_at(t0 + S(16));
        assert!(l.check_at(t0 + S(20)).is_ok());
    }

    #[test]
    fn a_pass_running_past_its_limit_is_not_alive_and_an_ended_one_is_forgotten() {
        let l = Liveness::new(S(15), S(120));
        let t0 = Instant::now();
        let first = l.pass_started_at(t0);
        let second = l.pass_started_at(t0 + S(100));
        assert!(l.check_at(t0 + S(120)).is_ok());
        let err = l.check_at(t0 + S(121)).unwrap_err();
        assert!(err.contains("reconcile pass"), "{err}");
        drop(first);
        assert!(l.check_at(t0 + S(121)).is_ok());
        drop(second);
        assert!(l.check_at(t0 + S(3600)).is_ok());
    }
}
