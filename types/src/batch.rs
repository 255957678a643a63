//! Records and batches.
//!
//! Records travel in batches, stored as columns (the encoding `wit/wasmflow.wit` documents):
//! one buffer with every record's key and value back to back, and one list each of key lengths,
//! value lengths and timestamps. A record's bytes start where the previous record's ended, so
//! offsets are implied. Reading a [`Batch`] borrows from its buffer and a [`Collector`] appends
//! to one, so a record costs no allocation on either side.
//!
//! A batch from outside (a guest's output, a Kafka producer call) is checked once, by
//! [`Batch::from_columns`]; everything after that trusts it.

use serde::{Deserialize, Serialize};

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

/// A batch's columns, as they cross the host/guest boundary. `key_lens[i] = -1` means record
/// `i` has no key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    /// Every record's key (if any) and value, back to back.
    pub data: Vec<u8>,
    /// Key length per record, -1 for none.
    pub key_lens: Vec<i32>,
    /// Value length per record.
    pub value_lens: Vec<u32>,
    /// Event time per record, milliseconds since the Unix epoch.
    pub timestamps: Vec<i64>,
}

impl Columns {
    /// Columns copied from slices (convenient in tests).
    ///
    /// ```
    /// use wasmflow_types::{Batch, Columns};
    /// let batch = Batch::from_columns(Columns::from_slices(b"kv", &[1], &[1], &[7])).unwrap();
    /// assert_eq!(batch.iter().next().unwrap().key, Some(&b"k"[..]));
    /// ```
    pub fn from_slices(data: &[u8], key_lens: &[i32], value_lens: &[u32], timestamps: &[i64]) -> Columns {
        Columns { data: data.to_vec(), key_lens: key_lens.to_vec(), value_lens: value_lens.to_vec(), timestamps: timestamps.to_vec() }
    }
}

/// Why [`Batch::from_columns`] refused a batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The per-record columns differ in length.
    #[error("{keys} key lengths, {values} value lengths and {timestamps} timestamps (one of each per record)")]
    ColumnLengths {
        /// Entries in `key_lens`.
        keys: usize,
        /// Entries in `value_lens`.
        values: usize,
        /// Entries in `timestamps`.
        timestamps: usize,
    },
    /// A key length below -1.
    #[error("record {record} has key length {key_len}")]
    KeyLength {
        /// Index of the record.
        record: usize,
        /// Its key length.
        key_len: i32,
    },
    /// The record lengths do not add up to the data.
    #[error("record lengths add up to {lengths} bytes but the data has {data}")]
    DataLength {
        /// Sum of the records' key and value lengths.
        lengths: u64,
        /// Bytes of data.
        data: usize,
    },
}

