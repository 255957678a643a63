//! Fetched records, stored the way the contract's `fetched-batch` carries them to a guest.
//!
//! Every record's key and value go back to back into one buffer, its coordinates into a list,
//! its topic as an index into a short list of names. The poll thread appends librdkafka's
//! messages to such a batch directly, so a record costs no allocation of its own anywhere on its
//! way to the guest (an owned topic, key and value per record were a third of the source's CPU).

/// One record's coordinates and lengths; its bytes are in [`Fetched::data`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedMeta {
    /// Index into [`Fetched::topics`].
    pub topic: u32,
    pub partition: i32,
    pub offset: i64,
    pub timestamp: i64,
    /// -1 for a record without key.
    pub key_len: i32,
    pub value_len: u32,
    /// Usually empty (no allocation then).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl FetchedMeta {
    fn bytes(&self) -> usize {
        self.key_len.max(0) as usize + self.value_len as usize
    }
}

/// Records of one or more topics: names, key and value bytes, and coordinates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fetched {
    pub topics: Vec<String>,
    /// Every record's key (if any) and value, back to back.
    pub data: Vec<u8>,
    pub records: Vec<FetchedMeta>,
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
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether there is no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
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

    /// Appends a record (its topic added to the names if new).
    pub fn push(&mut self, record: FetchedRecord<'_>, headers: Vec<(String, Option<Vec<u8>>)>) {
        let FetchedRecord { topic, partition, offset, timestamp, key, value } = record;
        let topic = self.topic_index(topic);
        let key_len = match key {
            Some(k) => {
                self.data.extend_from_slice(k);
                k.len() as i32
            }
            None => -1,
        };
        self.data.extend_from_slice(value);
        self.records.push(FetchedMeta { topic, partition, offset, timestamp, key_len, value_len: value.len() as u32, headers });
    }

    /// Appends a record whose key and value are `bytes` (as [`FetchedMeta`] measures them).
    pub(super) fn push_bytes(&mut self, meta: FetchedMeta, bytes: &[u8]) {
        self.data.extend_from_slice(bytes);
        self.records.push(meta);
    }

    /// The records, in order.
    ///
    /// ```
    /// use wasmflow_host::connectors::kafka::Fetched;
    /// use wasmflow_host::connectors::kafka::FetchedRecord;
    /// let mut f = Fetched::default();
    /// f.push(FetchedRecord { topic: "events", partition: 0, offset: 7, timestamp: 1_000, key: Some(b"k"), value: b"v" }, vec![]);
    /// let r = f.iter().next().unwrap();
    /// assert_eq!((r.topic, r.offset, r.key, r.value), ("events", 7, Some(&b"k"[..]), &b"v"[..]));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = FetchedRecord<'_>> {
        let mut start = 0;
        self.records.iter().map(move |m| {
            let (key, value) = self.data[start..start + m.bytes()].split_at(m.key_len.max(0) as usize);
            start += m.bytes();
            FetchedRecord {
                topic: &self.topics[m.topic as usize],
                partition: m.partition,
                offset: m.offset,
                timestamp: m.timestamp,
                key: (m.key_len >= 0).then_some(key),
                value,
            }
        })
    }
}

/// A [`Fetched`] read from the front: what a guest's fetch did not take stays for the next.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    batch: Fetched,
    /// The next record, and where its bytes start.
    next: usize,
    offset: usize,
}

impl Cursor {
    pub(super) fn new(batch: Fetched) -> Cursor {
        Cursor { batch, next: 0, offset: 0 }
    }

    /// The next record's coordinates and bytes (its headers are taken), or `None` at the end.
    pub(super) fn take(&mut self) -> Option<(&str, FetchedMeta, &[u8])> {
        let meta = self.batch.records.get_mut(self.next)?;
        let meta = FetchedMeta { headers: std::mem::take(&mut meta.headers), ..meta.clone() };
        let bytes = &self.batch.data[self.offset..self.offset + meta.bytes()];
        self.next += 1;
        self.offset += meta.bytes();
        Some((&self.batch.topics[meta.topic as usize], meta, bytes))
    }

    /// Records left.
    pub(super) fn remaining(&self) -> usize {
        self.batch.records.len() - self.next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_with_their_topics_and_a_cursor_takes_them_in_order() {
        let mut f = Fetched::default();
        let (a, b) = (f.topic_index("a"), f.topic_index("b"));
        assert_eq!((a, b, f.topic_index("a")), (0, 1, 0));
        let record = |topic: &'static str, partition: i32, offset: i64, key: Option<&'static [u8]>, value: &'static [u8]| FetchedRecord {
            topic,
            partition,
            offset,
            timestamp: offset * 10,
            key,
            value,
        };
        f.push(record("a", 0, 1, None, b"one"), vec![]);
        f.push(record("b", 3, 2, Some(&b""[..]), b""), vec![("h".into(), None)]);
        f.push(record("a", 0, 2, Some(&b"k"[..]), b"three"), vec![]);
        assert_eq!(f.topics, ["a", "b"]);
        let read: Vec<_> = f.iter().map(|r| (r.topic, r.partition, r.offset, r.key, r.value)).collect();
        assert_eq!(read, [("a", 0, 1, None, &b"one"[..]), ("b", 3, 2, Some(&b""[..]), &b""[..]), ("a", 0, 2, Some(&b"k"[..]), &b"three"[..])]);
        let mut c = Cursor::new(f);
        let (topic, meta, bytes) = c.take().unwrap();
        assert_eq!((topic, meta.offset, bytes), ("a", 1, &b"one"[..]));
        let (topic, meta, _) = c.take().unwrap();
        assert_eq!((topic, meta.headers), ("b", vec![("h".to_string(), None)]));
        assert_eq!(c.remaining(), 1);
        let (_, meta, bytes) = c.take().unwrap();
        assert_eq!((meta.key_len, bytes), (1, &b"kthree"[..]));
        assert!(c.take().is_none());
    }
}
