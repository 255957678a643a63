//! Keyed state and timers, in Flink's vocabulary: [`ValueState`], [`KeyedListState`],
//! [`MapState`], [`ReducingState`], [`AggregatingState`], and the [`TimerService`] of a
//! [`KeyedProcessFunction`](crate::KeyedProcessFunction).
//!
//! A keyed operator is one whose every input edge is `key-hash`: each record reaches the subtask
//! that owns its key's key group, and the operator's keyed state is scoped to the key of the
//! record (or timer) being processed — a handle reads and writes *that key's* value, as in Flink.
//! Register keyed state in `initialize_state` with
//! [`get_state`](crate::FunctionInitializationContext::get_state) and friends; using it outside
//! `process_element`/`on_timer` is an error that says so.
//!
//! ```
//! use wasmflow_guest_sdk::prelude::*;
//!
//! /// Counts records per key and emits the running count.
//! #[derive(Default)]
//! struct CountPerKey {
//!     count: ValueState<u64>,
//! }
//!
//! impl KeyedProcessFunction for CountPerKey {
//!     fn create(_ctx: &RuntimeContext) -> Result<Self> {
//!         Ok(CountPerKey::default())
//!     }
//!
//!     fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
//!         self.count = ctx.get_state("count")?;
//!         Ok(())
//!     }
//!
//!     fn process_element(&mut self, record: Record<'_>, ctx: &KeyedContext<'_>, out: &mut Collector) -> Result<()> {
//!         let n = self.count.value()?.unwrap_or(0) + 1;
//!         self.count.update(&n)?;
//!         out.emit(Some(ctx.key()), n.to_string().as_bytes(), record.timestamp);
//!         Ok(())
//!     }
//! }
//!
//! export_keyed!(CountPerKey);
//! ```

use std::cell::RefCell;
use std::marker::PhantomData;
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmflow_state::{KeyedStateBackend, KeyedStateId, TimeDomain};

use crate::log::now_millis;
use crate::state::{Backend, SharedStore, decode, encode, lock, type_info};

