//! The records of one fetch, column by column as the host hands them over.
//!
//! Keys, values and timestamps are already an output [`Batch`] (the contract lays a fetch out
//! like a batch), so when the source keeps every record of a fetch — the usual case — it emits
//! that batch as it is: no record is copied in the guest. The Kafka coordinates sit beside it,
//! one list per field.

use std::ops::Range;
use std::rc::Rc;

use wasmflow_guest_sdk::{Batch, Columns};

/// One record of a [`Fetched`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KafkaRecord<'a> {
    pub topic: &'a Rc<str>,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

/// A run of records of one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run<'a> {
    pub topic: &'a Rc<str>,
    pub partition: i32,
    /// The run's records, as indexes into the fetch.
    pub records: Range<usize>,
}

/// Records of one fetch: keys, values and timestamps as a [`Batch`], and each record's topic,
/// partition and offset.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    /// Shared by the records of the fetch (one allocation per topic, not per record).
    topics: Vec<Rc<str>>,
    topic_indexes: Vec<u32>,
    partitions: Vec<i32>,
    offsets: Vec<i64>,
    records: Batch,
}

impl Fetched {
    /// A fetch from the host's columns, checked: one entry per record in every list, topic
    /// indexes within `topics`, lengths that add up to the data (an error, not a panic later).
    pub fn new(topics: Vec<String>, columns: Columns, topic_indexes: Vec<u32>, partitions: Vec<i32>, offsets: Vec<i64>) -> Result<Fetched, String> {
        let records = Batch::from_columns(columns).map_err(|e| format!("the host's fetch: {e}"))?;
        let n = records.len();
        if topic_indexes.len() != n || partitions.len() != n || offsets.len() != n {
            return Err(format!(
                "the host's fetch has {n} records but {} topic indexes, {} partitions and {} offsets",
                topic_indexes.len(),
                partitions.len(),
                offsets.len()
            ));
        }
        if let Some(i) = topic_indexes.iter().find(|&&i| i as usize >= topics.len()) {
            return Err(format!("the host's fetch names topic {i} of {}", topics.len()));
        }
        let topics = topics.into_iter().map(Rc::from).collect();
        Ok(Fetched { topics, topic_indexes, partitions, offsets, records })
    }

    /// Appends a record (tests build fetches this way).
    pub fn push(&mut self, topic: Rc<str>, partition: i32, offset: i64, timestamp: i64, key: Option<&[u8]>, value: &[u8]) {
        let index = match self.topics.iter().position(|t| *t == topic) {
            Some(i) => i,
            None => {
                self.topics.push(topic);
                self.topics.len() - 1
            }
        };
        self.topic_indexes.push(index as u32);
        self.partitions.push(partition);
        self.offsets.push(offset);
        self.records.push(key, value, timestamp);
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Record `i`'s offset.
    pub fn offset(&self, i: usize) -> i64 {
        self.offsets[i]
    }

    /// The records, in order.
    pub fn iter(&self) -> impl Iterator<Item = KafkaRecord<'_>> {
        self.records.iter().enumerate().map(|(i, r)| KafkaRecord {
            topic: &self.topics[self.topic_indexes[i] as usize],
            partition: self.partitions[i],
            offset: self.offsets[i],
            timestamp: r.timestamp,
            key: r.key,
            value: r.value,
        })
    }

