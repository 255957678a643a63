//! Fetched records, stored column by column the way the contract's `fetched-batch` carries them
//! to a guest.
//!
//! Every record's key and value go back to back into one buffer, its coordinates into one list
//! per field, its topic as an index into a short list of names. The poll thread appends
//! librdkafka's messages to such a batch directly, so a record costs no allocation of its own
//! anywhere on its way to the guest (an owned topic, key and value per record were a third of the
//! source's CPU), and a fetch moves records between batches a run of one partition at a time,
//! one bulk copy per column (per-record copies of a list of records, and lowering such a list
//! into the guest field by field, were the next quarter).

use std::ops::Range;

/// A header of one record of a [`Fetched`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    /// Index of the record in its batch.
    pub record: u32,
    pub key: String,
    pub value: Option<Vec<u8>>,
}

/// Records of one or more topics: names, key and value bytes, and coordinates, one list per
/// field with one entry per record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub topics: Vec<String>,
    /// Every record's key (if any) and value, back to back.
    pub data: Vec<u8>,
    /// -1 for a record without key.
    pub key_lens: Vec<i32>,
    pub value_lens: Vec<u32>,
    pub timestamps: Vec<i64>,
    /// Index into [`Fetched::topics`].
    pub topic_indexes: Vec<u32>,
    pub partitions: Vec<i32>,
    pub offsets: Vec<i64>,
    /// Headers of the records that have any, in record order (usually none).
    pub headers: Vec<RecordHeader>,
}

/// One record of a [`Fetched`], borrowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchedRecord<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
}

impl Fetched {
    /// An empty batch with room for `records` records of `bytes` bytes in all.
    pub fn with_capacity(records: usize, bytes: usize) -> Fetched {
        Fetched {
            topics: Vec::new(),
            data: Vec::with_capacity(bytes),
            key_lens: Vec::with_capacity(records),
            value_lens: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
            topic_indexes: Vec::with_capacity(records),
            partitions: Vec::with_capacity(records),
            offsets: Vec::with_capacity(records),
            headers: Vec::new(),
        }
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// The index of `topic` in [`Fetched::topics`], added if new. A fetch holds a few topics and
    /// records come in runs of one, so the last one is checked first.
    pub fn topic_index(&mut self, topic: &str) -> u32 {
        if self.topics.last().is_some_and(|t| t == topic) {
            return self.topics.len() as u32 - 1;
        }
        match self.topics.iter().position(|t| t == topic) {
            Some(i) => i as u32,
            None => {
                self.topics.push(topic.to_string());
                self.topics.len() as u32 - 1
            }
        }
    }

    /// Appends a record (its topic added to the names if new) and its headers.
    pub fn push(&mut self, record: FetchedRecord<'_>, headers: impl IntoIterator<Item = (String, Option<Vec<u8>>)>) {
        let FetchedRecord { topic, partition, offset, timestamp, key, value } = record;
        let index = self.len() as u32;
        self.headers.extend(headers.into_iter().map(|(key, value)| RecordHeader { record: index, key, value }));
        let topic = self.topic_index(topic);
        let key_len = match key {
            Some(k) => {
                self.data.extend_from_slice(k);
                k.len() as i32
            }
            None => -1,
        };
        self.data.extend_from_slice(value);
        self.key_lens.push(key_len);
        self.value_lens.push(value.len() as u32);
        self.timestamps.push(timestamp);
        self.topic_indexes.push(topic);
        self.partitions.push(partition);
        self.offsets.push(offset);
    }

    /// Bytes of record `i`'s key and value.
    fn record_bytes(&self, i: usize) -> usize {
        self.key_lens[i].max(0) as usize + self.value_lens[i] as usize
    }

    /// Appends records `records` of `from`, whose bytes are `bytes` of its data and whose topic
    /// is `topic`: one copy per column.
    fn append_span(&mut self, from: &Fetched, records: Range<usize>, bytes: Range<usize>, topic: &str, headers: &[RecordHeader]) {
        let (first, shift) = (records.start, self.len());
        let topic = self.topic_index(topic);
        self.data.extend_from_slice(&from.data[bytes]);
        self.key_lens.extend_from_slice(&from.key_lens[records.clone()]);
        self.value_lens.extend_from_slice(&from.value_lens[records.clone()]);
        self.timestamps.extend_from_slice(&from.timestamps[records.clone()]);
        self.partitions.extend_from_slice(&from.partitions[records.clone()]);
        self.offsets.extend_from_slice(&from.offsets[records.clone()]);
        self.topic_indexes.resize(self.offsets.len(), topic);
        self.headers.extend(headers.iter().map(|h| RecordHeader { record: (h.record as usize - first + shift) as u32, ..h.clone() }));
    }

    /// The records, in order.
    ///
    /// ```
    /// use wasmflow_host::connectors::kafka::Fetched;
    /// use wasmflow_host::connectors::kafka::FetchedRecord;
    /// let mut f = Fetched::default();
    /// f.push(FetchedRecord { topic: "events", partition: 0, offset: 7, timestamp: 1_000, key: Some(b"k"), value: b"v" }, []);
    /// let r = f.iter().next().unwrap();
    /// assert_eq!((r.topic, r.offset, r.key, r.value), ("events", 7, Some(&b"k"[..]), &b"v"[..]));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = FetchedRecord<'_>> {
        let mut start = 0;
        (0..self.len()).map(move |i| {
            let (key, value) = self.data[start..start + self.record_bytes(i)].split_at(self.key_lens[i].max(0) as usize);
            start += self.record_bytes(i);
            FetchedRecord {
                topic: &self.topics[self.topic_indexes[i] as usize],
                partition: self.partitions[i],
                offset: self.offsets[i],
                timestamp: self.timestamps[i],
                key: (self.key_lens[i] >= 0).then_some(key),
                value,
            }
        })
    }
}