thread_local! {
    /// The key of the record or timer being processed (a guest is single-threaded; natively a
    /// call runs on one thread). The buffer is reused from record to record.
    static CURRENT_KEY: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// Whether a key is current: inside `process_element` or `on_timer`.
    static IN_KEYED_CONTEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with `key` as the current key.
pub(crate) fn with_current_key<R>(key: &[u8], f: impl FnOnce() -> R) -> R {
    CURRENT_KEY.with_borrow_mut(|k| {
        k.clear();
        k.extend_from_slice(key);
    });
    IN_KEYED_CONTEXT.set(true);
    // Left on error and on panic alike.
    struct Leave;
    impl Drop for Leave {
        fn drop(&mut self) {
            IN_KEYED_CONTEXT.set(false);
        }
    }
    let _leave = Leave;
    f()
}

/// Runs `f` with the current key; outside `process_element`/`on_timer` an error naming `what`
/// (built only then: this runs for every state access).
fn with_key<R>(what: impl FnOnce() -> String, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<R> {
    if !IN_KEYED_CONTEXT.get() {
        let what = what();
        return Err(anyhow!(
            "{what} used outside a keyed context: keyed state and timers belong to the key being processed, so use them in `process_element` or `on_timer` (not in `open`, `snapshot_state`, `close` or the checkpoint notifications)"
        ));
    }
    CURRENT_KEY.with_borrow(|k| f(k))
}

/// Where a keyed state lives: in the host (wasm) or a native backend.
enum Handle {
    #[cfg(target_arch = "wasm32")]
    Value(crate::bindings::wasmflow::operator::keyed::ValueState),
    #[cfg(target_arch = "wasm32")]
    List(crate::bindings::wasmflow::operator::keyed::KeyedListState),
    #[cfg(target_arch = "wasm32")]
    Map(crate::bindings::wasmflow::operator::keyed::MapState),
    Native(SharedStore, KeyedStateId),
}

/// A registered handle with its name, for errors.
struct Named {
    name: String,
    handle: Handle,
}

fn native<R>(store: &SharedStore, f: impl FnOnce(&mut KeyedStateBackend) -> Result<R, wasmflow_state::KeyedStateError>) -> Result<R> {
    let mut state = lock(store);
    let backend = state.keyed_mut(|| "keyed state".into())?;
    Ok(f(backend)?)
}

fn unregistered(what: &str) -> anyhow::Error {
    anyhow!("{what} used before it was registered: assign it in `initialize_state` (ctx.get_{what}(\"name\"))")
}

#[cfg(target_arch = "wasm32")]
fn host_error(e: String) -> anyhow::Error {
    anyhow!(e)
}

impl Backend {
    fn register(&self, name: &str, register: impl FnOnce() -> Result<Handle>) -> Result<Named> {
        Ok(Named { name: name.to_string(), handle: register()? })
    }

    pub(crate) fn value_state<T: Serialize + DeserializeOwned>(&self, name: &str, ttl: Option<Duration>) -> Result<ValueState<T>> {
        let ty = type_info::<T>();
        let ttl_ms = ttl.map(|t| t.as_millis() as u64);
        let named = self.register(name, || match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => {
                Ok(Handle::Value(crate::bindings::wasmflow::operator::keyed::get_value_state(name, &ty.type_name, &ty.schema, ttl_ms).map_err(host_error)?))
            }
            Backend::Native(store) => Ok(Handle::Native(store.clone(), native(store, |b| b.register_value(name, ty, ttl_ms))?)),
        })?;
        Ok(ValueState { inner: Some(named), _type: PhantomData })
    }

    pub(crate) fn keyed_list_state<T: Serialize + DeserializeOwned>(&self, name: &str) -> Result<KeyedListState<T>> {
        let ty = type_info::<T>();
        let named = self.register(name, || match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => Ok(Handle::List(crate::bindings::wasmflow::operator::keyed::get_list_state(name, &ty.type_name, &ty.schema).map_err(host_error)?)),
            Backend::Native(store) => Ok(Handle::Native(store.clone(), native(store, |b| b.register_list(name, ty))?)),
        })?;
        Ok(KeyedListState { inner: Some(named), _type: PhantomData })
    }

    pub(crate) fn map_state<K, V>(&self, name: &str, ttl: Option<Duration>) -> Result<MapState<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let (kt, vt) = (type_info::<K>(), type_info::<V>());
        let ttl_ms = ttl.map(|t| t.as_millis() as u64);
        let named = self.register(name, || match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => Ok(Handle::Map(
                crate::bindings::wasmflow::operator::keyed::get_map_state(name, &kt.type_name, &kt.schema, &vt.type_name, &vt.schema, ttl_ms)
                    .map_err(host_error)?,
            )),
            Backend::Native(store) => Ok(Handle::Native(store.clone(), native(store, |b| b.register_map(name, kt, vt, ttl_ms))?)),
        })?;
        Ok(MapState { inner: Some(named), _type: PhantomData })
    }

    fn timer(&self, domain: TimeDomain, timestamp: i64, delete: bool) -> Result<()> {
        let what = || if delete { "deleting a timer" } else { "registering a timer" }.to_string();
        with_key(what, |key| match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => {
                use crate::bindings::wasmflow::operator::{keyed as wit, types::TimeDomain as D};
                let d = match domain {
                    TimeDomain::EventTime => D::EventTime,
                    TimeDomain::ProcessingTime => D::ProcessingTime,
                };
                if delete { wit::delete_timer(d, key, timestamp) } else { wit::register_timer(d, key, timestamp) }.map_err(host_error)
            }
            Backend::Native(store) => native(store, |b| if delete { b.delete_timer(domain, key, timestamp) } else { b.register_timer(domain, key, timestamp) }),
        })
    }

    pub(crate) fn current_watermark(&self) -> i64 {
        match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => crate::bindings::wasmflow::operator::clock::current_watermark(),
            Backend::Native(store) => lock(store).watermark,
        }
    }
}

/// Flink's `ValueState<T>`: one value per key.
pub struct ValueState<T> {
    inner: Option<Named>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for ValueState<T> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        ValueState { inner: None, _type: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> ValueState<T> {
    fn named(&self) -> Result<&Named> {
        self.inner.as_ref().ok_or_else(|| unregistered("state"))
    }

    /// The current key's value, `None` if it has none (or it expired).
    pub fn value(&self) -> Result<Option<T>> {
        let n = self.named()?;
        let raw = with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Value(h) => h.get(key).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.value_get(*id, key, now_millis())),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a value handle"),
            },
        )?;
        raw.map(|b| decode(&b)).transpose()
    }

    /// Sets the current key's value.
    pub fn update(&self, value: &T) -> Result<()> {
        let n = self.named()?;
        let bytes = encode(value)?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Value(h) => h.update(key, &bytes).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.value_update(*id, key, bytes, now_millis())),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a value handle"),
            },
        )
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        let n = self.named()?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Value(h) => h.clear(key).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.clear(*id, key)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a value handle"),
            },
        )
    }
}

