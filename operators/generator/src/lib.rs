//! A bounded generator source: emits the sequence numbers `0..count`, each exactly once across
//! all subtasks, failures and rescales.
//!
//! Subtask `i` of `P` emits the numbers `n` with `n % P == i`, in order. Its progress is kept in
//! **union list state** as `(subtask, parallelism, next)`: on restore every subtask sees every
//! old subtask's progress (docs/state.md), so it can tell exactly which
//! numbers were already emitted under the old parallelism and emit each remaining one once.
//!
//! Record: key = the number in decimal (or `key-<n mod keys>` with `keys`), value = `prefix` +
//! number (zero-padded to `value-bytes` if set), timestamp = the number (minus a deterministic
//! jitter of up to `jitter-ms`, for out-of-order event time).
//!
//! With `watermark-delay-ms` the generator emits a watermark after every poll: the highest
//! timestamp emitted minus the delay minus one (Flink's bounded out-of-orderness). With the delay
//! at least the jitter no record is ever late.

pub mod decimal;

use std::time::Duration;

use decimal::Decimal;
use wasmflow_guest_sdk::prelude::*;
use wasmflow_guest_sdk::watermarks::BoundedOutOfOrderness;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GeneratorConfig {
    /// How many records to emit in total.
    pub count: u64,
    /// Text put before the number in each value (default `record-`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Throttle: at most this many records per second per subtask (default: unthrottled).
    #[serde(default)]
    pub records_per_second: Option<u32>,
    /// Pad every value to this many bytes with leading zeros on the number
    /// (`record-000042`; the number still parses). Default: no padding.
    #[serde(default)]
    pub value_bytes: Option<usize>,
    /// Keys cycle over this many distinct values, `key-0` … (default: the number itself).
    #[serde(default)]
    pub keys: Option<u64>,
    /// Each timestamp is the number minus `(n * 2654435761) mod (jitter-ms + 1)`: records come
    /// out of timestamp order by up to this much (default 0).
    #[serde(default)]
    pub jitter_ms: u64,
    /// Emit watermarks for records at most this much out of order (default: no watermarks).
    #[serde(default)]
    pub watermark_delay_ms: Option<u64>,
}

impl GeneratorConfig {
    /// The event time of number `n`.
    pub fn timestamp(&self, n: u64) -> i64 {
        if self.jitter_ms == 0 {
            // No division per record when there is no jitter (the benchmarks' case).
            return n as i64;
        }
        let jitter = n.wrapping_mul(2_654_435_761) % (self.jitter_ms + 1);
        n as i64 - jitter as i64
    }
}

fn default_prefix() -> String {
    "record-".into()
}

/// One old subtask's progress: it had emitted every `n < next` with `n % parallelism == subtask`.
type Progress = (u32, u32, u64);

/// See the crate documentation.
pub struct Generator {
    config: GeneratorConfig,
    index: u64,
    parallelism: u64,
    /// Progress of the previous run(s), restored from union state: numbers they emitted.
    restored: Vec<Progress>,
    /// Next candidate number for this subtask (always `≡ index mod parallelism`).
    next: u64,
    state: ListState<Progress>,
    last_poll_millis: i64,
    watermarks: Option<BoundedOutOfOrderness>,
    /// `next` in decimal, advanced with it.
    number: Decimal,
    /// With `keys`: `next mod keys`, in decimal.
    key: Option<KeyCycle>,
    /// Every number from here on is new: the highest `next` of the restored progress.
    restored_up_to: u64,
}

impl Generator {
    fn already_emitted(&self, n: u64) -> bool {
        n < self.restored_up_to && self.restored.iter().any(|&(sub, p, next)| n % p as u64 == sub as u64 && n < next)
    }
}

/// `n mod keys` for the generator's `n`, in decimal, advanced by the step `n` advances by.
struct KeyCycle {
    keys: u64,
    step: u64,
    index: u64,
    digits: Decimal,
}

impl KeyCycle {
    fn new(n: u64, step: u64, keys: u64) -> KeyCycle {
        let keys = keys.max(1);
        KeyCycle { keys, step, index: n % keys, digits: Decimal::new(n % keys, step) }
    }