/// A batch of records.
///
/// ```
/// use wasmflow_types::{Batch, Record};
/// let batch = Batch::from_records([Record { key: None, value: b"a", timestamp: 1 }]);
/// assert_eq!(batch.len(), 1);
/// assert_eq!(batch.iter().next().unwrap().value, b"a");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    data: Vec<u8>,
    key_lens: Vec<i32>,
    value_lens: Vec<u32>,
    timestamps: Vec<i64>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.key_lens.len()
    }

    /// Whether the batch has no record.
    pub fn is_empty(&self) -> bool {
        self.key_lens.is_empty()
    }

    /// Bytes of keys and values.
    pub fn data_bytes(&self) -> usize {
        self.data.len()
    }

    /// Bytes the batch holds in memory, counting 16 bytes of lengths and timestamp per record
    /// (what channel budgets and limits count).
    pub fn size_bytes(&self) -> usize {
        self.data.len() + self.len() * 16
    }

    /// The records, in order.
    pub fn iter(&self) -> BatchIter<'_> {
        BatchIter { key_lens: self.key_lens.iter(), value_lens: self.value_lens.iter(), timestamps: self.timestamps.iter(), data: &self.data }
    }

    /// Appends one record.
    #[inline]
    pub fn push(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.push_with(key, timestamp, |v| v.extend_from_slice(value));
    }

    /// An empty batch with room for `records` records of `bytes` bytes in all: pushing them does
    /// not reallocate.
    pub fn with_capacity(records: usize, bytes: usize) -> Batch {
        Batch {
            // The short-copy path of `append` reserves `SHORT_COPY` bytes ahead of what it writes:
            // without the slack, the last short key or value of an exactly sized batch would
            // double the buffer (a copy of the whole batch, once per batch).
            data: Vec::with_capacity(bytes + SHORT_COPY),
            key_lens: Vec::with_capacity(records),
            value_lens: Vec::with_capacity(records),
            timestamps: Vec::with_capacity(records),
        }
    }

    /// Moves every record of `other` to the end of this batch.
    pub fn append(&mut self, mut other: Batch) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.data.append(&mut other.data);
        self.key_lens.append(&mut other.key_lens);
        self.value_lens.append(&mut other.value_lens);
        self.timestamps.append(&mut other.timestamps);
    }

    /// Appends one record whose value `write` appends in place.
    #[inline]
    pub fn push_with(&mut self, key: Option<&[u8]>, timestamp: i64, write: impl FnOnce(&mut ValueWriter<'_>)) {
        let key_len = match key {
            Some(k) => {
                append(&mut self.data, k);
                k.len() as i32
            }
            None => -1,
        };
        let start = self.data.len();
        write(&mut ValueWriter(&mut self.data));
        self.key_lens.push(key_len);
        self.value_lens.push((self.data.len() - start) as u32);
        self.timestamps.push(timestamp);
    }

    /// Removes every record, keeping the buffers' capacity.
    pub fn clear(&mut self) {
        self.data.clear();
        self.key_lens.clear();
        self.value_lens.clear();
        self.timestamps.clear();
    }

    /// Builds a batch from records (convenient in tests).
    pub fn from_records<'a>(records: impl IntoIterator<Item = Record<'a>>) -> Batch {
        let mut batch = Batch::new();
        for r in records {
            batch.push(r.key, r.value, r.timestamp);
        }
        batch
    }

    /// Checks columns that come from outside (a guest, a client) and makes them a batch: one
    /// entry per record in each list, key lengths of -1 or more, lengths that add up to the data.
    ///
    /// ```
    /// use wasmflow_types::{Batch, BatchError, Columns};
    /// let bad = Columns { data: b"ab".to_vec(), key_lens: vec![-1], value_lens: vec![3], timestamps: vec![0] };
    /// assert_eq!(Batch::from_columns(bad), Err(BatchError::DataLength { lengths: 3, data: 2 }));
    /// ```
    pub fn from_columns(columns: Columns) -> Result<Batch, BatchError> {
        let Columns { data, key_lens, value_lens, timestamps } = columns;
        let n = key_lens.len();
        if value_lens.len() != n || timestamps.len() != n {
            return Err(BatchError::ColumnLengths { keys: n, values: value_lens.len(), timestamps: timestamps.len() });
        }
        let mut total: u64 = 0;
        for (record, (&key_len, &value_len)) in key_lens.iter().zip(&value_lens).enumerate() {
            if key_len < -1 {
                return Err(BatchError::KeyLength { record, key_len });
            }
            total += key_len.max(0) as u64 + value_len as u64;
        }
        if total != data.len() as u64 {
            return Err(BatchError::DataLength { lengths: total, data: data.len() });
        }
        Ok(Batch { data, key_lens, value_lens, timestamps })
    }

    /// Makes columns a batch without checking them: for columns the host has already checked
    /// (a guest receives only batches that passed [`Batch::from_columns`]). Columns that do not
    /// add up make iteration panic; they can never read outside the batch.
    pub fn from_checked_columns(columns: Columns) -> Batch {
        let Columns { data, key_lens, value_lens, timestamps } = columns;
        Batch { data, key_lens, value_lens, timestamps }
    }

    /// The columns, borrowed: (data, key lengths, value lengths, timestamps), as
    /// [`Batch::into_columns`] gives them (for writing a batch out without copying it first).
    pub fn column_slices(&self) -> (&[u8], &[i32], &[u32], &[i64]) {
        (&self.data, &self.key_lens, &self.value_lens, &self.timestamps)
    }

    /// The batch's columns (moved, not copied).
    pub fn into_columns(self) -> Columns {
        let Batch { data, key_lens, value_lens, timestamps } = self;
        Columns { data, key_lens, value_lens, timestamps }
    }
}

