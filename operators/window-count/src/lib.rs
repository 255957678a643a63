//! A keyed tumbling event-time window count: Flink's
//! `keyBy(key).window(TumblingEventTimeWindows.of(size)).allowedLateness(0).count()`.
//!
//! Each record falls into the window `[start, start + size)` of its timestamp. The counts of the
//! open windows of a key live in keyed [`MapState`] (window end → count), and an event-time
//! timer at the window's last millisecond (`end - 1`, Flink's `maxTimestamp`) emits the count and
//! drops the window when the watermark passes it. A record whose window has already fired
//! (its `end - 1` is at or below the watermark) is late: allowed lateness is 0, so it is not
//! counted; late records are counted per subtask (in operator state, so the count survives
//! restarts), logged, and with `late = "emit"` also sent downstream.
//!
//! Output, one record per (key, window): key = the key, timestamp = `end - 1`, value =
//! `{"key":"<key>","start":<ms>,"end":<ms>,"count":<n>}`; a late record with `late = "emit"`:
//! `{"key":"<key>","late":<timestamp>}`.

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WindowConfig {
    /// Window length in milliseconds of event time.
    pub size_ms: u64,
    /// What to do with late records: `"drop"` (default, counted and logged) or `"emit"` (also
    /// sent downstream, Flink's side output of late data).
    #[serde(default)]
    pub late: Late,
}

/// See [`WindowConfig::late`].
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Late {
    /// Counted and logged only.
    #[default]
    Drop,
    /// Also emitted downstream.
    Emit,
}

/// See the crate documentation.
pub struct WindowCount {
    size: i64,
    late_mode: Late,
    /// Open windows of the current key: window end → count.
    windows: MapState<i64, u64>,
    /// Late records dropped by this subtask, since the job's first start.
    late: u64,
    late_logged: u64,
    late_state: ListState<u64>,
}

impl WindowCount {
    fn window_end(&self, timestamp: i64) -> i64 {
        timestamp - timestamp.rem_euclid(self.size) + self.size
    }
}

fn json_key(key: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(key)).expect("a string serializes")
}

impl KeyedProcessFunction for WindowCount {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: WindowConfig = ctx.config()?;
        ensure!(config.size_ms > 0 && config.size_ms <= i64::MAX as u64 / 2, "size-ms must be positive");
        Ok(WindowCount {
            size: config.size_ms as i64,
            late_mode: config.late,
            windows: MapState::default(),
            late: 0,
            late_logged: 0,
            late_state: ListState::default(),
        })
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        self.windows = ctx.get_map_state("windows")?;
        self.late_state = ctx.get_list_state("late-records")?;
        // After a rescale a subtask may get several counts, or none.
        self.late = self.late_state.get()?.iter().sum();
        self.late_logged = self.late;
        Ok(())
    }

    fn process_element(&mut self, record: Record<'_>, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
        let end = self.window_end(record.timestamp);
        let timers = ctx.timer_service();
        if end - 1 <= timers.current_watermark() {
            self.late += 1;
            if self.late_mode == Late::Emit {
                out.emit(Some(ctx.key()), format!("{{\"key\":{},\"late\":{}}}", json_key(ctx.key()), record.timestamp).as_bytes(), record.timestamp);
            }
            return Ok(());
        }
        let count = self.windows.get(&end)?.unwrap_or(0);
        self.windows.put(&end, &(count + 1))?;
        if count == 0 {
            timers.register_event_time_timer(end - 1)?;
        }
        Ok(())
    }

    fn on_timer(&mut self, timestamp: i64, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
        let end = timestamp + 1;
        if let Some(count) = self.windows.get(&end)? {
            let value = format!("{{\"key\":{},\"start\":{},\"end\":{end},\"count\":{count}}}", json_key(ctx.key()), end - self.size);
            out.emit(Some(ctx.key()), value.as_bytes(), timestamp);
            self.windows.remove(&end)?;
        }
        Ok(())
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        self.late_state.update(&[self.late])
    }

    fn notify_checkpoint_complete(&mut self, _checkpoint_id: u64) -> Result<()> {
        if self.late > self.late_logged {
            warn!("{} late records dropped so far (allowed lateness 0)", self.late);
            self.late_logged = self.late;
        }
        Ok(())
    }
}

