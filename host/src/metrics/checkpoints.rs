//! Checkpoint and restart metrics: what Flink's checkpoint statistics and
//! `numRestarts` tell, as series.
//!
//! Recorded by the coordinator (`runtime/coordinator.rs`) and the restart loop
//! (`runtime/job.rs`), one call each: when a checkpoint or savepoint completes, when one is
//! aborted, when the job restarts.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::labels::{CheckpointKind, KindLabels};
use crate::runtime::CheckpointStats;

/// A checkpoint takes from milliseconds (little state) to minutes (large state, slow disk,
/// back-pressure holding barriers back): 10 ms to 10 min.
fn duration_histogram() -> Histogram {
    Histogram::new([0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0])
}

type HistogramFamily = Family<KindLabels, Histogram, fn() -> Histogram>;

/// The checkpoint families and the restart counter.
pub(super) struct CheckpointMetrics {
    completed: Family<KindLabels, Counter>,
    failed: Family<KindLabels, Counter>,
    duration: HistogramFamily,
    size: Family<KindLabels, Gauge>,
    full_size: Family<KindLabels, Gauge>,
    pub(super) restarts: Counter,
}

impl CheckpointMetrics {
    pub(super) fn register(registry: &mut Registry) -> CheckpointMetrics {
        let m = CheckpointMetrics {
            completed: Family::default(),
            failed: Family::default(),
            duration: HistogramFamily::new_with_constructor(duration_histogram),
            size: Family::default(),
            full_size: Family::default(),
            restarts: Counter::default(),
        };
        registry.register("checkpoints_completed", "Checkpoints (or savepoints) completed: _metadata written.", m.completed.clone());
        registry.register(
            "checkpoints_failed",
            "Checkpoints (or savepoints) aborted: declined, timed out, or cut short by a stop or failure.",
            m.failed.clone(),
        );
        registry.register_with_unit(
            "checkpoint_duration",
            "From trigger to complete: barriers through the job, every snapshot durable, _metadata written.",
            Unit::Seconds,
            m.duration.clone(),
        );
        registry.register_with_unit(
            "last_checkpoint_size",
            "Bytes the newest completed checkpoint wrote (with incremental checkpoints, only what changed; Flink's lastCheckpointSize).",
            Unit::Bytes,
            m.size.clone(),
        );
        registry.register_with_unit(
            "last_checkpoint_full_size",
            "Bytes of state the newest completed checkpoint consists of, shared files included (Flink's lastCheckpointFullSize).",
            Unit::Bytes,
            m.full_size.clone(),
        );
        registry.register("restarts", "Restarts after a failure (Flink's numRestarts).", m.restarts.clone());
        // Present at zero from the start: "no failure yet" is an answer, and rate() needs it.
        for kind in [CheckpointKind::Checkpoint, CheckpointKind::Savepoint] {
            m.completed.get_or_create_owned(&KindLabels { kind });
            m.failed.get_or_create_owned(&KindLabels { kind });
        }
        m
    }

    pub(super) fn completed(&self, kind: CheckpointKind, stats: &CheckpointStats) {
        let labels = KindLabels { kind };
        self.completed.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(stats.duration.as_secs_f64());
        self.size.get_or_create(&labels).set(stats.state_bytes as i64);
        self.full_size.get_or_create(&labels).set(stats.total_bytes as i64);
    }

    pub(super) fn failed(&self, kind: CheckpointKind) {
        self.failed.get_or_create(&KindLabels { kind }).inc();
    }

    /// `[completed, failed]` of `kind`.
    pub(super) fn counts(&self, kind: CheckpointKind) -> [u64; 2] {
        let labels = KindLabels { kind };
        [self.completed.get_or_create_owned(&labels).get(), self.failed.get_or_create_owned(&labels).get()]
    }
}