impl<'a> IntoIterator for &'a Batch {
    type Item = Record<'a>;
    type IntoIter = BatchIter<'a>;
    fn into_iter(self) -> BatchIter<'a> {
        self.iter()
    }
}

/// Appends a record's value in place ([`Collector::emit_with`]); it can only add bytes, so the
/// records before it stay intact.
pub struct ValueWriter<'a>(&'a mut Vec<u8>);

impl ValueWriter<'_> {
    /// Appends `bytes`.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        append(self.0, bytes);
    }

    /// Appends one byte.
    #[inline]
    pub fn push(&mut self, byte: u8) {
        self.0.push(byte);
    }

    /// Appends `count` copies of `byte` (padding). A few are written as fixed-size stores, like a
    /// short [`extend_from_slice`](Self::extend_from_slice): in a wasm guest, `extend` with
    /// `repeat_n` is a `memory.fill`, a call out of the guest.
    ///
    /// ```
    /// use wasmflow_types::Collector;
    /// let mut out = Collector::new();
    /// out.emit_with(None, 0, |v| {
    ///     v.push_repeated(b'0', 3);
    ///     v.extend_from_slice(b"7");
    /// });
    /// assert_eq!(out.into_batch().iter().next().unwrap().value, b"0007");
    /// ```
    #[inline]
    pub fn push_repeated(&mut self, byte: u8, count: usize) {
        if count > SHORT_COPY {
            self.0.extend(std::iter::repeat_n(byte, count));
        } else {
            append(self.0, &[byte; SHORT_COPY][..count]);
        }
    }
}

/// The longest key or value [`append`] copies without a `memory.copy` (see there).
const SHORT_COPY: usize = 16;

/// Appends `bytes` to `data`.
///
/// Keys and values are mostly short. In a wasm guest a copy whose length is not known at compile
/// time is a `memory.copy` instruction, which the runtime carries out by a call out of the guest:
/// for a few bytes, dearer than the copy. Up to 16 bytes are therefore moved as two overlapping
/// fixed-size loads and stores, which compile to plain instructions (native code gains too).
#[inline]
fn append(data: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    if n > SHORT_COPY {
        data.extend_from_slice(bytes);
        return;
    }
    data.reserve(SHORT_COPY);
    let start = data.len();
    // SAFETY: `reserve(SHORT_COPY)` leaves at least 16 bytes of capacity after `start`, and every write
    // below lands in `start..start + n` with `n <= 16`; every read is within `bytes` (the two
    // chunks of each size overlap when `n` is below twice their size). The first `n` bytes after
    // `start` are written before `set_len` makes them part of the vector.
    unsafe {
        let (src, dst) = (bytes.as_ptr(), data.as_mut_ptr().add(start));
        if n >= 8 {
            std::ptr::copy_nonoverlapping(src, dst, 8);
            std::ptr::copy_nonoverlapping(src.add(n - 8), dst.add(n - 8), 8);
        } else if n >= 4 {
            std::ptr::copy_nonoverlapping(src, dst, 4);
            std::ptr::copy_nonoverlapping(src.add(n - 4), dst.add(n - 4), 4);
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
        data.set_len(start + n);
    }
}

impl Extend<u8> for ValueWriter<'_> {
    #[inline]
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        self.0.extend(bytes);
    }
}

