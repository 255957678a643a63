//! # wasmflow guest SDK
//!
//! Write stream operators for [wasmflow](https://example.invalid/wasmflow) in Rust. An operator
//! is compiled to a WebAssembly component and run by the wasmflow host, which owns its state
//! and makes it durable with Flink's checkpoint semantics.
//!
//! * Implement one of [`Source`], [`Operator`] or [`Sink`], plus [`CheckpointedFunction`] and
//!   [`CheckpointListener`] (both have default methods: an empty `impl` is enough when the
//!   operator keeps no state).
//! * Register state in `initialize_state` with Flink's names:
//!   [`get_list_state`](FunctionInitializationContext::get_list_state),
//!   [`get_union_list_state`](FunctionInitializationContext::get_union_list_state),
//!   [`get_broadcast_state`](FunctionInitializationContext::get_broadcast_state).
//! * Export it with one macro: [`export_source!`], [`export_operator!`], [`export_sink!`],
//!   or [`export_map!`] for a plain function.
//! * Build it with `wasmflow build` and unit-test it natively with [`harness`].
//!
//! ## A complete stateful operator
//!
//! ```
//! use wasmflow_guest_sdk::prelude::*;
//!
//! /// Counts records; the count survives restarts in list state.
//! #[derive(Default)]
//! pub struct Counter {
//!     count: u64,
//!     state: Option<ListState<u64>>,
//! }
//!
//! impl CheckpointedFunction for Counter {
//!     fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
//!         let state = ctx.get_list_state::<u64>("count")?;
//!         // After a rescale a subtask may receive several counts, or none.
//!         self.count = state.get()?.iter().sum();
//!         self.state = Some(state);
//!         Ok(())
//!     }
//!
//!     fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
//!         self.state.as_ref().unwrap().update(&[self.count])
//!     }
//! }
//!
//! impl CheckpointListener for Counter {}
//!
//! impl Operator for Counter {
//!     fn create(_ctx: &RuntimeContext) -> Result<Self> {
//!         Ok(Counter::default())
//!     }
//!
//!     fn process(&mut self, input: &Batch, out: &mut Collector) -> Result<()> {
//!         for record in input {
//!             self.count += 1;
//!             out.emit(record.key, self.count.to_string().as_bytes(), record.timestamp);
//!         }
//!         Ok(())
//!     }
//! }
//!
//! export_operator!(Counter);
//! ```

#![warn(missing_docs)]

extern crate self as wasmflow_guest_sdk;

#[doc(hidden)]
pub use wit_bindgen as __wit_bindgen;

pub mod bindings;
mod context;
pub mod files;
#[doc(hidden)]
pub mod glue;
#[cfg(not(target_arch = "wasm32"))]
pub mod harness;
pub mod kafka;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
mod operator;
mod record;
pub mod state;

pub use anyhow::{anyhow, bail, ensure, Context, Error, Result};
pub use context::{FunctionInitializationContext, FunctionSnapshotContext, RuntimeContext};
pub use operator::{CheckpointListener, CheckpointedFunction, Operator, PollStatus, Sink, Source};
pub use record::{Batch, BatchIter, Collector, Record};
pub use state::{BroadcastState, ListState};

/// Everything an operator author usually needs.
///
/// `println!` is not in the prelude (a glob import cannot shadow std's): write
/// `use wasmflow_guest_sdk::println;` to send `println!` to the host log, because std's
/// `println!` is silently dropped inside `wasm32-unknown-unknown`. `wasmflow build` warns about
/// crates that use `println!` without it.
pub mod prelude {
    pub use crate::{
        anyhow, bail, ensure, export_map, export_operator, export_sink, export_source, Batch, BroadcastState, CheckpointListener, CheckpointedFunction,
        Collector, Context, FunctionInitializationContext, FunctionSnapshotContext, ListState, Operator, PollStatus, Record, Result, RuntimeContext, Sink,
        Source,
    };
    pub use crate::{debug, error, info, trace, warn};
    pub use serde::{Deserialize, Serialize};
}
