//! The source's lifecycle against an in-memory Kafka, one scenario per rule of
//! README.md, "The Kafka source".

mod fake;

use fake::FakeKafka;
use wasmflow_op_kafka_source::assigner::assign;
use wasmflow_op_kafka_source::config::SourceConfig;
use wasmflow_op_kafka_source::core::{Fetched, KafkaSourceCore, Polled};
use wasmflow_op_kafka_source::sentinel::{EARLIEST_OFFSET, GROUP_OFFSET, LATEST_OFFSET};

/// The values of fetched records, as text.
fn values(fetched: &Fetched) -> Vec<String> {
    fetched.iter().map(|r| String::from_utf8(r.value.to_vec()).unwrap()).collect()
}

fn config(extra: serde_json::Value) -> SourceConfig {
    let mut base = serde_json::json!({"topics": ["t"], "properties": {"bootstrap.servers": "x", "group.id": "g"}});
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

fn offsets(core: &KafkaSourceCore) -> Vec<(String, i32, i64)> {
    core.subscribed().iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect()
}

fn owned(topic: &str, partitions: i32, index: i32, p: i32) -> Vec<i32> {
    (0..partitions).filter(|&x| assign(topic, x, p) == index).collect()
}

/// Polls until no record comes back; returns the values.
fn drain(core: &mut KafkaSourceCore, kafka: &mut FakeKafka) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        match core.poll(kafka, 1000, 0).unwrap() {
            Polled::Records(r) if !r.is_empty() => out.extend(values(&r)),
            _ => return out,
        }
    }
}

#[test]
fn fresh_start_subscribes_own_partitions_with_startup_sentinels() {
    // docs/kafka-source.md §7 fresh path, §3 table.
    for (mode, sentinel) in [("earliest", EARLIEST_OFFSET), ("latest", LATEST_OFFSET), ("group-offsets", GROUP_OFFSET)] {
        let mut kafka = FakeKafka::default().with_topic("t", 8, 5);
        let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": mode})), 1, 3, true, None);
        core.open(&mut kafka).unwrap();
        let expected: Vec<_> = owned("t", 8, 1, 3).into_iter().map(|p| ("t".to_string(), p, sentinel)).collect();
        assert_eq!(offsets(&core), expected, "{mode}");
    }
}

#[test]
fn startup_modes_read_from_the_right_offset() {
    // docs/kafka-source.md §3, §9: sentinels resolve to position - 1 on assignment.
    let read = |extra: serde_json::Value, committed: Option<i64>| {
        let mut kafka = FakeKafka::default().with_topic("t", 1, 5);
        kafka.earliest.insert(("t".into(), 0), 100); // offsets 100..105
        if let Some(c) = committed {
            kafka.committed.insert(("t".into(), 0), c);
        }
        let mut core = KafkaSourceCore::new(config(extra), 0, 1, true, None);
        core.open(&mut kafka).unwrap();
        let values = drain(&mut core, &mut kafka);
        (values.len(), core.subscribed()[&("t".to_string(), 0)])
    };
    assert_eq!(read(serde_json::json!({"startup-mode": "earliest"}), None), (5, 104));
    assert_eq!(read(serde_json::json!({"startup-mode": "latest"}), None), (0, 104));
    assert_eq!(read(serde_json::json!({"startup-mode": "group-offsets"}), Some(103)), (2, 104));
    // No committed offset: auto.offset.reset (Kafka's default: latest).
    assert_eq!(read(serde_json::json!({"startup-mode": "group-offsets"}), None), (0, 104));
    let earliest_reset = serde_json::json!({"startup-mode": "group-offsets", "properties": {"bootstrap.servers": "x", "auto.offset.reset": "earliest"}});
    assert_eq!(read(earliest_reset, None), (5, 104));
    assert_eq!(read(serde_json::json!({"startup-mode": "specific-offsets", "specific-offsets": {"t:0": 102}}), None), (3, 104));
    // Timestamps are 0, 10, 20, 30, 40: ts 15 starts at offset 102; past the end: LATEST.
    assert_eq!(read(serde_json::json!({"startup-mode": "timestamp", "startup-timestamp-ms": 15}), None), (3, 104));
    assert_eq!(read(serde_json::json!({"startup-mode": "timestamp", "startup-timestamp-ms": 45}), None), (0, 104));
}

#[test]
fn restore_ignores_the_startup_mode_and_refilters_the_union() {
    // docs/kafka-source.md §7 restore path: the full union list, filtered by assign(tp, P) == me;
    // new partitions start from EARLIEST; the startup mode is ignored.
    let mut kafka = FakeKafka::default().with_topic("t", 6, 5);
    let restored: Vec<(String, i32, i64)> = (0..4).map(|p| ("t".to_string(), p, 2)).collect(); // partitions 4, 5 are new
    for index in 0..2 {
        let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "latest"})), index, 2, true, Some(restored.clone()));
        core.open(&mut kafka).unwrap();
        let expected: Vec<_> = owned("t", 6, index as i32, 2).into_iter().map(|p| ("t".to_string(), p, if p < 4 { 2 } else { EARLIEST_OFFSET })).collect();
        assert_eq!(offsets(&core), expected, "subtask {index}");
    }
}

