//! Watermark generators for sources, as Flink's `WatermarkStrategy` builds them.
//!
//! A source assigns each record its event timestamp and tells a generator about it; after each
//! poll it emits the generator's watermark with [`Collector::emit_watermark`](crate::Collector::emit_watermark).
//! The host forwards watermarks in-band (behind the records they follow); every operator takes
//! the lowest over its inputs, leaving out inputs marked idle.
//!
//! ```
//! use std::time::Duration;
//! use wasmflow_guest_sdk::watermarks::{BoundedOutOfOrderness, PartitionWatermarks};
//!
//! let mut wm = BoundedOutOfOrderness::new(Duration::from_millis(100));
//! wm.on_event(1_000);
//! wm.on_event(900); // late but within the bound
//! assert_eq!(wm.current_watermark(), 1_000 - 100 - 1);
//!
//! // Per partition, the lowest wins (Flink's per-partition watermarks of the Kafka source).
//! let mut parts = PartitionWatermarks::new(Duration::ZERO);
//! parts.on_event(0, 3, 0);
//! parts.on_event(1, 12, 0);
//! parts.on_event(2, 102, 0);
//! assert_eq!(parts.current_watermark(0), Some(2));
//! parts.on_event(0, 30, 0);
//! assert_eq!(parts.current_watermark(0), Some(11));
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

/// Flink's `BoundedOutOfOrdernessWatermarks`: records may arrive up to `bound` late; the
/// watermark is the highest timestamp seen minus the bound minus one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoundedOutOfOrderness {
    max_timestamp: i64,
    bound_ms: i64,
}

impl BoundedOutOfOrderness {
    /// A generator for records at most `bound` out of order (zero: ascending timestamps).
    pub fn new(bound: Duration) -> Self {
        let bound_ms = bound.as_millis().min(i64::MAX as u128 / 2) as i64;
        // As Flink: the first watermark, before any record, is the lowest possible.
        BoundedOutOfOrderness { max_timestamp: i64::MIN + bound_ms + 1, bound_ms }
    }

    /// A record with event time `timestamp` was emitted.
    pub fn on_event(&mut self, timestamp: i64) {
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    /// The watermark: no record with a lower or equal timestamp is expected any more.
    pub fn current_watermark(&self) -> i64 {
        self.max_timestamp - self.bound_ms - 1
    }

    /// Whether any record was seen.
    pub fn has_events(&self) -> bool {
        self.max_timestamp > i64::MIN + self.bound_ms + 1
    }
}

/// One generator per partition; the watermark is the lowest over the partitions that are not
/// idle (Flink's `WatermarkOutputMultiplexer`). With an idle timeout, a partition without records
/// for that long is left out until it has records again (Flink's `withIdleness`).
#[derive(Clone, Debug)]
pub struct PartitionWatermarks<P: Ord> {
    bound: Duration,
    idle_timeout: Option<Duration>,
    partitions: BTreeMap<P, (BoundedOutOfOrderness, i64)>,
}

impl<P: Ord + Clone> PartitionWatermarks<P> {
    /// Partitions whose records are at most `bound` out of order.
    pub fn new(bound: Duration) -> Self {
        PartitionWatermarks { bound, idle_timeout: None, partitions: BTreeMap::new() }
    }

    /// Leaves a partition out while it has had no record for `timeout` (processing time).
    pub fn with_idleness(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Adds a partition before its first record (it holds the watermark back until it has
    /// records, or is idle). `now` is processing time in ms.
    pub fn add_partition(&mut self, partition: P, now: i64) {
        let bound = self.bound;
        self.partitions.entry(partition).or_insert_with(|| (BoundedOutOfOrderness::new(bound), now));
    }

    /// Whether `partition` has a generator (it was added, or had records).
    pub fn has_partition(&self, partition: &P) -> bool {
        self.partitions.contains_key(partition)
    }

    /// A record of `partition` with event time `timestamp` was emitted at processing time `now`.
    pub fn on_event(&mut self, partition: P, timestamp: i64, now: i64) {
        let bound = self.bound;
        let entry = self.partitions.entry(partition).or_insert_with(|| (BoundedOutOfOrderness::new(bound), now));
        entry.0.on_event(timestamp);
        entry.1 = now;
    }

    /// The lowest watermark over the active partitions; `None` when there are none (no
    /// partitions, or all idle): then the source should mark itself idle.
    pub fn current_watermark(&self, now: i64) -> Option<i64> {
        let idle_after = self.idle_timeout.map(|t| t.as_millis() as i64);
        self.partitions.values().filter(|(_, last)| idle_after.is_none_or(|t| now.saturating_sub(*last) < t)).map(|(g, _)| g.current_watermark()).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A partition without records holds the watermark back until the idle timeout leaves it
    /// out; with every partition idle there is no watermark (the source marks itself idle).
    #[test]
    fn idle_partitions_are_left_out_after_the_timeout() {
        let mut parts = PartitionWatermarks::new(Duration::ZERO).with_idleness(Duration::from_millis(100));
        parts.add_partition("quiet", 0);
        parts.on_event("busy", 50, 0);
        assert_eq!(parts.current_watermark(99), Some(i64::MIN), "the quiet partition holds it back");
        parts.on_event("busy", 60, 120);
        assert_eq!(parts.current_watermark(120), Some(59), "quiet for 100 ms: left out");
        assert_eq!(parts.current_watermark(300), None, "all idle");
        parts.on_event("quiet", 10, 300);
        assert_eq!(parts.current_watermark(300), Some(9), "records make it active again");
    }

    #[test]
    fn the_bound_is_subtracted_and_no_event_means_the_lowest_watermark() {
        let mut wm = BoundedOutOfOrderness::new(Duration::from_millis(5));
        assert!(!wm.has_events());
        assert_eq!(wm.current_watermark(), i64::MIN);
        wm.on_event(10);
        wm.on_event(7);
        assert_eq!(wm.current_watermark(), 4);
    }
}
