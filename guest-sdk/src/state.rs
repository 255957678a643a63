//! Typed operator state, in Flink's vocabulary: [`ListState`] (split on rescale),
//! union list state (every subtask gets the whole list) and [`BroadcastState`].
//!
//! The host owns the state; a handle only names it. Values are encoded through serde with
//! [`wasmflow_types::codec`], so any `Serialize + DeserializeOwned` type works.
//! Register state in `initialize_state` through the
//! [`FunctionInitializationContext`](crate::FunctionInitializationContext). A handle starts
//! unregistered (its `Default`), so an operator's state field needs no `Option`; using it before
//! registration is an error that says so.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Result, anyhow};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmflow_state::{Mode, StateId, SubtaskState, TypeInfo};

/// The state of a natively hosted operator (test harness, or a host that compiles the
/// operator in): operator state and, for a keyed operator, keyed state and timers. A mutex rather than a `RefCell` so a native operator can move between threads
/// with its subtask; it is never contended (one subtask, one caller at a time).
#[doc(hidden)]
pub type SharedStore = Arc<Mutex<SubtaskState>>;

/// Locks a native store; a poisoned lock (a panic in an earlier call) still holds valid state,
/// because every store operation checks its arguments before it changes anything.
pub(crate) fn lock(store: &SharedStore) -> MutexGuard<'_, SubtaskState> {
    store.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where state lives: in the host (inside wasm) or in a native store.
#[doc(hidden)]
#[derive(Clone)]
pub enum Backend {
    #[cfg(target_arch = "wasm32")]
    Host,
    Native(SharedStore),
}

enum ListHandle {
    #[cfg(target_arch = "wasm32")]
    Host(crate::bindings::wasmflow::operator::state::ListState),
    Native(SharedStore, StateId),
}

enum MapHandle {
    #[cfg(target_arch = "wasm32")]
    Host(crate::bindings::wasmflow::operator::state::BroadcastState),
    Native(SharedStore, StateId),
}

/// Encodes a value as state bytes ([`wasmflow_types::codec`]).
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    wasmflow_types::codec::encode(value).map_err(|e| anyhow!("cannot encode state value: {e}"))
}

/// Decodes state bytes written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    wasmflow_types::codec::decode(bytes).map_err(|e| anyhow!("state value is not a {}: {e}", std::any::type_name::<T>()))
}

fn unregistered(what: &str) -> anyhow::Error {
    anyhow!("{what} used before it was registered: assign it in `initialize_state` (ctx.get_{what}(\"name\"))")
}

/// Describes `T` for `wasmflow inspect`: its Rust name and, where serde-reflection can trace
/// it, its serde format as JSON so the host can decode entries without the guest.
pub(crate) fn type_info<T: DeserializeOwned>() -> TypeInfo {
    use serde_reflection::{Tracer, TracerConfig};
    let mut tracer = Tracer::new(TracerConfig::default());
    let schema = match tracer.trace_simple_type::<T>() {
        Ok((format, _)) => match tracer.registry() {
            Ok(registry) => serde_json::json!({ "format": format, "registry": registry }).to_string(),
            Err(_) => String::new(),
        },
        Err(_) => String::new(),
    };
    TypeInfo { type_name: std::any::type_name::<T>().to_string(), schema }
}

impl Backend {
    pub(crate) fn list<T: Serialize + DeserializeOwned>(&self, name: &str, mode: Mode) -> Result<ListState<T>> {
        let ty = type_info::<T>();
        let handle = match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => {
                use crate::bindings::wasmflow::operator::state as wit;
                let h = match mode {
                    Mode::Union => wit::get_union_list_state(name, &ty.type_name, &ty.schema),
                    _ => wit::get_list_state(name, &ty.type_name, &ty.schema),
                };
                ListHandle::Host(h.map_err(|e| anyhow!(e))?)
            }
            Backend::Native(store) => {
                let id = lock(store).operator.register_list(name, mode, ty)?;
                ListHandle::Native(store.clone(), id)
            }
        };
        Ok(ListState { handle: Some(handle), _type: PhantomData })
    }

    pub(crate) fn broadcast<K, V>(&self, name: &str) -> Result<BroadcastState<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        let (kt, vt) = (type_info::<K>(), type_info::<V>());
        let handle = match self {
            #[cfg(target_arch = "wasm32")]
            Backend::Host => {
                use crate::bindings::wasmflow::operator::state as wit;
                let h = wit::get_broadcast_state(name, &kt.type_name, &kt.schema, &vt.type_name, &vt.schema);
                MapHandle::Host(h.map_err(|e| anyhow!(e))?)
            }
            Backend::Native(store) => {
                let id = lock(store).operator.register_broadcast(name, kt, vt)?;
                MapHandle::Native(store.clone(), id)
            }
        };
        Ok(BroadcastState { handle: Some(handle), _type: PhantomData })
    }
}