/// Flink's keyed `ListState<T>`: a list per key.
pub struct KeyedListState<T> {
    inner: Option<Named>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for KeyedListState<T> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        KeyedListState { inner: None, _type: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> KeyedListState<T> {
    fn named(&self) -> Result<&Named> {
        self.inner.as_ref().ok_or_else(|| unregistered("keyed_list_state"))
    }

    /// The current key's elements (empty if none).
    pub fn get(&self) -> Result<Vec<T>> {
        let n = self.named()?;
        let raw = with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::List(h) => h.get(key).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.list_get(*id, key)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a list handle"),
            },
        )?;
        raw.iter().map(|b| decode(b)).collect()
    }

    /// Appends to the current key's list.
    pub fn add(&self, value: &T) -> Result<()> {
        let n = self.named()?;
        let bytes = encode(value)?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::List(h) => h.add(key, &bytes).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.list_add(*id, key, bytes)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a list handle"),
            },
        )
    }

    /// Replaces the current key's list (empty removes it).
    pub fn update<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let n = self.named()?;
        let encoded = values.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::List(h) => h.update(key, &encoded).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.list_update(*id, key, encoded)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a list handle"),
            },
        )
    }

    /// Removes the current key's list.
    pub fn clear(&self) -> Result<()> {
        self.update(std::iter::empty())
    }
}

/// Flink's `MapState<K, V>`: a map per key.
pub struct MapState<K, V> {
    inner: Option<Named>,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Default for MapState<K, V> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        MapState { inner: None, _type: PhantomData }
    }
}

impl<K, V> MapState<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn named(&self) -> Result<&Named> {
        self.inner.as_ref().ok_or_else(|| unregistered("map_state"))
    }

    /// The current key's value for `user_key`.
    pub fn get(&self, user_key: &K) -> Result<Option<V>> {
        let n = self.named()?;
        let uk = encode(user_key)?;
        let raw = with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Map(h) => h.get(key, &uk).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.map_get(*id, key, &uk, now_millis())),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a map handle"),
            },
        )?;
        raw.map(|b| decode(&b)).transpose()
    }

    /// Sets `user_key` to `value` in the current key's map.
    pub fn put(&self, user_key: &K, value: &V) -> Result<()> {
        let n = self.named()?;
        let (uk, v) = (encode(user_key)?, encode(value)?);
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Map(h) => h.put(key, &uk, &v).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.map_put(*id, key, uk, v, now_millis())),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a map handle"),
            },
        )
    }

    /// Removes `user_key` from the current key's map.
    pub fn remove(&self, user_key: &K) -> Result<()> {
        let n = self.named()?;
        let uk = encode(user_key)?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Map(h) => h.remove(key, &uk).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.map_remove(*id, key, &uk)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a map handle"),
            },
        )
    }

    /// Whether the current key's map holds `user_key`.
    pub fn contains(&self, user_key: &K) -> Result<bool> {
        Ok(self.get(user_key)?.is_some())
    }

    /// The current key's entries, sorted by encoded map key.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        let n = self.named()?;
        let raw = with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Map(h) => h.entries(key).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.map_entries(*id, key, now_millis())),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a map handle"),
            },
        )?;
        raw.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect()
    }

    /// Whether the current key's map is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.entries()?.is_empty())
    }

    /// Removes the current key's map.
    pub fn clear(&self) -> Result<()> {
        let n = self.named()?;
        with_key(
            || format!("keyed state '{}'", n.name),
            |key| match &n.handle {
                #[cfg(target_arch = "wasm32")]
                Handle::Map(h) => h.clear(key).map_err(host_error),
                Handle::Native(s, id) => native(s, |b| b.clear(*id, key)),
                #[cfg(target_arch = "wasm32")]
                _ => unreachable!("a map handle"),
            },
        )
    }
}

/// Flink's `ReducingState<T>`: values added for a key are combined with a reduce function into
/// one (kept in a [`ValueState`]).
pub struct ReducingState<T> {
    value: ValueState<T>,
    reduce: Option<fn(T, T) -> T>,
}

impl<T> Default for ReducingState<T> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        ReducingState { value: ValueState::default(), reduce: None }
    }
}

impl<T: Serialize + DeserializeOwned> ReducingState<T> {
    pub(crate) fn new(value: ValueState<T>, reduce: fn(T, T) -> T) -> Self {
        ReducingState { value, reduce: Some(reduce) }
    }

    /// The current key's reduced value.
    pub fn get(&self) -> Result<Option<T>> {
        self.value.value()
    }

