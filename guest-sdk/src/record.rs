//! Records and batches.
//!
//! Records cross the host/guest boundary in batches (see the encoding in `wit/wasmflow.wit`):
//! one buffer with every record's key and value back to back, and one fixed-size
//! [`RecordMeta`] per record. Reading a [`Batch`] borrows from that buffer, and a
//! [`Collector`] appends to a new one, so a record costs no allocation on either side.

use crate::bindings::wasmflow::operator::types::{Batch as WireBatch, RecordMeta};

/// One record, borrowed from a [`Batch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record<'a> {
    /// The key, or `None` for a record without key (an empty key is `Some(&[])`).
    pub key: Option<&'a [u8]>,
    /// The value.
    pub value: &'a [u8],
    /// Event time, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

impl Record<'_> {
    /// The value as UTF-8 text, if it is.
    pub fn value_str(&self) -> Option<&str> {
        std::str::from_utf8(self.value).ok()
    }
}

/// A batch of records handed to an operator.
///
/// ```
/// use wasmflow_guest_sdk::{Batch, Collector};
/// let mut out = Collector::new();
/// out.emit(Some(b"k"), b"v", 7);
/// let batch: Batch = out.into_batch();
/// let r = batch.iter().next().unwrap();
/// assert_eq!((r.key, r.value, r.timestamp), (Some(&b"k"[..]), &b"v"[..], 7));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    data: Vec<u8>,
    records: Vec<RecordMeta>,
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The records, in order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter { batch: self, index: 0, pos: 0 }
    }

    /// Builds a batch from owned records (convenient in tests).
    pub fn from_records<'a>(records: impl IntoIterator<Item = Record<'a>>) -> Batch {
        let mut out = Collector::new();
        for r in records {
            out.emit_record(&r);
        }
        out.into_batch()
    }

    #[doc(hidden)]
    pub fn from_wire(wire: WireBatch) -> Batch {
        Batch { data: wire.data, records: wire.records }
    }

    #[doc(hidden)]
    pub fn into_wire(self) -> WireBatch {
        WireBatch { data: self.data, records: self.records }
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = Record<'a>;
    type IntoIter = BatchIter<'a>;
    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

/// Iterator over the records of a [`Batch`].
pub struct BatchIter<'a> {
    batch: &'a Batch,
    index: usize,
    pos: usize,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let meta = self.batch.records.get(self.index)?;
        self.index += 1;
        let data = &self.batch.data;
        let key = if meta.key_len < 0 {
            None
        } else {
            let end = self.pos + meta.key_len as usize;
            let k = &data[self.pos..end];
            self.pos = end;
            Some(k)
        };
        let end = self.pos + meta.value_len as usize;
        let value = &data[self.pos..end];
        self.pos = end;
        Some(Record { key, value, timestamp: meta.timestamp })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.records.len() - self.index;
        (left, Some(left))
    }
}

/// Collects the records an operator emits; becomes the output batch.
#[derive(Debug, Default)]
pub struct Collector {
    data: Vec<u8>,
    records: Vec<RecordMeta>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Emits one record.
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        let key_len = match key {
            Some(k) => {
                self.data.extend_from_slice(k);
                k.len() as i32
            }
            None => -1,
        };
        self.data.extend_from_slice(value);
        self.records.push(RecordMeta { key_len, value_len: value.len() as u32, timestamp });
    }

    /// Emits a copy of `record`.
    pub fn emit_record(&mut self, record: &Record<'_>) {
        self.emit(record.key, record.value, record.timestamp);
    }

    /// Number of records emitted so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The emitted records as a batch.
    pub fn into_batch(self) -> Batch {
        Batch { data: self.data, records: self.records }
    }
}