/// The topic and partition of the next run of a [`Cursor`]'s records.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct RunOf<'a> {
    pub topic: &'a str,
    pub partition: i32,
}

/// How much a fetch may still take: records, and bytes (the record that reaches the byte limit
/// is taken whole, so a record larger than the limit still gets through alone).
#[derive(Clone, Copy, Debug)]
pub(super) struct Room {
    pub records: usize,
    pub bytes: usize,
}

/// A [`Fetched`] read from the front: what a guest's fetch did not take stays for the next.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    batch: Fetched,
    /// The next record, where its bytes start, and the first header not yet passed.
    next: usize,
    offset: usize,
    header: usize,
}

impl Cursor {
    pub(super) fn new(batch: Fetched) -> Cursor {
        Cursor { batch, next: 0, offset: 0, header: 0 }
    }

    /// Records left.
    pub(super) fn remaining(&self) -> usize {
        self.batch.len() - self.next
    }

    /// The mean size of the batch's records' keys and values.
    pub(super) fn average_record_bytes(&self) -> usize {
        self.batch.data.len().checked_div(self.batch.len()).unwrap_or(0)
    }

    /// The partition the next records belong to, or `None` at the end.
    pub(super) fn run_of(&self) -> Option<RunOf<'_>> {
        (self.next < self.batch.len())
            .then(|| RunOf { topic: &self.batch.topics[self.batch.topic_indexes[self.next] as usize], partition: self.batch.partitions[self.next] })
    }

    /// Takes the next run of records of one partition into `out`, as far as `room` allows: the
    /// records at or after `next` (the partition's next offset; `None`, a partition no longer
    /// assigned, takes nothing), which it advances. Records before it (a position already
    /// passed) are skipped. Returns whether `room` ran out.
    pub(super) fn take_run(&mut self, next: &mut Option<i64>, out: &mut Fetched, room: Room) -> bool {
        let b = &self.batch;
        let (topic, partition) = (b.topic_indexes[self.next], b.partitions[self.next]);
        let mut header = self.header;
        // Each span of records to take is copied at once: usually the whole run is one span.
        let mut copy = |records: Range<usize>, bytes: Range<usize>| {
            let headers = headers_of(&b.headers, &mut header, &records);
            out.append_span(b, records, bytes, &b.topics[topic as usize], &b.headers[headers]);
        };
        let (mut taken, mut taken_bytes, mut full) = (0, 0, false);
        let mut span: Option<(usize, usize)> = None;
        let (mut i, mut offset) = (self.next, self.offset);
        while i < b.len() && b.topic_indexes[i] == topic && b.partitions[i] == partition && !full {
            let size = b.record_bytes(i);
            let take = match next {
                Some(expected) if b.offsets[i] >= *expected => {
                    *expected = b.offsets[i] + 1;
                    true
                }
                _ => false,
            };
            if take {
                span.get_or_insert((i, offset));
                taken += 1;
                taken_bytes += size;
                full = taken >= room.records || taken_bytes >= room.bytes;
            } else if let Some((first, from)) = span.take() {
                copy(first..i, from..offset);
            }
            i += 1;
            offset += size;
        }
        if let Some((first, from)) = span {
            copy(first..i, from..offset);
        }
        (self.next, self.offset, self.header) = (i, offset, header);
        full
    }
}

