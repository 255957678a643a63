//! Records and batches.
//!
//! Records cross the host/guest boundary in batches (see the encoding in `wit/wasmflow.wit`):
//! one buffer with every record's key and value back to back, and one list each of key lengths,
//! value lengths and timestamps. Reading a [`Batch`] borrows from that buffer, and a
//! [`Collector`] appends to a new one, so a record costs no allocation on either side.

use crate::bindings::wasmflow::operator::types::Batch as WireBatch;

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
    key_lens: Vec<i32>,
    value_lens: Vec<u32>,
    timestamps: Vec<i64>,
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.key_lens.len()
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.key_lens.is_empty()
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
        Batch { data: wire.data, key_lens: wire.key_lens, value_lens: wire.value_lens, timestamps: wire.timestamps }
    }

    #[doc(hidden)]
    pub fn into_wire(self) -> WireBatch {
        WireBatch { data: self.data, key_lens: self.key_lens, value_lens: self.value_lens, timestamps: self.timestamps }
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
        // The host checked that the three lists have the same length and that the lengths add
        // up to the data (a batch it could not check never reaches an operator).
        let b = self.batch;
        let key_len = *b.key_lens.get(self.index)?;
        let (value_len, timestamp) = (b.value_lens[self.index], b.timestamps[self.index]);
        self.index += 1;
        let key = if key_len < 0 {
            None
        } else {
            let end = self.pos + key_len as usize;
            let k = &b.data[self.pos..end];
            self.pos = end;
            Some(k)
        };
        let end = self.pos + value_len as usize;
        let value = &b.data[self.pos..end];
        self.pos = end;
        Some(Record { key, value, timestamp })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.batch.len() - self.index;
        (left, Some(left))
    }
}

/// Collects the records an operator emits; becomes the output batch.
#[derive(Debug, Default)]
pub struct Collector {
    batch: Batch,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// Emits one record.
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        let b = &mut self.batch;
        let key_len = match key {
            Some(k) => {
                b.data.extend_from_slice(k);
                k.len() as i32
            }
            None => -1,
        };
        b.data.extend_from_slice(value);
        b.key_lens.push(key_len);
        b.value_lens.push(value.len() as u32);
        b.timestamps.push(timestamp);
    }

    /// Emits a copy of `record`.
    pub fn emit_record(&mut self, record: &Record<'_>) {
        self.emit(record.key, record.value, record.timestamp);
    }

    /// Number of records emitted so far.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether nothing was emitted.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The emitted records as a batch.
    pub fn into_batch(self) -> Batch {
        self.batch
    }
}