/// A list of `T` kept by the host: Flink's `ListState`.
///
/// Obtained from `get_list_state` (SPLIT_DISTRIBUTE: on rescale the elements of all subtasks
/// are split into contiguous chunks) or `get_union_list_state` (UNION: on restore every subtask
/// gets every subtask's elements). Each element is one unit of redistribution.
pub struct ListState<T> {
    handle: Option<ListHandle>,
    _type: PhantomData<fn() -> T>,
}

impl<T> Default for ListState<T> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        ListState { handle: None, _type: PhantomData }
    }
}

impl<T: Serialize + DeserializeOwned> ListState<T> {
    fn handle(&self) -> Result<&ListHandle> {
        self.handle.as_ref().ok_or_else(|| unregistered("list_state"))
    }

    /// All elements, decoded.
    pub fn get(&self) -> Result<Vec<T>> {
        let raw = match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            ListHandle::Host(h) => h.get(),
            ListHandle::Native(s, id) => lock(s).operator.list_get(*id)?,
        };
        raw.iter().map(|b| decode(b)).collect()
    }

    /// Appends one element.
    pub fn add(&self, value: &T) -> Result<()> {
        let bytes = encode(value)?;
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            ListHandle::Host(h) => h.add(&bytes).map_err(|e| anyhow!(e)),
            ListHandle::Native(s, id) => Ok(lock(s).operator.list_add(*id, bytes)?),
        }
    }

    /// Appends every element of `values` (none is a no-op).
    pub fn add_all<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let encoded = values.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            ListHandle::Host(h) => h.add_all(&encoded).map_err(|e| anyhow!(e)),
            ListHandle::Native(s, id) => Ok(lock(s).operator.list_add_all(*id, encoded)?),
        }
    }

    /// Replaces the content with `values` (Flink's `update`: clear, then add all).
    pub fn update<'a>(&self, values: impl IntoIterator<Item = &'a T>) -> Result<()>
    where
        T: 'a,
    {
        let encoded = values.into_iter().map(encode).collect::<Result<Vec<_>>>()?;
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            ListHandle::Host(h) => h.update(&encoded).map_err(|e| anyhow!(e)),
            ListHandle::Native(s, id) => Ok(lock(s).operator.list_update(*id, encoded)?),
        }
    }

    /// Removes every element.
    pub fn clear(&self) -> Result<()> {
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            ListHandle::Host(h) => {
                h.clear();
                Ok(())
            }
            ListHandle::Native(s, id) => Ok(lock(s).operator.list_clear(*id)?),
        }
    }
}

/// A map kept by the host and copied to every subtask: Flink's `BroadcastState`.
/// On rescale, new subtask `i` gets old subtask `i mod oldP`'s map.
pub struct BroadcastState<K, V> {
    handle: Option<MapHandle>,
    _type: PhantomData<fn() -> (K, V)>,
}

impl<K, V> Default for BroadcastState<K, V> {
    /// An unregistered handle, to be replaced in `initialize_state`.
    fn default() -> Self {
        BroadcastState { handle: None, _type: PhantomData }
    }
}

impl<K, V> BroadcastState<K, V>
where
    K: Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    fn handle(&self) -> Result<&MapHandle> {
        self.handle.as_ref().ok_or_else(|| unregistered("broadcast_state"))
    }

    /// The value for `key`, if any.
    pub fn get(&self, key: &K) -> Result<Option<V>> {
        let k = encode(key)?;
        let raw = match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => h.get(&k),
            MapHandle::Native(s, id) => lock(s).operator.map_get(*id, &k)?,
        };
        raw.map(|b| decode(&b)).transpose()
    }

    /// Sets `key` to `value`.
    pub fn put(&self, key: &K, value: &V) -> Result<()> {
        let (k, v) = (encode(key)?, encode(value)?);
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => h.put(&k, &v).map_err(|e| anyhow!(e)),
            MapHandle::Native(s, id) => Ok(lock(s).operator.map_put(*id, k, v)?),
        }
    }

    /// Removes `key`.
    pub fn remove(&self, key: &K) -> Result<()> {
        let k = encode(key)?;
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => {
                h.remove(&k);
                Ok(())
            }
            MapHandle::Native(s, id) => Ok(lock(s).operator.map_remove(*id, &k)?),
        }
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &K) -> Result<bool> {
        let k = encode(key)?;
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => Ok(h.contains(&k)),
            MapHandle::Native(s, id) => Ok(lock(s).operator.map_contains(*id, &k)?),
        }
    }

    /// Every entry, sorted by encoded key.
    pub fn entries(&self) -> Result<Vec<(K, V)>> {
        let raw = match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => h.entries(),
            MapHandle::Native(s, id) => lock(s).operator.map_entries(*id)?,
        };
        raw.iter().map(|(k, v)| Ok((decode(k)?, decode(v)?))).collect()
    }

    /// Removes every entry.
    pub fn clear(&self) -> Result<()> {
        match self.handle()? {
            #[cfg(target_arch = "wasm32")]
            MapHandle::Host(h) => {
                h.clear();
                Ok(())
            }
            MapHandle::Native(s, id) => Ok(lock(s).operator.map_clear(*id)?),
        }
    }
}
