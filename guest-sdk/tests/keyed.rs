//! Keyed operators in the native harness: per-key state, timers, watermarks, rescale, and the
//! errors for keyed state used where there is no key.

use wasmflow_guest_sdk::harness::{OperatorHarness, OwnedRecord, ParallelHarness};
use wasmflow_guest_sdk::prelude::*;

/// Sums values per key; at the event-time timer `timestamp` it emits `key=sum` and forgets it.
#[derive(Default)]
struct SumUntil {
    sum: ValueState<u64>,
    seen: MapState<i64, u32>,
    max: ReducingState<u64>,
}

impl KeyedProcessFunction for SumUntil {
    fn create(_ctx: &RuntimeContext) -> Result<Self> {
        Ok(SumUntil::default())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        self.sum = ctx.get_state("sum")?;
        self.seen = ctx.get_map_state("seen")?;
        self.max = ctx.get_reducing_state("max", |a: u64, b| a.max(b))?;
        Ok(())
    }

    fn process_element(&mut self, record: Record<'_>, ctx: &KeyedContext<'_>, _out: &mut Collector) -> Result<()> {
        let v: u64 = record.value_str().unwrap().parse()?;
        self.sum.update(&(self.sum.value()?.unwrap_or(0) + v))?;
        self.seen.put(&record.timestamp, &1)?;
        self.max.add(v)?;
        // Every record asks for the same timer: one timer per (key, timestamp).
        ctx.timer_service().register_event_time_timer(100)
    }

    fn on_timer(&mut self, timestamp: i64, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
        assert_eq!(ctx.time_domain(), Some(TimeDomain::EventTime));
        let text = format!("{}={}/{}/{}", String::from_utf8_lossy(ctx.key()), self.sum.value()?.unwrap(), self.seen.entries()?.len(), self.max.get()?.unwrap());
        out.emit(Some(ctx.key()), text.as_bytes(), timestamp);
        self.sum.clear()?;
        self.seen.clear()?;
        self.max.clear()
    }
}

wasmflow_guest_sdk::export_keyed!(SumUntil);

fn rec(key: &str, value: u64, ts: i64) -> OwnedRecord {
    OwnedRecord::keyed(key, value.to_string()).at(ts)
}

fn sorted(mut v: Vec<OwnedRecord>) -> Vec<String> {
    v.sort_by(|a, b| a.key.cmp(&b.key));
    v.iter().map(OwnedRecord::value_str).collect()
}

#[test]
fn state_is_per_key_and_timers_fire_at_the_watermark() {
    let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("sum", 0, 1, serde_json::json!({})).unwrap();
    assert!(h.process(&[rec("a", 1, 10), rec("b", 5, 11), rec("a", 2, 12)]).unwrap().is_empty());
    assert_eq!(h.keyed_value::<u64>("sum", b"a").unwrap(), Some(3));
    assert_eq!(h.timer_counts(), (2, 0), "one timer per key, deduplicated");
    assert!(h.advance_watermark(99).unwrap().is_empty());
    let fired = h.advance_watermark(100).unwrap();
    assert_eq!(sorted(fired), ["a=3/2/2", "b=5/1/5"]);
    assert_eq!(h.keyed_value::<u64>("sum", b"a").unwrap(), None);
    assert_eq!(h.timer_counts(), (0, 0));
}

/// Written at parallelism 2, restored at 3 and then 1: the sums and the pending timers follow
/// their keys, and every key fires once with its whole sum.
#[test]
fn keyed_state_and_timers_survive_a_rescale() {
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let mut h = ParallelHarness::<WasmflowOperator>::open_fresh("sum", 2, serde_json::json!({})).unwrap();
    let input: Vec<OwnedRecord> = keys.iter().enumerate().map(|(i, k)| rec(k, i as u64, 1)).collect();
    h.process(&input).unwrap();
    let h = h.rescale(1, 3).unwrap();
    let mut h = h.rescale(2, 1).unwrap();
    h.process(&input).unwrap();
    let fired = h.advance_watermark(i64::MAX).unwrap();
    let mut expected: Vec<String> = keys.iter().enumerate().map(|(i, k)| format!("{k}={}/1/{i}", 2 * i)).collect();
    expected.sort_by(|a, b| a.split('=').next().cmp(&b.split('=').next()));
    assert_eq!(sorted(fired), expected);
}

/// Keyed state outside `process_element`/`on_timer` has no key: the error says where to use it.
#[derive(Default)]
struct ReadsInOpen {
    count: ValueState<u64>,
}

impl KeyedProcessFunction for ReadsInOpen {
    fn create(_ctx: &RuntimeContext) -> Result<Self> {
        Ok(Self::default())
    }
    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        self.count = ctx.get_state("count")?;
        Ok(())
    }
    fn open(&mut self) -> Result<()> {
        self.count.value().map(|_| ())
    }
    fn process_element(&mut self, _record: Record<'_>, _ctx: &KeyedContext<'_>, _out: &mut Collector) -> Result<()> {
        Ok(())
    }
}

mod reads_in_open {
    wasmflow_guest_sdk::export_keyed!(super::ReadsInOpen);
}

#[test]
fn keyed_state_without_a_key_and_a_record_without_a_key_are_clear_errors() {
    let err = OperatorHarness::<reads_in_open::WasmflowOperator>::open_fresh("r", 0, 1, serde_json::json!({})).err().unwrap().to_string();
    assert!(err.starts_with("keyed state 'count' used outside a keyed context"), "{err}");
    let mut h = OperatorHarness::<WasmflowOperator>::open_fresh("sum", 0, 1, serde_json::json!({})).unwrap();
    let err = h.process(&[OwnedRecord::value("1")]).unwrap_err().to_string();
    assert!(err.starts_with("a keyed operator got a record without a key"), "{err}");
}
