//! What crosses into a guest: a transform or sink is lent its input batch and copies the records
//! into its memory only if it reads them (contract 0.5.0, `input-batch`).

use std::time::Duration;

use wasmflow_host::engine::host::StoreData;
use wasmflow_host::engine::{Engine, OperatorModule, WasmInstance};
use wasmflow_host::instance::OperatorInstance;
use wasmflow_host::job::LimitsSpec;
use wasmflow_host::runtime::limits::subtask_limits;
use wasmflow_state::{OperatorStateStore, StateLimits};
use wasmflow_tests::operator;
use wasmflow_types::{Batch, SubtaskTag, TaskInfo};

/// 16 records of 1 MiB each: far more than a guest needs for anything but holding them.
const RECORD_BYTES: usize = 1 << 20;
const RECORDS: usize = 16;

fn big_batch() -> Batch {
    let mut batch = Batch::new();
    for i in 0..RECORDS {
        batch.push(Some(format!("k{i}").as_bytes()), &vec![b'a' + i as u8; RECORD_BYTES], i as i64);
    }
    batch
}

/// Runs `name` with `config` through one `process` call on [`big_batch`]; returns the output and
/// the guest's linear memory afterwards.
async fn process_big_batch(name: &str, config: &str) -> (Batch, usize) {
    let engine = Engine::new().unwrap();
    let module = OperatorModule::load(&engine, &operator(name), &Default::default()).unwrap();
    // A job file's default limits: 256 MiB of memory, batches up to 64 MiB.
    let (limits, _) = subtask_limits(&LimitsSpec::default(), None);
    let state = OperatorStateStore::new(StateLimits::default()).into();
    let data = StoreData::new(SubtaskTag { operator: name.into(), subtask: 0 }, state, &limits, None);
    let mut instance = WasmInstance::instantiate(&engine, &module, data, Duration::from_secs(30)).await.unwrap();
    let info = TaskInfo { operator_id: name.into(), subtask_index: 0, parallelism: 1, checkpointing_enabled: false, attempt: 1 };
    instance.create(info, config.into()).await.unwrap();
    instance.initialize_state(None).await.unwrap();
    instance.open().await.unwrap();
    let out = instance.process(big_batch()).await.unwrap();
    (out, instance.data().guest_memory_bytes())
}

fn values(batch: &Batch) -> Vec<Vec<u8>> {
    batch.iter().map(|r| r.value.to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transform_that_forwards_its_input_never_copies_it_into_its_memory() {
    let (out, memory) = process_big_batch("counter", r#"{"emit-count-on-close": false}"#).await;
    assert_eq!(out, big_batch(), "the counter forwards its input unchanged");
    assert!(memory < RECORDS * RECORD_BYTES / 4, "the counter's memory grew to {memory} bytes for a batch it only counts");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sink_that_ignores_its_input_never_copies_it_into_its_memory() {
    let (out, memory) = process_big_batch("null-sink", "{}").await;
    assert!(out.is_empty());
    assert!(memory < RECORDS * RECORD_BYTES / 4, "the null sink's memory grew to {memory} bytes for a batch it ignores");
}

/// The measure above can fail: an operator that reads its records holds them.
#[tokio::test(flavor = "multi_thread")]
async fn a_transform_that_reads_its_input_gets_every_record() {
    let (out, memory) = process_big_batch("uppercase", "{}").await;
    let expected: Vec<Vec<u8>> = (0..RECORDS).map(|i| vec![(b'a' + i as u8).to_ascii_uppercase(); RECORD_BYTES]).collect();
    assert_eq!(values(&out), expected);
    assert!(memory >= RECORDS * RECORD_BYTES, "the uppercase operator read 16 MiB into {memory} bytes of memory");
}