/// Iterator over the records of a [`Batch`].
///
/// It walks the three per-record columns in step and cuts each record off the front of the data:
/// no index, so no bounds check per column, and one branch for the key.
pub struct BatchIter<'a> {
    key_lens: std::slice::Iter<'a, i32>,
    value_lens: std::slice::Iter<'a, u32>,
    timestamps: std::slice::Iter<'a, i64>,
    /// The data of the records not yet returned.
    data: &'a [u8],
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Record<'a>;

    #[inline]
    fn next(&mut self) -> Option<Record<'a>> {
        let key_len = *self.key_lens.next()?;
        // A checked batch has one entry per record in every column (`Batch::from_columns`).
        let (value_len, timestamp) = (*self.value_lens.next()?, *self.timestamps.next()?);
        let key_bytes = key_len.max(0) as usize;
        let (bytes, rest) = self.data.split_at(key_bytes + value_len as usize);
        self.data = rest;
        let (key, value) = bytes.split_at(key_bytes);
        Some(Record { key: (key_len >= 0).then_some(key), value, timestamp })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.key_lens.size_hint()
    }
}

impl ExactSizeIterator for BatchIter<'_> {}

/// Collects the records an operator emits (Flink's `Collector`); becomes its output batch.
///
/// An operator that passes its whole input on unchanged (a counter, a filter that keeps a batch)
/// says so with [`forward_input`](Collector::forward_input) instead of emitting each record: the
/// input batch itself becomes the output, with no record copied.
///
/// ```
/// use wasmflow_types::{Batch, Collector, Record};
/// let input = Batch::from_records([Record { key: None, value: b"a", timestamp: 1 }]);
/// let mut out = Collector::new();
/// out.forward_input();
/// out.emit(None, b"b", 2);
/// let output = out.finish(input);
/// assert_eq!(output.iter().map(|r| r.value).collect::<Vec<_>>(), [b"a", b"b"]);
/// ```
#[derive(Debug, Default)]
pub struct Collector {
    batch: Batch,
    forward: bool,
    watermark: Option<i64>,
    idle: bool,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Collector {
        Collector::default()
    }

    /// An empty collector with room for `records` records of `bytes` bytes, so emitting does not
    /// grow its buffers record by record.
    pub fn with_capacity(records: usize, bytes: usize) -> Collector {
        Collector { batch: Batch::with_capacity(records, bytes), ..Collector::default() }
    }

    /// Emits every record of the input batch, unchanged and in order, ahead of anything else
    /// emitted for it — without copying them: the input batch becomes the output. Only
    /// transforms have an input; elsewhere this is an error when the call returns.
    pub fn forward_input(&mut self) {
        self.forward = true;
    }

    /// Whether [`forward_input`](Collector::forward_input) was called.
    pub fn forwards_input(&self) -> bool {
        self.forward
    }

    /// The output for `input`: the input itself followed by what was emitted, if the input was
    /// forwarded, else what was emitted.
    pub fn finish(self, input: Batch) -> Batch {
        if self.forward {
            let mut out = input;
            out.append(self.batch);
            out
        } else {
            self.batch
        }
    }

    /// Emits one record.
    #[inline]
    pub fn emit(&mut self, key: Option<&[u8]>, value: &[u8], timestamp: i64) {
        self.batch.push(key, value, timestamp);
    }

