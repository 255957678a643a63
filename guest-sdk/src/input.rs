//! The batch a transform or sink is given: [`Input`].

use std::cell::OnceCell;
use std::ops::Deref;

use crate::{Batch, BatchIter, Record};

/// The input of one [`Transform::process`](crate::Transform::process) or
/// [`Sink::invoke`](crate::Sink::invoke) call.
///
/// In a wasm module the records stay with the host until the operator reads them. [`len`],
/// [`is_empty`] and [`data_bytes`] copy nothing; reading the records — iterating, or any
/// [`Batch`] method, which `Input` dereferences to — copies them into the module's memory, once,
/// on first use. So an operator that only counts its input, forwards it
/// ([`Collector::forward_input`](crate::Collector::forward_input)) or ignores it never copies a
/// record. Natively (tests, operators compiled into the host) the batch is already at hand.
///
/// [`len`]: Input::len
/// [`is_empty`]: Input::is_empty
/// [`data_bytes`]: Input::data_bytes
///
/// ```
/// use wasmflow_guest_sdk::{Batch, Input};
///
/// fn value_bytes(input: &Input) -> usize {
///     input.iter().map(|r| r.value.len()).sum() // reads the records
/// }
///
/// let mut batch = Batch::new();
/// batch.push(None, b"abc", 0);
/// batch.push(Some(b"k"), b"de", 0);
/// let input = Input::from(&batch);
/// assert_eq!((input.len(), value_bytes(&input)), (2, 5));
/// ```
pub struct Input<'a> {
    lent: Lent<'a>,
    /// The records, once read from the host.
    #[cfg(target_arch = "wasm32")]
    read: OnceCell<Batch>,
    len: OnceCell<usize>,
    data_bytes: OnceCell<usize>,
}

enum Lent<'a> {
    /// Already in this memory.
    Batch(&'a Batch),
    /// Held by the host, lent for the call.
    #[cfg(target_arch = "wasm32")]
    Host(&'a crate::bindings::wasmflow::operator::input::InputBatch),
}

impl<'a> From<&'a Batch> for Input<'a> {
    fn from(batch: &'a Batch) -> Input<'a> {
        Input::lent(Lent::Batch(batch))
    }
}

impl<'a> Input<'a> {
    fn lent(lent: Lent<'a>) -> Input<'a> {
        Input {
            lent,
            #[cfg(target_arch = "wasm32")]
            read: OnceCell::new(),
            len: OnceCell::new(),
            data_bytes: OnceCell::new(),
        }
    }

    /// The batch the host lent to this call.
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn from_host(batch: &'a crate::bindings::wasmflow::operator::input::InputBatch) -> Input<'a> {
        Input::lent(Lent::Host(batch))
    }

    /// The number of records (without reading them).
    pub fn len(&self) -> usize {
        *self.len.get_or_init(|| match &self.lent {
            Lent::Batch(batch) => batch.len(),
            #[cfg(target_arch = "wasm32")]
            Lent::Host(batch) => batch.len() as usize,
        })
    }

    /// Whether there are no records (without reading them).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of keys and values, all records together (without reading them).
    pub fn data_bytes(&self) -> usize {
        *self.data_bytes.get_or_init(|| match &self.lent {
            Lent::Batch(batch) => batch.data_bytes(),
            #[cfg(target_arch = "wasm32")]
            Lent::Host(batch) => batch.data_bytes() as usize,
        })
    }

    /// The records (read from the host on first use).
    pub fn records(&self) -> &Batch {
        match &self.lent {
            Lent::Batch(batch) => batch,
            #[cfg(target_arch = "wasm32")]
            Lent::Host(batch) => self.read.get_or_init(|| crate::glue::exports::from_wire(batch.read())),
        }
    }

    /// The records, in order (reads them).
    pub fn iter(&self) -> BatchIter<'_> {
        self.records().iter()
    }
}

impl Deref for Input<'_> {
    type Target = Batch;

    /// Reads the records (see [`Input::records`]).
    fn deref(&self) -> &Batch {
        self.records()
    }
}

impl<'b> IntoIterator for &'b Input<'_> {
    type Item = Record<'b>;
    type IntoIter = BatchIter<'b>;

    fn into_iter(self) -> BatchIter<'b> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_native_input_is_its_batch() {
        let mut batch = Batch::new();
        batch.push(Some(b"k"), b"v1", 7);
        batch.push(None, b"v22", 8);
        let input = Input::from(&batch);
        assert_eq!((input.len(), input.is_empty(), input.data_bytes()), (2, false, 6));
        let values: Vec<&[u8]> = (&input).into_iter().map(|r| r.value).collect();
        assert_eq!(values, [&b"v1"[..], b"v22"]);
        assert!(std::ptr::eq(input.records(), &batch));
    }
}
