//! An in-memory Kafka for unit tests of the source's logic (the end-to-end tests use a real
//! broker). It records what the source asked for, so tests can assert assignments and commits.
#![allow(dead_code)]

use std::collections::BTreeMap;

use wasmflow_op_kafka_source::core::{Fetched, KafkaClient, Tp};

#[derive(Default)]
pub struct FakeKafka {
    /// topic → partitions → records (offset = index + earliest).
    pub logs: BTreeMap<String, Vec<Vec<(i64, String)>>>,
    /// First available offset per partition (retention).
    pub earliest: BTreeMap<Tp, i64>,
    pub committed: BTreeMap<Tp, i64>,
    pub assigned: BTreeMap<Tp, i64>,
    pub commits: Vec<Vec<(String, i32, i64)>>,
    /// What the next fetch returns instead of reading the logs: (topic, partition, offset)
    /// in this order, with value `<topic>-<partition>@<offset>` (redeliveries, interleavings).
    pub next_fetch: Option<Vec<(String, i32, i64)>>,
}

impl FakeKafka {
    pub fn with_topic(mut self, topic: &str, partitions: usize, records_each: usize) -> Self {
        let parts = (0..partitions).map(|p| (0..records_each).map(|i| (i as i64 * 10, format!("{topic}-{p}-{i}"))).collect()).collect();
        self.logs.insert(topic.to_string(), parts);
        self
    }

    fn end(&self, tp: &Tp) -> i64 {
        self.earliest.get(tp).copied().unwrap_or(0) + self.logs[&tp.0][tp.1 as usize].len() as i64
    }
}

impl KafkaClient for FakeKafka {
    fn list_topics(&mut self) -> Result<Vec<String>, String> {
        Ok(self.logs.keys().cloned().collect())
    }
    fn list_partitions(&mut self, topics: &[String]) -> Result<Vec<Tp>, String> {
        let mut out = Vec::new();
        for t in topics {
            let parts = self.logs.get(t).ok_or_else(|| format!("topic '{t}' does not exist"))?;
            out.extend((0..parts.len() as i32).map(|p| (t.clone(), p)));
        }
        Ok(out)
    }
    fn assign(&mut self, partitions: &[(String, i32, i64)]) -> Result<(), String> {
        for (t, p, o) in partitions {
            assert!(!self.assigned.contains_key(&(t.clone(), *p)), "{t}/{p} assigned twice");
            self.assigned.insert((t.clone(), *p), *o);
        }
        Ok(())
    }
    fn earliest_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
        Ok(p.iter().map(|tp| (tp.0.clone(), tp.1, self.earliest.get(tp).copied().unwrap_or(0))).collect())
    }
    fn latest_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
        Ok(p.iter().map(|tp| (tp.0.clone(), tp.1, self.end(tp))).collect())
    }
    fn committed_offsets(&mut self, p: &[Tp]) -> Result<Vec<(String, i32, i64)>, String> {
        Ok(p.iter().map(|tp| (tp.0.clone(), tp.1, self.committed.get(tp).copied().unwrap_or(-1))).collect())
    }
    fn offsets_for_timestamp(&mut self, p: &[Tp], ts: i64) -> Result<Vec<(String, i32, i64)>, String> {
        Ok(p.iter()
            .map(|tp| {
                let base = self.earliest.get(tp).copied().unwrap_or(0);
                let found = self.logs[&tp.0][tp.1 as usize].iter().position(|(t, _)| *t >= ts).map_or(-1, |i| base + i as i64);
                (tp.0.clone(), tp.1, found)
            })
            .collect())
    }
    fn fetch(&mut self, max_records: u32, _timeout_ms: u32) -> Result<Fetched, String> {
        let mut out = Fetched::default();
        if let Some(given) = self.next_fetch.take() {
            for (t, p, o) in given {
                out.push(t.as_str().into(), p, o, 0, None, format!("{t}-{p}@{o}").as_bytes());
            }
            return Ok(out);
        }
        let keys: Vec<Tp> = self.assigned.keys().cloned().collect();
        for tp in keys {
            let base = self.earliest.get(&tp).copied().unwrap_or(0);
            loop {
                let next = self.assigned[&tp];
                let log = &self.logs[&tp.0][tp.1 as usize];
                let Some((ts, v)) = log.get((next - base) as usize) else { break };
                if out.len() >= max_records as usize {
                    return Ok(out);
                }
                out.push(tp.0.as_str().into(), tp.1, next, *ts, None, v.as_bytes());
                self.assigned.insert(tp.clone(), next + 1);
            }
        }
        Ok(out)
    }
    fn commit(&mut self, offsets: &[(String, i32, i64)]) -> Result<(), String> {
        for (t, p, o) in offsets {
            self.committed.insert((t.clone(), *p), *o);
        }
        self.commits.push(offsets.to_vec());
        Ok(())
    }
}
