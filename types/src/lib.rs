//! The vocabulary shared by every wasmflow crate.
//!
//! The host's runtime and engine, the guest SDK and native operators all speak these types. The
//! code generated from `wit/wasmflow.wit` (by wasmtime on the host, by wit-bindgen in the guest)
//! is converted to them at the two boundaries — the engine and the SDK's export glue — and
//! nowhere else, so no other module depends on generated code.
//!
//! * [`batch`]: [`Record`], [`Batch`] (the columnar batch, its one iterator and its one
//!   validator) and [`Collector`], which builds batches.
//! * [`task`]: [`TaskInfo`], [`OperatorKind`], [`PollStatus`], [`SubtaskTag`] and log [`Level`]s.
//! * [`codec`]: the one binary encoding of state (bincode 2), for values and snapshots alike.
//!
//! ```
//! use wasmflow_types::{Batch, Collector};
//!
//! let mut out = Collector::new();
//! out.emit(Some(b"k"), b"v", 7);
//! let batch: Batch = out.into_batch();
//! let record = batch.iter().next().unwrap();
//! assert_eq!((record.key, record.value, record.timestamp), (Some(&b"k"[..]), &b"v"[..], 7));
//! ```

pub mod batch;
pub mod codec;
pub mod task;

pub use batch::{Batch, BatchError, BatchIter, Collector, Columns, Record, ValueWriter};
pub use task::{Level, OperatorKind, PollStatus, SourceOutput, SubtaskTag, TaskInfo};
