//! The `keyed` interface: keyed state and timers of a keyed operator, backed by the subtask's
//! [`KeyedStateBackend`](wasmflow_state::KeyedStateBackend).
//!
//! A state or timer call names its key; the backend refuses a key this subtask does not own.
//! Misuse is an error the guest sees (and reports), never a trap: registering outside
//! `initialize-state`, keyed state in an operator that is not keyed, a changed type.

use anyhow::Result;
use wasmflow_state::{KeyedStateBackend, KeyedStateError, KeyedStateId, TimeDomain, TypeInfo};
use wasmtime::component::Resource;

use super::{KeyedStateHandle, StoreData};
use crate::engine::bindings::wasmflow::operator::keyed::{Host, HostKeyedListState, HostMapState, HostValueState};
use crate::engine::bindings::wasmflow::operator::types::TimeDomain as WireDomain;

type GuestResult<T> = Result<Result<T, String>>;

fn guest<T>(r: Result<T, KeyedStateError>) -> GuestResult<T> {
    Ok(r.map_err(|e| e.to_string()))
}

fn domain(d: WireDomain) -> TimeDomain {
    match d {
        WireDomain::EventTime => TimeDomain::EventTime,
        WireDomain::ProcessingTime => TimeDomain::ProcessingTime,
    }
}

/// Processing time in milliseconds since the epoch (TTL is measured in it, as in Flink). State
/// calls read the time the guest call began (`StoreData::call_millis`), not the clock: one
/// clock read per call instead of one per state access, and all accesses of a batch agree.
pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl StoreData {
    fn keyed(&mut self, what: impl FnOnce() -> String) -> Result<&mut KeyedStateBackend, String> {
        self.state.keyed_mut(what).map_err(|e| e.to_string())
    }

    fn register_keyed(
        &mut self,
        name: &str,
        register: impl FnOnce(&mut KeyedStateBackend) -> Result<KeyedStateId, KeyedStateError>,
    ) -> GuestResult<Resource<KeyedStateHandle>> {
        if let Err(e) = self.check_registration(name) {
            return Ok(Err(e));
        }
        let backend = match self.keyed(|| format!("keyed state '{name}'")) {
            Ok(b) => b,
            Err(e) => return Ok(Err(e)),
        };
        match register(backend) {
            Ok(id) => Ok(Ok(self.table.push(KeyedStateHandle(id))?)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    /// Runs `f` on the backend with the handle's state id.
    fn with_keyed<T>(
        &mut self,
        h: &Resource<KeyedStateHandle>,
        f: impl FnOnce(&mut KeyedStateBackend, KeyedStateId) -> Result<T, KeyedStateError>,
    ) -> GuestResult<T> {
        let id = self.table.get(h)?.0;
        match self.keyed(|| "keyed state".into()) {
            Ok(backend) => guest(f(backend, id)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl Host for StoreData {
    fn get_value_state(&mut self, name: String, type_name: String, schema: String, ttl_ms: Option<u64>) -> GuestResult<Resource<KeyedStateHandle>> {
        self.register_keyed(&name, |b| b.register_value(&name, TypeInfo { type_name, schema }, ttl_ms))
    }

    fn get_list_state(&mut self, name: String, type_name: String, schema: String) -> GuestResult<Resource<KeyedStateHandle>> {
        self.register_keyed(&name, |b| b.register_list(&name, TypeInfo { type_name, schema }))
    }

    fn get_map_state(
        &mut self,
        name: String,
        key_type_name: String,
        key_schema: String,
        value_type_name: String,
        value_schema: String,
        ttl_ms: Option<u64>,
    ) -> GuestResult<Resource<KeyedStateHandle>> {
        let key = TypeInfo { type_name: key_type_name, schema: key_schema };
        let value = TypeInfo { type_name: value_type_name, schema: value_schema };
        self.register_keyed(&name, |b| b.register_map(&name, key, value, ttl_ms))
    }

    fn register_timer(&mut self, d: WireDomain, key: Vec<u8>, timestamp: i64) -> GuestResult<()> {
        match self.keyed(|| "a timer".into()) {
            Ok(b) => guest(b.register_timer(domain(d), &key, timestamp)),
            Err(e) => Ok(Err(e)),
        }
    }

    fn delete_timer(&mut self, d: WireDomain, key: Vec<u8>, timestamp: i64) -> GuestResult<()> {
        match self.keyed(|| "a timer".into()) {
            Ok(b) => guest(b.delete_timer(domain(d), &key, timestamp)),
            Err(e) => Ok(Err(e)),
        }
    }
}

impl HostValueState for StoreData {
    fn get(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<Option<Vec<u8>>> {
        let now = self.call_millis;
        self.with_keyed(&h, |b, id| b.value_get(id, &key, now))
    }

    fn update(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, value: Vec<u8>) -> GuestResult<()> {
        let now = self.call_millis;
        self.with_keyed(&h, |b, id| b.value_update(id, &key, value, now))
    }

    fn clear(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.clear(id, &key))
    }

    fn drop(&mut self, h: Resource<KeyedStateHandle>) -> Result<()> {
        // Dropping a handle does not drop the state (as for operator state).
        self.table.delete(h)?;
        Ok(())
    }
}

impl HostKeyedListState for StoreData {
    fn get(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<Vec<Vec<u8>>> {
        self.with_keyed(&h, |b, id| b.list_get(id, &key))
    }

    fn add(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, element: Vec<u8>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.list_add(id, &key, element))
    }

    fn update(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, elements: Vec<Vec<u8>>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.list_update(id, &key, elements))
    }

    fn clear(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.clear(id, &key))
    }

    fn drop(&mut self, h: Resource<KeyedStateHandle>) -> Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}

impl HostMapState for StoreData {
    fn get(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, user_key: Vec<u8>) -> GuestResult<Option<Vec<u8>>> {
        let now = self.call_millis;
        self.with_keyed(&h, |b, id| b.map_get(id, &key, &user_key, now))
    }

    fn put(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, user_key: Vec<u8>, value: Vec<u8>) -> GuestResult<()> {
        let now = self.call_millis;
        self.with_keyed(&h, |b, id| b.map_put(id, &key, user_key, value, now))
    }

    fn remove(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>, user_key: Vec<u8>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.map_remove(id, &key, &user_key))
    }

    fn entries(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<Vec<(Vec<u8>, Vec<u8>)>> {
        let now = self.call_millis;
        self.with_keyed(&h, |b, id| b.map_entries(id, &key, now))
    }

    fn clear(&mut self, h: Resource<KeyedStateHandle>, key: Vec<u8>) -> GuestResult<()> {
        self.with_keyed(&h, |b, id| b.clear(id, &key))
    }

    fn drop(&mut self, h: Resource<KeyedStateHandle>) -> Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}
