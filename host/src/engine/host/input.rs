//! `wasmflow:operator/input`: the batch a `process` call is given, lent to the guest as a handle.
//!
//! The host keeps the records while the call runs; the guest copies them into its memory only
//! if it reads them. An operator that counts, forwards or ignores its input (a counter, a null
//! sink) never receives a byte of it, and a forwarded input goes on as the very batch the host
//! lent out.
//!
//! Registered by hand rather than through the generated `HostInputBatch` trait: its `read`
//! would return an owned batch, so the host would copy the records it keeps (for forwarding)
//! before lowering them into the guest. Here `read` lowers the lent batch itself, through an
//! `Arc`: the one copy is into the guest.

use std::sync::Arc;

use anyhow::Result;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType};

use super::StoreData;
use crate::engine::bindings::wasmflow::operator::types as wire;

/// The input of one `process` call, in the store's resource table while the call runs.
pub struct InputBatch(Arc<wire::Batch>);

impl InputBatch {
    pub fn new(batch: wire::Batch) -> InputBatch {
        InputBatch(Arc::new(batch))
    }

    /// The batch back, once the call is over (a guest cannot keep a share of it: `read`'s
    /// share is dropped as soon as it is lowered).
    pub fn into_batch(self) -> wire::Batch {
        Arc::try_unwrap(self.0).unwrap_or_else(|shared| (*shared).clone())
    }
}

/// The batch behind a handle the guest passed back.
fn lent<'a>(store: &'a StoreContextMut<'_, StoreData>, handle: &Resource<InputBatch>) -> wasmtime::Result<&'a Arc<wire::Batch>> {
    Ok(&store.data().table.get(handle)?.0)
}

/// Adds the `input` interface (`name` is its versioned name) to `linker`.
pub fn add_to_linker(linker: &mut Linker<StoreData>, name: &str) -> Result<()> {
    let mut input = linker.instance(name)?;
    // The guest only ever holds borrows, which it does not drop; the host deletes the handle
    // when the call returns.
    input.resource("input-batch", ResourceType::host::<InputBatch>(), |_, _| Ok(()))?;
    input.func_wrap("[method]input-batch.len", |store, (handle,): (Resource<InputBatch>,)| Ok((lent(&store, &handle)?.key_lens.len() as u32,)))?;
    input.func_wrap("[method]input-batch.data-bytes", |store, (handle,): (Resource<InputBatch>,)| Ok((lent(&store, &handle)?.data.len() as u64,)))?;
    input.func_wrap("[method]input-batch.read", |store, (handle,): (Resource<InputBatch>,)| Ok((lent(&store, &handle)?.clone(),)))?;
    Ok(())
}