    /// Emits one record whose value `write` produces in place, straight into the output batch
    /// (no buffer of the operator's own, no second copy).
    ///
    /// ```
    /// use wasmflow_types::Collector;
    /// let mut out = Collector::new();
    /// out.emit_with(None, 0, |v| v.extend(b"abc".iter().map(u8::to_ascii_uppercase)));
    /// assert_eq!(out.into_batch().iter().next().unwrap().value, b"ABC");
    /// ```
    #[inline]
    pub fn emit_with(&mut self, key: Option<&[u8]>, timestamp: i64, write: impl FnOnce(&mut ValueWriter<'_>)) {
        self.batch.push_with(key, timestamp, write);
    }

    /// Emits every record of `batch`, in order, after those emitted before. When nothing was
    /// emitted yet its buffers become the output's: a source that reads records in this layout
    /// (the Kafka source's fetches) hands them on without copying one.
    ///
    /// ```
    /// use wasmflow_types::{Batch, Collector, Record};
    /// let mut out = Collector::new();
    /// out.emit_batch(Batch::from_records([Record { key: None, value: b"a", timestamp: 1 }]));
    /// out.emit(None, b"b", 2);
    /// assert_eq!(out.into_batch().iter().map(|r| r.value).collect::<Vec<_>>(), [b"a", b"b"]);
    /// ```
    pub fn emit_batch(&mut self, batch: Batch) {
        self.batch.append(batch);
    }

    /// Emits a copy of `record`.
    #[inline]
    pub fn emit_record(&mut self, record: &Record<'_>) {
        self.batch.push(record.key, record.value, record.timestamp);
    }

    /// Number of records emitted so far (not counting a forwarded input).
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Bytes of keys and values emitted so far (not counting a forwarded input).
    pub fn data_bytes(&self) -> usize {
        self.batch.data_bytes()
    }

    /// Whether nothing was emitted (not counting a forwarded input).
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// The emitted records as a batch (where there is no input to forward).
    pub fn into_batch(self) -> Batch {
        self.batch
    }

    /// Sources: emits a watermark after this poll's records — a promise that no record with a
    /// timestamp at or below it follows (Flink's `SourceContext.emitWatermark`). Of several, the highest
    /// counts; one lower than an earlier poll's is ignored downstream.
    pub fn emit_watermark(&mut self, watermark: i64) {
        self.watermark = Some(self.watermark.map_or(watermark, |w| w.max(watermark)));
    }

    /// Sources: marks this source's output idle (Flink's `markAsTemporarilyIdle`), e.g. when it
    /// has no partitions to read: downstream operators leave it out of their watermark until it
    /// emits again. Ignored in a poll that emits records or a watermark.
    pub fn mark_idle(&mut self) {
        self.idle = true;
    }

    /// The watermark emitted, if any.
    pub fn watermark(&self) -> Option<i64> {
        self.watermark
    }

    /// The outcome of a source's poll: the records, `status`, the watermark and idleness.
    pub fn into_source_output(self, status: crate::PollStatus) -> crate::SourceOutput {
        let idle = self.idle && self.batch.is_empty() && self.watermark.is_none();
        crate::SourceOutput { batch: self.batch, status, watermark: self.watermark, idle }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_sized_for_its_records_does_not_reallocate_while_they_are_pushed() {
        // 3-byte keys and 5-byte values: every append takes the short-copy path, which reserves
        // ahead of what it writes.
        let mut b = Batch::with_capacity(100, 800);
        let (data, capacity) = (b.data.as_ptr(), b.data.capacity());
        for i in 0..100u32 {
            b.push(Some(format!("{:03}", i % 1000).as_bytes()), format!("v{:04}", i).as_bytes(), 0);
        }
        assert_eq!(b.data.len(), 800);
        assert_eq!((b.data.as_ptr(), b.data.capacity()), (data, capacity), "the data buffer was reallocated");
    }

    #[test]
    fn records_read_back_in_order_with_absent_and_empty_keys() {
        let mut b = Batch::new();
        b.push(Some(b"k1"), b"v1", 1);
        b.push(None, b"v2", 2);
        b.push(Some(b""), b"", 3);
        let got: Vec<_> = b.iter().map(|r| (r.key.map(<[u8]>::to_vec), r.value.to_vec(), r.timestamp)).collect();
        assert_eq!(got, vec![(Some(b"k1".to_vec()), b"v1".to_vec(), 1), (None, b"v2".to_vec(), 2), (Some(vec![]), vec![], 3)]);
        assert_eq!(b.size_bytes(), 6 + 3 * 16);
    }

    #[test]
    fn columns_round_trip_through_the_validator() {
        let b = Batch::from_records([Record { key: Some(b"a"), value: b"bc", timestamp: 9 }]);
        assert_eq!(Batch::from_columns(b.clone().into_columns()), Ok(b));
    }

    #[test]
    fn the_validator_names_what_is_wrong() {
        assert_eq!(Batch::from_columns(Columns::from_slices(b"", &[1], &[], &[0])), Err(BatchError::ColumnLengths { keys: 1, values: 0, timestamps: 1 }));
        assert_eq!(Batch::from_columns(Columns::from_slices(b"x", &[-2], &[1], &[0])), Err(BatchError::KeyLength { record: 0, key_len: -2 }));
        assert_eq!(Batch::from_columns(Columns::from_slices(b"xyz", &[1], &[1], &[0])), Err(BatchError::DataLength { lengths: 2, data: 3 }));
        assert_eq!(BatchError::DataLength { lengths: 2, data: 3 }.to_string(), "record lengths add up to 2 bytes but the data has 3");
    }

    #[test]
    fn a_forwarded_input_is_the_output_and_emits_follow_it() {
        let input = Batch::from_records([Record { key: Some(b"k"), value: b"a", timestamp: 1 }, Record { key: None, value: b"bb", timestamp: 2 }]);
        let copy = input.clone();
        let data_ptr = copy.data.as_ptr();
        let mut out = Collector::new();
        out.forward_input();
        let forwarded = out.finish(copy);
        assert_eq!(forwarded, input);
        assert_eq!(forwarded.data.as_ptr(), data_ptr, "the input's buffer is the output's, not a copy");
        let mut out = Collector::with_capacity(2, 8);
        out.forward_input();
        out.emit(None, b"c", 3);
        let output = out.finish(input);
        let values: Vec<&[u8]> = output.iter().map(|r| r.value).collect();
        assert_eq!(values, [&b"a"[..], b"bb", b"c"]);
        let mut out = Collector::new();
        out.emit(None, b"only", 0);
        assert_eq!(out.finish(Batch::from_records([Record { key: None, value: b"x", timestamp: 0 }])).len(), 1, "not forwarded: input dropped");
    }

    #[test]
    fn values_written_in_place_are_whole_records() {
        let mut b = Batch::new();
        b.push(Some(b"k0"), b"v0", 0);
        b.push_with(Some(b"k1"), 1, |v| {
            v.extend_from_slice(b"ab");
            v.push(b'c');
            v.extend([b'd']);
        });
        b.push_with(None, 2, |_| {});
        let got: Vec<_> = b.iter().map(|r| (r.key, r.value, r.timestamp)).collect();
        assert_eq!(got, vec![(Some(&b"k0"[..]), &b"v0"[..], 0), (Some(&b"k1"[..]), &b"abcd"[..], 1), (None, &b""[..], 2)]);
        assert_eq!(Batch::from_columns(b.clone().into_columns()), Ok(b), "still a valid batch");
    }

    /// Short keys and values take the fixed-size copy path (`append`): every length from 0 to
    /// past its limit, after data of every alignment, reads back exactly.
    #[test]
    fn keys_and_values_of_every_short_length_copy_exactly() {
        let bytes: Vec<u8> = (1..=40).collect();
        for before in 0..9 {
            for n in 0..=bytes.len() {
                let mut b = Batch::new();
                b.push(None, &bytes[..before], 0);
                b.push(Some(&bytes[..n]), &bytes[bytes.len() - n..], 1);
                b.push_with(None, 2, |v| v.extend_from_slice(&bytes[..n]));
                let records: Vec<_> = b.iter().collect();
                assert_eq!(records[1].key, Some(&bytes[..n]), "key of {n} bytes after {before}");
                assert_eq!(records[1].value, &bytes[bytes.len() - n..], "value of {n} bytes after {before}");
                assert_eq!(records[2].value, &bytes[..n]);
                assert_eq!(b.data_bytes(), before + 3 * n);
            }
        }
    }

    #[test]
    fn huge_lengths_do_not_overflow_the_check() {
        let bad = Columns::from_slices(b"", &[i32::MAX, i32::MAX], &[u32::MAX, u32::MAX], &[0, 0]);
        assert!(matches!(Batch::from_columns(bad), Err(BatchError::DataLength { .. })));
    }
}
