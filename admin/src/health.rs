//! A heartbeat: how a long-running loop proves it is not stuck.
//!
//! A reconcile loop that hangs (an API call that never returns, a deadlock) still answers HTTP;
//! only the loop itself can say it is making progress. It calls [`Heartbeat::beat`] each time
//! round, [`Heartbeat::busy`] / [`Heartbeat::idle`] around a pass, and the liveness check fails
//! once a pass has been running — or, for a loop that ticks on its own, no beat has come — for
//! longer than the bound.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A loop's heartbeat.
#[derive(Debug)]
pub struct Heartbeat {
    bound: Duration,
    ticks: bool,
    state: Mutex<Beat>,
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    last: Instant,
    busy_since: Option<Instant>,
}

impl Heartbeat {
    /// A heartbeat for a loop that runs only when there is work (event-driven): stuck means one
    /// pass has been running for longer than `bound`.
    pub fn on_demand(bound: Duration) -> Heartbeat {
        Heartbeat::new(bound, false)
    }

    /// A heartbeat for a loop that ticks by itself at least every `bound`: stuck means no beat
    /// for longer than `bound`, or one pass running for longer.
    pub fn ticking(bound: Duration) -> Heartbeat {
        Heartbeat::new(bound, true)
    }

    fn new(bound: Duration, ticks: bool) -> Heartbeat {
        Heartbeat {
            bound,
            ticks,
            state: Mutex::new(Beat {
                last: Instant::now(),
                busy_since: None,
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Beat) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The loop went round.
    pub fn beat(&self) {
        self.with(|b| b.last = Instant::now());
    }

    /// A pass starts.
    pub fn busy(&self) {
        self.with(|b| {
            b.last = Instant::now();
            b.busy_since = Some(b.last);
        });
    }

    /// The pass ended.
    pub fn idle(&self) {
        self.with(|b| {
            b.last = Instant::now();
            b.busy_since = None;
        });
    }

    /// Seconds since the last beat.
    pub fn age(&self) -> Duration {
        self.with(|b| b.last.elapsed())
    }

    /// `Ok`, or why the loop counts as stuck.
    pub fn check(&self) -> Result<(), String> {
        let b = self.with(|b| *b);
        if let Some(since) = b.busy_since {
            if since.elapsed() > self.bound {
                return Err(format!(
                    "a pass has been running for {:.1}s (bound {:?})",
                    since.elapsed().as_secs_f64(),
                    self.bound
                ));
            }
        }
        if self.ticks && b.last.elapsed() > self.bound {
            return Err(format!(
                "the loop has not ticked for {:.1}s (bound {:?})",
                b.last.elapsed().as_secs_f64(),
                self.bound
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_running_past_the_bound_is_stuck() {
        let h = Heartbeat::on_demand(Duration::from_millis(30));
        assert!(h.check().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(h.check().is_ok(), "idle is not stuck for an on-demand loop");
        h.busy();
        assert!(h.check().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(h.check().unwrap_err().contains("running"));
        h.idle();
        assert!(h.check().is_ok());
    }

    #[test]
    fn a_ticking_loop_that_stops_ticking_is_stuck() {
        let h = Heartbeat::ticking(Duration::from_millis(30));
        h.beat();
        assert!(h.check().is_ok());
        std::thread::sleep(Duration::from_millis(40));
        assert!(h.check().unwrap_err().contains("not ticked"));
        h.beat();
        assert!(h.check().is_ok());
    }
}
