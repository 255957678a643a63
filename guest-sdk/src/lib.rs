//! # wasmflow guest SDK
//!
//! Write stream operators for [wasmflow](https://example.invalid/wasmflow) in Rust. An operator
//! is compiled to a WebAssembly component and run by the wasmflow host, which owns its state
//! and makes it durable with Flink's checkpoint semantics.
//!
//! * Implement one trait: [`Source`], [`Transform`], [`Sink`], or [`KeyedProcessFunction`] for an
//!   operator with keyed state and timers (downstream of `key-hash` edges). Its Flink hooks
//!   (`initialize_state`, `snapshot_state`, `notify_checkpoint_complete`, `open`, `close`) all
//!   have defaults: write the ones the operator needs.
//! * Register state in `initialize_state` with Flink's names:
//!   [`get_list_state`](FunctionInitializationContext::get_list_state),
//!   [`get_union_list_state`](FunctionInitializationContext::get_union_list_state),
//!   [`get_broadcast_state`](FunctionInitializationContext::get_broadcast_state).
//!   A state field starts unregistered (`Default`), so it needs no `Option`.
//! * Keyed operators register [`ValueState`], [`KeyedListState`], [`MapState`],
//!   [`ReducingState`] or [`AggregatingState`] with
//!   [`get_state`](FunctionInitializationContext::get_state) and friends; the state is scoped to
//!   the key being processed ([`keyed`]).
//! * Sources emit watermarks with [`Collector::emit_watermark`], e.g. from a
//!   [`watermarks::BoundedOutOfOrderness`] generator.
//! * Export it with one macro: [`export_source!`], [`export_transform!`], [`export_sink!`], [`export_keyed!`],
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
//!     state: ListState<u64>,
//! }
//!
//! impl Transform for Counter {
//!     fn create(_ctx: &RuntimeContext) -> Result<Self> {
//!         Ok(Counter::default())
//!     }
//!
//!     fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()> {
//!         for record in input {
//!             self.count += 1;
//!             out.emit(record.key, self.count.to_string().as_bytes(), record.timestamp);
//!         }
//!         Ok(())
//!     }
//!
//!     fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
//!         self.state = ctx.get_list_state("count")?;
//!         // After a rescale a subtask may receive several counts, or none.
//!         self.count = self.state.get()?.iter().sum();
//!         Ok(())
//!     }
//!
//!     fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
//!         self.state.update(&[self.count])
//!     }
//! }
//!
//! export_transform!(Counter);
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
mod input;
pub mod kafka;
pub mod keyed;
pub mod log;
#[cfg(not(target_arch = "wasm32"))]
pub mod native;
mod operator;
pub mod state;
pub mod watermarks;

pub use anyhow::{Context, Error, Result, anyhow, bail, ensure};
pub use context::{FunctionInitializationContext, FunctionSnapshotContext, RuntimeContext};
pub use input::Input;
pub use keyed::{AggregateFunction, AggregatingState, KeyedContext, KeyedListState, MapState, ReducingState, TimerService, ValueState};
pub use operator::{KeyedProcessFunction, Sink, Source, Transform};
pub use state::{BroadcastState, ListState};
pub use wasmflow_state::TimeDomain;
pub use wasmflow_types::{Batch, BatchIter, Collector, Columns, OperatorKind, PollStatus, Record, SourceOutput, TaskInfo, ValueWriter};

/// Everything an operator author usually needs.
///
/// `println!` is not in the prelude (a glob import cannot shadow std's): write
/// `use wasmflow_guest_sdk::println;` to send `println!` to the host log, because std's
/// `println!` is silently dropped inside `wasm32-unknown-unknown`. `wasmflow build` warns about
/// crates that use `println!` without it.
pub mod prelude {
    pub use crate::{
        AggregateFunction, AggregatingState, Batch, BroadcastState, Collector, Context, FunctionInitializationContext, FunctionSnapshotContext, Input,
        KeyedContext, KeyedListState, KeyedProcessFunction, ListState, MapState, PollStatus, Record, ReducingState, Result, RuntimeContext, Sink, Source,
        TimeDomain, Transform, ValueState, anyhow, bail, ensure, export_keyed, export_map, export_sink, export_source, export_transform,
    };
    pub use crate::{debug, error, info, trace, warn};
    pub use serde::{Deserialize, Serialize};
}
