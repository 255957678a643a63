//! The per-operator view a dashboard and `GET /v1/job` show, Flink's web UI style: what each
//! subtask moved, and where its time went over the last few seconds.
//!
//! Prometheus computes rates itself from the cumulative counters; a dashboard asking the job
//! directly cannot, so the view keeps the last few samples it took and gives each time as
//! milliseconds per second since the oldest one within [`WINDOW`]. Sampling happens when the
//! view is asked for, not on a timer: a job nobody looks at does no work for it. The first view
//! of a subtask (no sample yet) averages since the subtask was first deployed.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::SubtaskMetrics;

/// How far back the rates in a view reach (when the view is asked for at least this often).
pub const WINDOW: Duration = Duration::from_secs(5);

/// One operator and its subtasks.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OperatorMetricsView {
    /// The operator id from the job file.
    pub operator: String,
    /// By subtask index.
    pub subtasks: Vec<SubtaskMetricsView>,
}

impl OperatorMetricsView {
    /// Records in and out, summed over the subtasks.
    pub fn records(&self) -> (u64, u64) {
        self.subtasks.iter().fold((0, 0), |(i, o), s| (i + s.records_in, o + s.records_out))
    }
}

/// One operator subtask.
#[derive(Clone, Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SubtaskMetricsView {
    pub subtask: u32,
    pub records_in: u64,
    pub records_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Flink's `busyTimeMsPerSecond`: milliseconds of each second in the operator's own code.
    pub busy_ms_per_second: f64,
    /// Flink's `idleTimeMsPerSecond`: waiting for input.
    pub idle_ms_per_second: f64,
    /// Flink's `backPressuredTimeMsPerSecond`: waiting for room downstream.
    pub back_pressured_ms_per_second: f64,
    /// The guest's linear memory (0 for a native operator).
    pub guest_memory_bytes: i64,
}

type Key = (String, u32);

/// Cumulative busy, idle and back-pressured seconds of every subtask at one instant.
struct Sample {
    at: Instant,
    times: BTreeMap<Key, [f64; 3]>,
}

/// The samples the views took, oldest first.
#[derive(Default)]
pub(super) struct RateWindow {
    samples: VecDeque<Sample>,
}

impl RateWindow {
    /// The view of `subtasks` now; records this instant as a sample.
    pub(super) fn view(&mut self, subtasks: &BTreeMap<Key, Arc<SubtaskMetrics>>) -> Vec<OperatorMetricsView> {
        let now = Instant::now();
        let times: BTreeMap<Key, [f64; 3]> = subtasks.iter().map(|(k, m)| (k.clone(), m.times())).collect();
        // The base: the oldest sample within the window, or else the newest one before it.
        while self.samples.len() > 1 && now.duration_since(self.samples[1].at) >= WINDOW {
            self.samples.pop_front();
        }
        let base = self.samples.front();
        let mut out: Vec<OperatorMetricsView> = Vec::new();
        for ((operator, subtask), m) in subtasks {
            let key = (operator.clone(), *subtask);
            let (from, then) = match base.and_then(|b| Some((b.at, *b.times.get(&key)?))) {
                Some((at, t)) => (at, t),
                None => (m.started, [0.0; 3]),
            };
            let span = now.duration_since(from).as_secs_f64();
            let rate = |i: usize| if span > 0.0 { ((times[&key][i] - then[i]) / span * 1000.0).clamp(0.0, 1000.0) } else { 0.0 };
            let [records_in, records_out, bytes_in, bytes_out] = m.moved();
            let view = SubtaskMetricsView {
                subtask: *subtask,
                records_in,
                records_out,
                bytes_in,
                bytes_out,
                busy_ms_per_second: rate(0),
                idle_ms_per_second: rate(1),
                back_pressured_ms_per_second: rate(2),
                guest_memory_bytes: m.memory_bytes(),
            };
            match out.last_mut() {
                Some(op) if op.operator == *operator => op.subtasks.push(view),
                _ => out.push(OperatorMetricsView { operator: operator.clone(), subtasks: vec![view] }),
            }
        }
        // A sample at most every tenth of the window: a client asking in a loop keeps a few.
        if self.samples.back().is_none_or(|s| now.duration_since(s.at) >= WINDOW / 10) {
            self.samples.push_back(Sample { at: now, times });
        }
        out
    }
}
