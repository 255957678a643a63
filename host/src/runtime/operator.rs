//! An operator's code, loaded once per job, and its subtasks' [`OperatorInstance`]s: a
//! sandboxed wasm instance or a native operator, which the rest of the runtime does not tell
//! apart.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::engine::host::StoreData;
use crate::engine::{Capability, Engine, OperatorModule, WasmInstance};
use crate::instance::OperatorInstance;
use crate::job::{JobSpec, OperatorSpec};
use crate::native::{NativeFactory, NativeInstance, NativeRegistry, native_name};

/// An operator's code, loaded once per job.
pub enum OperatorCode {
    /// A component, compiled and checked against its grants (boxed: it is much larger than a
    /// native factory).
    Wasm(Box<OperatorModule>),
    /// A native operator from the host's [`NativeRegistry`].
    Native(NativeFactory),
}

impl OperatorCode {
    /// Loads the code of `op`: its wasm module, or the native operator it names.
    pub fn load(engine: &Engine, job: &JobSpec, op: &OperatorSpec, native: &NativeRegistry) -> Result<Self> {
        if let Some(name) = native_name(&op.module) {
            if op.grants.kafka.is_some() || op.grants.files.is_some() {
                bail!("native operators get no capabilities (they are not sandboxed); remove `grants` or use a wasm module");
            }
            return Ok(OperatorCode::Native(native.get(name)?));
        }
        let mut granted = BTreeSet::new();
        if op.grants.kafka.is_some() {
            granted.insert(Capability::Kafka);
        }
        if op.grants.files.is_some() {
            granted.insert(Capability::Files);
        }
        Ok(OperatorCode::Wasm(Box::new(OperatorModule::load(engine, &job.resolve(&op.module), &granted)?)))
    }

    /// A new subtask of this operator over `data` (its tag, restored state and capabilities).
    pub async fn instantiate(&self, engine: &Engine, data: StoreData, call_timeout: Duration) -> Result<Box<dyn OperatorInstance>> {
        Ok(match self {
            OperatorCode::Wasm(module) => Box::new(WasmInstance::instantiate(engine, module, data, call_timeout).await?),
            OperatorCode::Native(factory) => {
                let (tag, store) = data.into_parts();
                Box::new(NativeInstance::new(tag, factory.clone(), store))
            }
        })
    }
}

/// Loads every operator's code once; errors name the operator.
pub fn load_operators(engine: &Engine, job: &JobSpec, native: &NativeRegistry) -> Result<std::collections::BTreeMap<String, OperatorCode>> {
    job.operators.iter().map(|op| Ok((op.id.clone(), OperatorCode::load(engine, job, op, native).with_context(|| format!("operator '{}'", op.id))?))).collect()
}
