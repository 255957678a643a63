//! Where a subtask's time goes: busy, idle or back-pressured, with Flink's meaning
//! (`busyTimeMsPerSecond`, `idleTimeMsPerSecond`, `backPressuredTimeMsPerSecond`).
//!
//! Flink measures these per task; our task is a subtask loop that may run a chain of operators.
//! So that chaining changes no metric (as it changes no checkpoint), each member of a chain is
//! accounted for as if it ran alone:
//!
//! * **busy**: the member's own guest calls (process, poll, timers, snapshots, notifications,
//!   close);
//! * **back-pressured**: the loop waiting for room in a full output channel, and the time the
//!   members *after* it spend on its output (unchained, it would be waiting to hand that output
//!   on);
//! * **idle**: the loop waiting for input (or for a control message or a timer: there is nothing
//!   else to do), and the time the members *before* it are busy (unchained, it would be waiting
//!   for their output).
//!
//! The counters are cumulative seconds, so Prometheus's `rate()` of each is a fraction of a
//! second per second, and the three add up to about one. The rest is the host's own work
//! between calls (splitting a batch by key, handling a barrier), which belongs to no operator.
//!
//! Cost: the loop reads the clock around each guest call and around each wait, once per batch,
//! never per record; a send that finds room in its channel reads no clock at all
//! (`runtime/channel.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SubtaskMetrics;

/// The time accounting of one subtask loop: its chain's members, head first.
pub struct ChainTime {
    members: Vec<Arc<SubtaskMetrics>>,
}

impl ChainTime {
    pub fn new(members: Vec<Arc<SubtaskMetrics>>) -> ChainTime {
        ChainTime { members }
    }

    /// The loop waited `d` for input, a control message or a timer.
    pub fn idle(&self, d: Duration) {
        let s = d.as_secs_f64();
        for m in &self.members {
            m.idle.inc_by(s);
        }
    }

    /// The loop waited `d` for room in an output channel.
    pub fn back_pressured(&self, d: Duration) {
        if d.is_zero() {
            return;
        }
        let s = d.as_secs_f64();
        for m in &self.members {
            m.back_pressured.inc_by(s);
        }
    }

    /// Member `k` made a guest call that began at `started` and has just returned. Time the host
    /// spent inside the call waiting for input (a Kafka fetch with nothing to read,
    /// [`SubtaskMetrics::waited_in_call`]) is idle, not busy.
    pub fn busy(&self, k: usize, started: Instant) {
        let elapsed = started.elapsed();
        let waited = self.members[k].take_waited_in_call().min(elapsed);
        let (all, own) = (elapsed.as_secs_f64(), (elapsed - waited).as_secs_f64());
        for (i, m) in self.members.iter().enumerate() {
            match i.cmp(&k) {
                std::cmp::Ordering::Less => {
                    m.back_pressured.inc_by(all);
                }
                std::cmp::Ordering::Equal => {
                    m.busy.inc_by(own);
                    if !waited.is_zero() {
                        m.idle.inc_by(waited.as_secs_f64());
                    }
                }
                std::cmp::Ordering::Greater => {
                    m.idle.inc_by(all);
                }
            }
        }
    }
}