#[test]
fn restored_but_empty_is_not_a_fresh_start() {
    // docs/kafka-source.md §6: restored with an empty union list → every partition is "new" → EARLIEST.
    let mut kafka = FakeKafka::default().with_topic("t", 2, 1);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "latest"})), 0, 1, true, Some(vec![]));
    core.open(&mut kafka).unwrap();
    assert_eq!(offsets(&core), vec![("t".into(), 0, EARLIEST_OFFSET), ("t".into(), 1, EARLIEST_OFFSET)]);
}

#[test]
fn unsubscribed_topics_are_dropped_and_unlisted_partitions_kept() {
    // docs/kafka-source.md §7: descriptor filter (default on); partitions in state but missing from metadata stay.
    let mut kafka = FakeKafka::default().with_topic("t", 1, 1).with_topic("old", 1, 1);
    let restored = vec![("t".to_string(), 0, 0), ("t".to_string(), 7, 3), ("old".to_string(), 0, 5)];
    let mut core = KafkaSourceCore::new(config(serde_json::json!({})), 0, 1, true, Some(restored.clone()));
    core.open(&mut kafka).unwrap();
    assert_eq!(offsets(&core), vec![("t".into(), 0, 0), ("t".into(), 7, 3)]);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"filter-restored-partitions-with-subscribed-topics": false})), 0, 1, true, Some(restored));
    core.open(&mut kafka).unwrap();
    assert_eq!(offsets(&core).len(), 3);
}

#[test]
fn no_partitions_at_all_fails_open() {
    // docs/kafka-source.md §7, §12: discoverPartitions throws when metadata has no partitions.
    let mut kafka = FakeKafka::default();
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"topics": [], "topic-pattern": "nothing-.*"})), 0, 1, true, None);
    assert!(core.open(&mut kafka).unwrap_err().starts_with("Unable to retrieve any partitions with KafkaTopicsDescriptor"));
}

#[test]
fn snapshot_before_the_first_poll_writes_planned_offsets_and_never_commits() {
    // docs/kafka-source.md §10: before the fetcher exists the snapshot holds the restored/startup
    // values, and a notification for that checkpoint is ignored (docs/kafka-source.md §11 step 1:
    // nothing before the first poll).
    let mut kafka = FakeKafka::default().with_topic("t", 1, 3);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({})), 0, 1, true, Some(vec![("t".into(), 0, 1)]));
    core.open(&mut kafka).unwrap();
    assert_eq!(core.snapshot(1), vec![("t".into(), 0, 1)]);
    core.notify_checkpoint_complete(&mut kafka, 1).unwrap();
    assert!(kafka.commits.is_empty());
}

#[test]
fn commits_last_emitted_plus_one_only_for_completed_checkpoints() {
    // docs/kafka-source.md §10, §11 with subsumption.
    let mut kafka = FakeKafka::default().with_topic("t", 2, 50);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "earliest"})), 0, 1, true, None);
    core.open(&mut kafka).unwrap();
    assert_eq!(drain(&mut core, &mut kafka).len(), 100);
    core.snapshot(7);
    core.snapshot(8);
    assert!(kafka.commits.is_empty(), "nothing is committed before a checkpoint completes");
    core.notify_checkpoint_complete(&mut kafka, 8).unwrap();
    assert_eq!(kafka.commits, vec![vec![("t".into(), 0, 50), ("t".into(), 1, 50)]]);
    core.notify_checkpoint_complete(&mut kafka, 7).unwrap();
    assert_eq!(kafka.commits.len(), 1, "7 was subsumed by 8");
}

#[test]
fn commit_mode_disabled_and_periodic() {
    // docs/kafka-source.md §4: checkpointing on + commit-on-checkpoints false → never; checkpointing off → periodic.
    let mut kafka = FakeKafka::default().with_topic("t", 1, 5);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "earliest", "commit-offsets-on-checkpoints": false})), 0, 1, true, None);
    core.open(&mut kafka).unwrap();
    drain(&mut core, &mut kafka);
    core.snapshot(1);
    core.notify_checkpoint_complete(&mut kafka, 1).unwrap();
    assert!(kafka.commits.is_empty());

    let mut kafka = FakeKafka::default().with_topic("t", 1, 5);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "earliest"})), 0, 1, false, None);
    core.open(&mut kafka).unwrap();
    core.poll(&mut kafka, 100, 0).unwrap();
    core.poll(&mut kafka, 100, 4999).unwrap();
    assert!(kafka.commits.is_empty());
    core.poll(&mut kafka, 100, 5000).unwrap();
    assert_eq!(kafka.commits, vec![vec![("t".into(), 0, 5)]]);
}

