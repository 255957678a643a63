//! The `state` interface: the guest's view of its subtask's [`OperatorStateStore`].
//!
//! Misuse gets an error the guest sees (and usually reports) rather than a trap: registering
//! outside `initialize-state`, a name with two modes, or entries over the limits.

use anyhow::Result;
use wasmflow_state::{Mode, TypeInfo};
use wasmtime::component::Resource;

use super::{BroadcastStateHandle, ListStateHandle, Phase, StoreData};
use crate::engine::bindings::wasmflow::operator::state::{Host, HostBroadcastState, HostListState};

type GuestResult<T> = Result<Result<T, String>>;

impl StoreData {
    pub(super) fn check_registration(&self, name: &str) -> Result<(), String> {
        if self.phase != Phase::InitializeState {
            return Err(format!("state '{name}' registered during {:?}: register state in initialize_state (Flink's initializeState)", self.phase));
        }
        Ok(())
    }

    fn register_list(&mut self, name: String, mode: Mode, type_name: String, schema: String) -> GuestResult<Resource<ListStateHandle>> {
        if let Err(e) = self.check_registration(&name) {
            return Ok(Err(e));
        }
        match self.state.operator.register_list(&name, mode, TypeInfo { type_name, schema }) {
            Ok(id) => Ok(Ok(self.table.push(ListStateHandle(id))?)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }

    fn list_id(&self, h: &Resource<ListStateHandle>) -> Result<usize> {
        Ok(self.table.get(h)?.0)
    }

    fn map_id(&self, h: &Resource<BroadcastStateHandle>) -> Result<usize> {
        Ok(self.table.get(h)?.0)
    }
}

impl Host for StoreData {
    fn get_list_state(&mut self, name: String, type_name: String, schema: String) -> GuestResult<Resource<ListStateHandle>> {
        self.register_list(name, Mode::SplitDistribute, type_name, schema)
    }

    fn get_union_list_state(&mut self, name: String, type_name: String, schema: String) -> GuestResult<Resource<ListStateHandle>> {
        self.register_list(name, Mode::Union, type_name, schema)
    }

    fn get_broadcast_state(
        &mut self,
        name: String,
        key_type_name: String,
        key_schema: String,
        value_type_name: String,
        value_schema: String,
    ) -> GuestResult<Resource<BroadcastStateHandle>> {
        if let Err(e) = self.check_registration(&name) {
            return Ok(Err(e));
        }
        let key = TypeInfo { type_name: key_type_name, schema: key_schema };
        let value = TypeInfo { type_name: value_type_name, schema: value_schema };
        match self.state.operator.register_broadcast(&name, key, value) {
            Ok(id) => Ok(Ok(self.table.push(BroadcastStateHandle(id))?)),
            Err(e) => Ok(Err(e.to_string())),
        }
    }
}

fn guest<T, E: ToString>(r: Result<T, E>) -> GuestResult<T> {
    Ok(r.map_err(|e| e.to_string()))
}

impl HostListState for StoreData {
    fn get(&mut self, h: Resource<ListStateHandle>) -> Result<Vec<Vec<u8>>> {
        let id = self.list_id(&h)?;
        Ok(self.state.operator.list_get(id)?)
    }

    fn add(&mut self, h: Resource<ListStateHandle>, element: Vec<u8>) -> GuestResult<()> {
        let id = self.list_id(&h)?;
        guest(self.state.operator.list_add(id, element))
    }

    fn add_all(&mut self, h: Resource<ListStateHandle>, elements: Vec<Vec<u8>>) -> GuestResult<()> {
        let id = self.list_id(&h)?;
        guest(self.state.operator.list_add_all(id, elements))
    }

    fn update(&mut self, h: Resource<ListStateHandle>, elements: Vec<Vec<u8>>) -> GuestResult<()> {
        let id = self.list_id(&h)?;
        guest(self.state.operator.list_update(id, elements))
    }

    fn clear(&mut self, h: Resource<ListStateHandle>) -> Result<()> {
        let id = self.list_id(&h)?;
        Ok(self.state.operator.list_clear(id)?)
    }

    fn drop(&mut self, h: Resource<ListStateHandle>) -> Result<()> {
        // Dropping a handle does not drop the state: Flink keeps registered state for the
        // lifetime of the operator and snapshots it.
        self.table.delete(h)?;
        Ok(())
    }
}

impl HostBroadcastState for StoreData {
    fn get(&mut self, h: Resource<BroadcastStateHandle>, key: Vec<u8>) -> Result<Option<Vec<u8>>> {
        let id = self.map_id(&h)?;
        Ok(self.state.operator.map_get(id, &key)?)
    }

    fn put(&mut self, h: Resource<BroadcastStateHandle>, key: Vec<u8>, value: Vec<u8>) -> GuestResult<()> {
        let id = self.map_id(&h)?;
        guest(self.state.operator.map_put(id, key, value))
    }

    fn remove(&mut self, h: Resource<BroadcastStateHandle>, key: Vec<u8>) -> Result<()> {
        let id = self.map_id(&h)?;
        Ok(self.state.operator.map_remove(id, &key)?)
    }

    fn contains(&mut self, h: Resource<BroadcastStateHandle>, key: Vec<u8>) -> Result<bool> {
        let id = self.map_id(&h)?;
        Ok(self.state.operator.map_contains(id, &key)?)
    }

    fn entries(&mut self, h: Resource<BroadcastStateHandle>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let id = self.map_id(&h)?;
        Ok(self.state.operator.map_entries(id)?)
    }

    fn clear(&mut self, h: Resource<BroadcastStateHandle>) -> Result<()> {
        let id = self.map_id(&h)?;
        Ok(self.state.operator.map_clear(id)?)
    }

    fn drop(&mut self, h: Resource<BroadcastStateHandle>) -> Result<()> {
        self.table.delete(h)?;
        Ok(())
    }
}