    fn advance(&mut self) {
        self.index += self.step;
        if self.index < self.keys {
            self.digits.advance();
        } else {
            // Wrapped around: once per `keys / step` records, so the division does not matter.
            self.index %= self.keys;
            self.digits = Decimal::new(self.index, self.step);
        }
    }
}

impl Source for Generator {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: GeneratorConfig = ctx.config()?;
        let watermarks = config.watermark_delay_ms.map(|d| BoundedOutOfOrderness::new(Duration::from_millis(d)));
        let (index, parallelism) = (ctx.subtask_index() as u64, ctx.parallelism() as u64);
        let key = config.keys.map(|keys| KeyCycle::new(index, parallelism, keys));
        Ok(Generator {
            watermarks,
            config,
            index,
            parallelism,
            restored: Vec::new(),
            restored_up_to: 0,
            number: Decimal::new(index, parallelism),
            key,
            next: index,
            state: ListState::default(),
            last_poll_millis: 0,
        })
    }

    fn poll(&mut self, out: &mut Collector, max_records: usize) -> Result<PollStatus> {
        let mut budget = max_records;
        if let Some(rate) = self.config.records_per_second {
            let now = wasmflow_guest_sdk::log::now_millis();
            let elapsed = (now - self.last_poll_millis).clamp(0, 1000) as u64;
            if elapsed < 10 {
                return Ok(PollStatus::Idle(10));
            }
            self.last_poll_millis = now;
            budget = budget.min(((rate as u64 * elapsed) / 1000).max(1) as usize);
        }
        // No formatting per record: the numbers advance as decimal digits (`decimal`), and key
        // and value are written straight into the output batch. The generator is the
        // benchmarks' source, so it should cost little next to the operators being measured.
        // The loop works on locals, written back after it: the compiler then keeps them in
        // registers instead of reloading them from `self` around every write to the output.
        let prefix = self.config.prefix.as_bytes();
        let (value_bytes, count, step) = (self.config.value_bytes.unwrap_or(0), self.config.count, self.parallelism);
        let (mut next, mut number, mut key) = (self.next, self.number.clone(), self.key.take());
        let mut key_buffer = Vec::new();
        while budget > 0 && next < count {
            let n = next;
            if !self.already_emitted(n) {
                let digits = number.digits();
                let key = match &key {
                    Some(cycle) => {
                        key_buffer.clear();
                        key_buffer.extend_from_slice(b"key-");
                        key_buffer.extend_from_slice(cycle.digits.digits());
                        &key_buffer[..]
                    }
                    None => digits,
                };
                let timestamp = self.config.timestamp(n);
                let padding = value_bytes.saturating_sub(prefix.len() + digits.len());
                out.emit_with(Some(key), timestamp, |value| {
                    value.extend_from_slice(prefix);
                    value.push_repeated(b'0', padding);
                    value.extend_from_slice(digits);
                });
                if let Some(w) = self.watermarks.as_mut() {
                    w.on_event(timestamp);
                }
                budget -= 1;
            }
            next += step;
            number.advance();
            if let Some(cycle) = key.as_mut() {
                cycle.advance();
            }
        }
        (self.next, self.number, self.key) = (next, number, key);
        if let Some(w) = self.watermarks.as_ref().filter(|w| w.has_events()) {
            out.emit_watermark(w.current_watermark());
        }
        Ok(if self.next >= self.config.count { PollStatus::Finished } else { PollStatus::Ready })
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        let state = ctx.get_union_list_state::<Progress>("progress")?;
        self.restored = state.get()?;
        ensure!(self.restored.iter().all(|&(_, p, _)| p > 0), "corrupt generator progress: parallelism 0");
        self.restored_up_to = self.restored.iter().map(|&(_, _, next)| next).max().unwrap_or(0);
        self.state = state;
        Ok(())
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        // Written as progress under the *current* parallelism; restored progress that covers
        // numbers above `next` is carried too, so nothing is emitted twice after another restore.
        let mut progress: Vec<Progress> = vec![(self.index as u32, self.parallelism as u32, self.next)];
        if self.index == 0 {
            progress.extend(self.restored.iter().copied());
        }
        self.state.update(&progress)
    }
}