/// Where the headers of `records` are in `all` (sorted by record), searching from `*next`, which
/// moves past them: the headers of records before them are passed for good.
fn headers_of(all: &[RecordHeader], next: &mut usize, records: &Range<usize>) -> Range<usize> {
    while *next < all.len() && (all[*next].record as usize) < records.start {
        *next += 1;
    }
    let start = *next;
    *next += all[start..].iter().take_while(|h| (h.record as usize) < records.end).count();
    start..*next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(topic: &'static str, partition: i32, offset: i64, key: Option<&'static [u8]>, value: &'static [u8]) -> FetchedRecord<'static> {
        FetchedRecord { topic, partition, offset, timestamp: offset * 10, key, value }
    }

    /// A record as the tests compare it: topic, partition, offset, key, value.
    type Read<'a> = (&'a str, i32, i64, Option<&'a [u8]>, &'a [u8]);

    fn values(f: &Fetched) -> Vec<Read<'_>> {
        f.iter().map(|r| (r.topic, r.partition, r.offset, r.key, r.value)).collect()
    }

    const UNLIMITED: Room = Room { records: usize::MAX, bytes: usize::MAX };

    #[test]
    fn records_read_back_with_their_topics() {
        let mut f = Fetched::default();
        let (a, b) = (f.topic_index("a"), f.topic_index("b"));
        assert_eq!((a, b, f.topic_index("a")), (0, 1, 0));
        f.push(record("a", 0, 1, None, b"one"), []);
        f.push(record("b", 3, 2, Some(&b""[..]), b""), [("h".into(), None)]);
        f.push(record("a", 0, 2, Some(&b"k"[..]), b"three"), []);
        assert_eq!(f.topics, ["a", "b"]);
        assert_eq!(values(&f), [("a", 0, 1, None, &b"one"[..]), ("b", 3, 2, Some(&b""[..]), &b""[..]), ("a", 0, 2, Some(&b"k"[..]), &b"three"[..])]);
        assert_eq!(f.headers, [RecordHeader { record: 1, key: "h".into(), value: None }]);
    }

    #[test]
    fn a_cursor_takes_runs_of_one_partition_with_their_headers() {
        let mut f = Fetched::default();
        f.push(record("a", 0, 1, None, b"one"), []);
        f.push(record("a", 0, 2, Some(&b"k"[..]), b"two"), [("h2".into(), Some(b"x".to_vec()))]);
        f.push(record("b", 3, 7, None, b"seven"), [("h7".into(), None)]);
        let mut c = Cursor::new(f);
        let mut out = Fetched::default();
        out.push(record("b", 9, 0, None, b"earlier"), []);
        assert_eq!(c.run_of(), Some(RunOf { topic: "a", partition: 0 }));
        let mut next = Some(0);
        assert!(!c.take_run(&mut next, &mut out, UNLIMITED));
        assert_eq!(next, Some(3));
        assert_eq!(c.run_of(), Some(RunOf { topic: "b", partition: 3 }));
        let mut next = Some(7);
        c.take_run(&mut next, &mut out, UNLIMITED);
        assert_eq!((c.run_of(), c.remaining()), (None, 0));
        assert_eq!(
            values(&out),
            [("b", 9, 0, None, &b"earlier"[..]), ("a", 0, 1, None, &b"one"[..]), ("a", 0, 2, Some(&b"k"[..]), &b"two"[..]), ("b", 3, 7, None, &b"seven"[..])]
        );
        assert_eq!(out.topics, ["b", "a"]);
        assert_eq!(
            out.headers,
            [RecordHeader { record: 2, key: "h2".into(), value: Some(b"x".to_vec()) }, RecordHeader { record: 3, key: "h7".into(), value: None }]
        );
    }

    #[test]
    fn a_run_skips_passed_offsets_and_unassigned_partitions_and_stops_at_the_room() {
        let mut f = Fetched::default();
        for offset in [4, 5, 3, 6, 7, 8] {
            f.push(record("a", 0, offset, None, b"vv"), [(format!("h{offset}"), None)]);
        }
        f.push(record("a", 1, 0, None, b"other"), []);
        // Offsets 4 and 5 are passed; 3 is behind; 6 fills the room of three records.
        let mut c = Cursor::new(f.clone());
        let (mut out, mut next) = (Fetched::default(), Some(4));
        assert!(c.take_run(&mut next, &mut out, Room { records: 3, bytes: usize::MAX }));
        assert_eq!(out.offsets, [4, 5, 6]);
        assert_eq!(out.headers.iter().map(|h| (h.record, h.key.as_str())).collect::<Vec<_>>(), [(0, "h4"), (1, "h5"), (2, "h6")]);
        assert_eq!((next, c.remaining()), (Some(7), 3));
        c.take_run(&mut next, &mut out, Room { records: 10, bytes: 2 });
        assert_eq!((out.offsets.as_slice(), next, c.remaining()), (&[4, 5, 6, 7][..], Some(8), 2));
        // A partition no longer assigned: its records are passed.
        let (mut none, mut out) = (None, Fetched::default());
        c.take_run(&mut none, &mut out, UNLIMITED);
        assert!(out.is_empty() && out.headers.is_empty());
        assert_eq!(c.run_of(), Some(RunOf { topic: "a", partition: 1 }));
        // A record larger than the byte room is taken alone.
        let mut c = Cursor::new(f);
        let (mut out, mut next) = (Fetched::default(), Some(0));
        assert!(c.take_run(&mut next, &mut out, Room { records: 10, bytes: 1 }));
        assert_eq!(out.offsets, [4]);
    }
}