    /// Combines `value` into the current key's value.
    pub fn add(&self, value: T) -> Result<()> {
        let reduce = self.reduce.ok_or_else(|| unregistered("reducing_state"))?;
        let next = match self.value.value()? {
            Some(current) => reduce(current, value),
            None => value,
        };
        self.value.update(&next)
    }

    /// Removes the current key's value.
    pub fn clear(&self) -> Result<()> {
        self.value.clear()
    }
}

/// Flink's `AggregateFunction`: how an [`AggregatingState`] folds inputs into an accumulator.
pub trait AggregateFunction {
    /// What is added.
    type In;
    /// What is kept per key.
    type Acc: Serialize + DeserializeOwned;
    /// What is read.
    type Out;
    /// A new, empty accumulator.
    fn create_accumulator(&self) -> Self::Acc;
    /// Adds one input.
    fn add(&self, value: Self::In, accumulator: Self::Acc) -> Self::Acc;
    /// The result of an accumulator.
    fn get_result(&self, accumulator: &Self::Acc) -> Self::Out;
}

/// Flink's `AggregatingState<IN, OUT>`: inputs folded into a per-key accumulator by an
/// [`AggregateFunction`].
pub struct AggregatingState<F: AggregateFunction> {
    acc: ValueState<F::Acc>,
    function: F,
}

impl<F: AggregateFunction> AggregatingState<F> {
    pub(crate) fn new(acc: ValueState<F::Acc>, function: F) -> Self {
        AggregatingState { acc, function }
    }

    /// The current key's result, `None` if nothing was added.
    pub fn get(&self) -> Result<Option<F::Out>> {
        Ok(self.acc.value()?.map(|a| self.function.get_result(&a)))
    }

    /// Adds `value` to the current key's accumulator.
    pub fn add(&self, value: F::In) -> Result<()> {
        let acc = self.acc.value()?.unwrap_or_else(|| self.function.create_accumulator());
        self.acc.update(&self.function.add(value, acc))
    }

    /// Removes the current key's accumulator.
    pub fn clear(&self) -> Result<()> {
        self.acc.clear()
    }
}

/// What `process_element` and `on_timer` get: the current key, the record's or timer's
/// timestamp, and the timer service (Flink's `KeyedProcessFunction.Context`/`OnTimerContext`).
pub struct KeyedContext<'a> {
    pub(crate) key: &'a [u8],
    pub(crate) timestamp: i64,
    pub(crate) domain: Option<TimeDomain>,
    pub(crate) backend: &'a Backend,
}

impl KeyedContext<'_> {
    /// The key being processed (Flink's `getCurrentKey`).
    pub fn key(&self) -> &[u8] {
        self.key
    }

    /// The record's timestamp, or the timer's.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// In `on_timer`: which clock fired the timer; `None` in `process_element`.
    pub fn time_domain(&self) -> Option<TimeDomain> {
        self.domain
    }

    /// The timer service, for the current key.
    pub fn timer_service(&self) -> TimerService<'_> {
        TimerService { backend: self.backend }
    }
}

/// Flink's `TimerService`: timers for the current key. Timers are deduplicated per (key,
/// timestamp), kept in checkpoints and fired in timestamp order through `on_timer`.
pub struct TimerService<'a> {
    backend: &'a Backend,
}

impl TimerService<'_> {
    /// Fires `on_timer` once the watermark reaches `timestamp`.
    pub fn register_event_time_timer(&self, timestamp: i64) -> Result<()> {
        self.backend.timer(TimeDomain::EventTime, timestamp, false)
    }

    /// Fires `on_timer` once the wall clock reaches `timestamp` (ms since the Unix epoch).
    pub fn register_processing_time_timer(&self, timestamp: i64) -> Result<()> {
        self.backend.timer(TimeDomain::ProcessingTime, timestamp, false)
    }

    /// Deletes an event-time timer of the current key.
    pub fn delete_event_time_timer(&self, timestamp: i64) -> Result<()> {
        self.backend.timer(TimeDomain::EventTime, timestamp, true)
    }

    /// Deletes a processing-time timer of the current key.
    pub fn delete_processing_time_timer(&self, timestamp: i64) -> Result<()> {
        self.backend.timer(TimeDomain::ProcessingTime, timestamp, true)
    }

    /// The operator's watermark: its event time (`i64::MIN` before the first watermark).
    pub fn current_watermark(&self) -> i64 {
        self.backend.current_watermark()
    }

    /// Processing time now, ms since the Unix epoch.
    pub fn current_processing_time(&self) -> i64 {
        now_millis()
    }
}