export_source!(Generator);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::PollStatus;
    use wasmflow_guest_sdk::harness::{OwnedRecord, ParallelHarness};

    use super::WasmflowOperator;

    fn drain(job: &mut ParallelHarness<WasmflowOperator>, max_per_poll: usize, polls: usize) -> Vec<u64> {
        let mut seen = Vec::new();
        for sub in job.subtasks.iter_mut() {
            for _ in 0..polls {
                let (records, status) = sub.poll(max_per_poll).unwrap();
                seen.extend(records.iter().map(|r: &OwnedRecord| r.value_str()["record-".len()..].parse::<u64>().unwrap()));
                if status == PollStatus::Finished {
                    break;
                }
            }
        }
        seen
    }

    #[test]
    fn values_are_padded_to_value_bytes_and_still_parse() {
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("gen", 1, serde_json::json!({"count": 12, "value-bytes": 10})).unwrap();
        let (records, _) = job.subtasks[0].poll(100).unwrap();
        let values: Vec<String> = records.iter().map(OwnedRecord::value_str).collect();
        assert_eq!(values[0], "record-000");
        assert_eq!(values[11], "record-011");
        assert_eq!(drain(&mut ParallelHarness::open_fresh("gen", 1, serde_json::json!({"count": 3, "value-bytes": 64})).unwrap(), 10, 1), vec![0, 1, 2]);
    }

    #[test]
    fn keys_cycle_timestamps_jitter_and_watermarks_follow_the_bound() {
        let config = serde_json::json!({"count": 200, "keys": 3, "jitter-ms": 5, "watermark-delay-ms": 5});
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("gen", 1, config).unwrap();
        let sub = &mut job.subtasks[0];
        let (records, _) = sub.poll(100).unwrap();
        assert_eq!(records[4].key.as_deref(), Some(&b"key-1"[..]));
        let max = records.iter().map(|r| r.timestamp).max().unwrap();
        assert!(records.iter().enumerate().all(|(n, r)| r.timestamp <= n as i64 && r.timestamp >= n as i64 - 5));
        assert!(records.iter().enumerate().any(|(n, r)| r.timestamp < n as i64), "some records are out of order");
        assert_eq!(sub.last_watermark(), Some(max - 5 - 1));
        // No record after the watermark is at or below it: none is late.
        let (more, _) = sub.poll(100).unwrap();
        assert!(more.iter().all(|r| r.timestamp > max - 6));
    }

    /// Keys and numbers are advanced as digits, not formatted: across subtasks, wrap-arounds of
    /// the key cycle and a restore they still say what formatting would.
    #[test]
    fn keys_and_numbers_match_their_formatted_values() {
        let config = serde_json::json!({"count": 500, "keys": 7});
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("gen", 3, config).unwrap();
        for _ in 0..2 {
            for sub in job.subtasks.iter_mut() {
                let (records, _) = sub.poll(60).unwrap();
                for r in &records {
                    let n: u64 = r.value_str()["record-".len()..].parse().unwrap();
                    assert_eq!(r.key.as_deref(), Some(format!("key-{}", n % 7).as_bytes()));
                    assert_eq!(r.timestamp, n as i64);
                }
            }
            job = job.rescale(1, 2).unwrap();
        }
    }

    #[test]
    fn each_number_once_at_parallelism_3() {
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("gen", 3, serde_json::json!({"count": 10})).unwrap();
        let mut seen = drain(&mut job, 100, 10);
        seen.sort();
        assert_eq!(seen, (0..10).collect::<Vec<_>>());
    }

    /// docs/state.md, union lists: union state gives every new subtask all old progress, so a rescale from 3 to 2
    /// and then to 5 emits every remaining number exactly once.
    #[test]
    fn each_number_once_across_rescales() {
        let config = serde_json::json!({"count": 100});
        let mut job = ParallelHarness::<WasmflowOperator>::open_fresh("gen", 3, config.clone()).unwrap();
        let mut seen = drain(&mut job, 4, 2); // 8 records per subtask
        let mut job = job.rescale(1, 2).unwrap();
        seen.extend(drain(&mut job, 5, 3));
        let mut job = job.rescale(2, 5).unwrap();
        seen.extend(drain(&mut job, 1000, 100));
        seen.sort();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
    }
}