#[test]
fn discovery_adds_new_partitions_from_earliest_once() {
    // docs/kafka-source.md §12: new partitions start from EARLIEST, owner by formula, never one partition twice.
    let mut kafka = FakeKafka::default().with_topic("t", 2, 3);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "latest", "partition-discovery-interval-ms": 100})), 0, 1, true, None);
    core.open(&mut kafka).unwrap();
    assert_eq!(drain(&mut core, &mut kafka).len(), 0, "latest: nothing old");
    kafka.logs.get_mut("t").unwrap().push((0..4).map(|i| (0, format!("new-{i}"))).collect());
    let mut seen = Vec::new();
    for now in [50, 100, 150, 200, 300] {
        if let Polled::Records(r) = core.poll(&mut kafka, 100, now).unwrap() {
            seen.extend(values(&r));
        }
    }
    assert_eq!(seen, vec!["new-0", "new-1", "new-2", "new-3"]);
    assert_eq!(core.subscribed()[&("t".to_string(), 2)], 3);
}

#[test]
fn a_subtask_without_partitions_is_idle_and_bounded_mode_finishes() {
    // docs/kafka-source.md §8 step 5: no partitions → idle.
    let mut kafka = FakeKafka::default().with_topic("t", 1, 3);
    let idle_index = if assign("t", 0, 2) == 0 { 1 } else { 0 };
    let mut core = KafkaSourceCore::new(config(serde_json::json!({})), idle_index, 2, true, None);
    core.open(&mut kafka).unwrap();
    assert_eq!(core.poll(&mut kafka, 10, 0).unwrap(), Polled::Idle);
    // Bounded: stops at the offsets latest at start.
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "earliest", "bounded": true})), 0, 1, true, None);
    core.open(&mut kafka).unwrap();
    assert_eq!(drain(&mut core, &mut kafka).len(), 3);
    assert_eq!(core.poll(&mut kafka, 10, 0).unwrap(), Polled::Finished);
}

/// docs/kafka-source.md §13, Flink's `testPeriodicWatermarks`: one generator per partition, the
/// source's watermark is the lowest: partition maxima 3 / 12 / 102 give 3 (minus the bound and
/// one). (How the minimum moves when a partition advances is `PartitionWatermarks`'s test.)
#[test]
fn watermarks_are_generated_per_partition_and_the_lowest_is_emitted() {
    use wasmflow_guest_sdk::{Collector, PollStatus, RuntimeContext, Source};
    use wasmflow_op_kafka_source::KafkaSource;

    let mut kafka = FakeKafka::default();
    kafka.logs.insert("t".into(), vec![vec![(1, "a".into()), (3, "b".into())], vec![(12, "c".into())], vec![(102, "d".into())]]);
    let config = serde_json::json!({"topics": ["t"], "startup-mode": "earliest", "watermark-delay-ms": 0, "properties": {"group.id": "g"}});
    let ctx = RuntimeContext::new("kafka", 0, 1, config.clone());
    let mut source = KafkaSource::create(&ctx).unwrap().with_client(Box::new(kafka));
    source.open().unwrap();
    let mut out = Collector::new();
    assert_eq!(source.poll(&mut out, 100).unwrap(), PollStatus::Ready);
    assert_eq!(out.len(), 4);
    assert_eq!(out.watermark(), Some(3 - 1));

    // A subtask without partitions marks itself idle (docs/kafka-source.md §8), so downstream
    // watermarks do not wait for it.
    let mut kafka = FakeKafka::default().with_topic("t", 1, 3);
    let idle_index = if assign("t", 0, 2) == 0 { 1 } else { 0 };
    let ctx = RuntimeContext::new("kafka", idle_index as u32, 2, config);
    let mut source = KafkaSource::create(&ctx).unwrap().with_client(Box::new(std::mem::take(&mut kafka)));
    source.open().unwrap();
    let mut out = Collector::new();
    assert!(matches!(source.poll(&mut out, 100).unwrap(), PollStatus::Idle(_)));
    let polled = out.into_source_output(PollStatus::Ready);
    assert!(polled.idle && polled.watermark.is_none());
}

/// A fetch holds runs of several partitions, interleaved, with records redelivered from before
/// the position (a reconnect): each partition's position is kept across its runs, so exactly the
/// new records come out, once, and the state holds each partition's last one.
#[test]
fn interleaved_runs_and_redeliveries_emit_each_new_record_once() {
    let mut kafka = FakeKafka::default().with_topic("t", 2, 10);
    let mut core = KafkaSourceCore::new(config(serde_json::json!({"startup-mode": "earliest"})), 0, 1, true, None);
    core.open(&mut kafka).unwrap();
    assert_eq!(drain(&mut core, &mut kafka).len(), 20);
    let t = |p: i32, o: i64| ("t".to_string(), p, o);
    kafka.next_fetch = Some(vec![t(0, 9), t(1, 3), t(0, 10), t(0, 11), t(1, 10), t(0, 10), t(1, 9), t(1, 11), t(0, 12)]);
    let Polled::Records(records) = core.poll(&mut kafka, 1000, 0).unwrap() else { panic!("records expected") };
    assert_eq!(values(&records), ["t-0@10", "t-0@11", "t-1@10", "t-1@11", "t-0@12"]);
    assert_eq!(offsets(&core), [t(0, 12), t(1, 11)]);
}