    /// The records in runs of one partition (records come from Kafka that way), so what is
    /// looked up per partition is looked up once per run.
    pub fn runs(&self) -> impl Iterator<Item = Run<'_>> {
        let mut start = 0;
        std::iter::from_fn(move || {
            let first = start;
            let of = |i: usize| (self.topic_indexes[i], self.partitions[i]);
            let len = (first..self.len()).take_while(|&i| of(i) == of(first)).count();
            start += len;
            (len > 0).then(|| Run { topic: &self.topics[self.topic_indexes[first] as usize], partition: self.partitions[first], records: first..start })
        })
    }

    /// The highest timestamp of `records`.
    pub fn highest_timestamp(&self, records: Range<usize>) -> i64 {
        let (_, _, _, timestamps) = self.records.column_slices();
        timestamps[records].iter().copied().fold(i64::MIN, i64::max)
    }

    /// Keeps the records for which `keep` (by index) is true.
    pub fn retain(&mut self, keep: &[bool]) {
        let mut kept = Fetched { topics: self.topics.clone(), ..Fetched::default() };
        for (i, r) in self.records.iter().enumerate().filter(|&(i, _)| keep[i]) {
            kept.topic_indexes.push(self.topic_indexes[i]);
            kept.partitions.push(self.partitions[i]);
            kept.offsets.push(self.offsets[i]);
            kept.records.push(r.key, r.value, r.timestamp);
        }
        *self = kept;
    }

    /// The keys, values and timestamps, as a batch to emit (moved, not copied).
    pub fn into_batch(self) -> Batch {
        self.records
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fetch_reads_back_by_record_and_by_run() {
        let f = Fetched::new(
            vec!["a".into(), "b".into()],
            Columns::from_slices(b"k1v1v2v3", &[2, -1, -1], &[2, 2, 2], &[5, 6, 4]),
            vec![0, 0, 1],
            vec![0, 0, 0],
            vec![1, 2, 9],
        )
        .unwrap();
        let read: Vec<_> = f.iter().map(|r| (&**r.topic, r.partition, r.offset, r.timestamp, r.key, r.value)).collect();
        assert_eq!(read, [("a", 0, 1, 5, Some(&b"k1"[..]), &b"v1"[..]), ("a", 0, 2, 6, None, &b"v2"[..]), ("b", 0, 9, 4, None, &b"v3"[..])]);
        let runs: Vec<_> = f.runs().map(|r| (r.topic.to_string(), r.partition, r.records)).collect();
        assert_eq!(runs, [("a".to_string(), 0, 0..2), ("b".to_string(), 0, 2..3)]);
        assert_eq!(f.highest_timestamp(0..2), 6);
        let batch = f.into_batch();
        assert_eq!(batch.iter().map(|r| r.value).collect::<Vec<_>>(), [b"v1", b"v2", b"v3"]);
    }

    #[test]
    fn a_fetch_that_does_not_add_up_is_an_error() {
        let bad = |c: Columns, t: Vec<u32>, p: Vec<i32>, o: Vec<i64>| Fetched::new(vec!["a".into()], c, t, p, o).unwrap_err();
        assert_eq!(
            bad(Columns::from_slices(b"abc", &[-1], &[2], &[0]), vec![0], vec![0], vec![0]),
            "the host's fetch: record lengths add up to 2 bytes but the data has 3"
        );
        assert_eq!(
            bad(Columns::from_slices(b"ab", &[-1], &[2], &[0]), vec![0], vec![], vec![0]),
            "the host's fetch has 1 records but 1 topic indexes, 0 partitions and 1 offsets"
        );
        assert_eq!(bad(Columns::from_slices(b"ab", &[-1], &[2], &[0]), vec![1], vec![0], vec![0]), "the host's fetch names topic 1 of 1");
    }

    #[test]
    fn retain_keeps_the_chosen_records_with_their_coordinates() {
        let mut f = Fetched::default();
        let t: Rc<str> = "t".into();
        for offset in 0..4 {
            f.push(t.clone(), offset as i32 % 2, offset, offset * 10, None, format!("v{offset}").as_bytes());
        }
        f.retain(&[true, false, false, true]);
        let read: Vec<_> = f.iter().map(|r| (r.partition, r.offset, r.timestamp, r.value.to_vec())).collect();
        assert_eq!(read, [(0, 0, 0, b"v0".to_vec()), (1, 3, 30, b"v3".to_vec())]);
    }
}