export_keyed!(WindowCount);

#[cfg(test)]
mod tests {
    use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord, ParallelHarness};

    use super::WasmflowOperator;

    fn rec(key: &str, ts: i64) -> OwnedRecord {
        OwnedRecord::keyed(key, "x").at(ts)
    }

    fn values(out: Vec<OwnedRecord>) -> Vec<String> {
        out.iter().map(OwnedRecord::value_str).collect()
    }

    #[test]
    fn windows_fire_when_the_watermark_passes_their_end_in_time_order() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("w", 0, 1, serde_json::json!({"size-ms": 10})).unwrap();
        assert!(h.process(&[rec("a", 1), rec("a", 9), rec("a", 10), rec("b", 3), rec("a", 25)]).unwrap().is_empty());
        assert!(h.advance_watermark(8).unwrap().is_empty());
        assert_eq!(
            values(h.advance_watermark(19).unwrap()),
            [r#"{"key":"a","start":0,"end":10,"count":2}"#, r#"{"key":"b","start":0,"end":10,"count":1}"#, r#"{"key":"a","start":10,"end":20,"count":1}"#]
        );
        assert_eq!(values(h.advance_watermark(i64::MAX).unwrap()), [r#"{"key":"a","start":20,"end":30,"count":1}"#]);
    }

    #[test]
    fn late_records_are_not_counted_and_can_be_emitted() {
        let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("w", 0, 1, serde_json::json!({"size-ms": 10, "late": "emit"})).unwrap();
        h.process(&[rec("a", 5)]).unwrap();
        assert_eq!(values(h.advance_watermark(9).unwrap()), [r#"{"key":"a","start":0,"end":10,"count":1}"#]);
        // Window [0, 10) has fired: a record at 7 is late; one at 10 opens the next window.
        assert_eq!(values(h.process(&[rec("a", 7), rec("a", 10)]).unwrap()), [r#"{"key":"a","late":7}"#]);
        assert_eq!(values(h.advance_watermark(100).unwrap()), [r#"{"key":"a","start":10,"end":20,"count":1}"#]);
        let snapshot = h.snapshot(1).unwrap();
        let late = snapshot.states.iter().find(|s| s.name == "late-records").unwrap();
        assert_eq!(late.value, wasmflow_state::StateValue::List(vec![wasmflow_guest_sdk::state::encode(&1u64).unwrap()]));
    }

    /// Open windows and their timers move with their keys on a rescale 2 → 3 → 1.
    #[test]
    fn open_windows_survive_a_rescale() {
        let keys: Vec<String> = (0..30).map(|i| format!("k{i}")).collect();
        let input: Vec<OwnedRecord> = keys.iter().flat_map(|k| [rec(k, 1), rec(k, 12)]).collect();
        let mut h = ParallelHarness::<WasmflowOperator>::open_fresh("w", 2, serde_json::json!({"size-ms": 10})).unwrap();
        h.process(&input).unwrap();
        let mut h = h.rescale(1, 3).unwrap().rescale(2, 1).unwrap();
        h.process(&input).unwrap();
        let mut out = values(h.advance_watermark(i64::MAX).unwrap());
        out.sort();
        let mut expected: Vec<String> = keys
            .iter()
            .flat_map(|k| [format!(r#"{{"key":"{k}","start":0,"end":10,"count":2}}"#), format!(r#"{{"key":"{k}","start":10,"end":20,"count":2}}"#)])
            .collect();
        expected.sort();
        assert_eq!(out, expected);
    }
}
