//! What the host tells an operator: who it is, its configuration, whether it is restored.

use anyhow::{Context as _, Result};
use serde::Serialize;
use serde::de::DeserializeOwned;
use wasmflow_state::Mode;

use crate::TaskInfo;

use crate::keyed::{AggregateFunction, AggregatingState, KeyedListState, MapState, ReducingState, ValueState};
use crate::state::{Backend, BroadcastState, ListState};

/// Identity and configuration of one subtask — Flink's `RuntimeContext`.
#[derive(Clone, Debug)]
pub struct RuntimeContext {
    info: TaskInfo,
    config: serde_json::Value,
}

impl RuntimeContext {
    /// A context for tests and harnesses.
    pub fn new(operator_id: &str, subtask_index: u32, parallelism: u32, config: serde_json::Value) -> Self {
        let info = TaskInfo { operator_id: operator_id.to_string(), subtask_index, parallelism, checkpointing_enabled: true, attempt: 0 };
        RuntimeContext { info, config }
    }

    /// The context the host gives: the subtask's identity and the operator's `config` table as
    /// JSON text (empty for none).
    #[doc(hidden)]
    pub fn from_task(info: TaskInfo, config: &str) -> Result<Self, String> {
        let config = if config.trim().is_empty() {
            serde_json::Value::Object(Default::default())
        } else {
            serde_json::from_str(config).map_err(|e| format!("operator config is not valid JSON: {e}"))?
        };
        Ok(RuntimeContext { info, config })
    }

    /// The subtask's identity.
    pub fn task_info(&self) -> &TaskInfo {
        &self.info
    }

    /// The operator's id in the job file.
    pub fn operator_id(&self) -> &str {
        &self.info.operator_id
    }

    /// Index of this subtask, from 0.
    pub fn subtask_index(&self) -> u32 {
        self.info.subtask_index
    }

    /// Number of parallel subtasks of this operator.
    pub fn parallelism(&self) -> u32 {
        self.info.parallelism
    }

    /// Whether the job takes checkpoints.
    pub fn checkpointing_enabled(&self) -> bool {
        self.info.checkpointing_enabled
    }

    /// Execution attempt of the job: increases at every (re)start from the same checkpoint
    /// directory. Sinks name their files with it to tell their own from a crashed attempt's.
    pub fn attempt(&self) -> u64 {
        self.info.attempt
    }

    /// Sets the execution attempt (tests).
    pub fn with_attempt(mut self, attempt: u64) -> Self {
        self.info.attempt = attempt;
        self
    }

    /// Sets whether the job takes checkpoints (tests).
    pub fn with_checkpointing(mut self, enabled: bool) -> Self {
        self.info.checkpointing_enabled = enabled;
        self
    }

    /// The operator's `config` table from the job file, as raw JSON.
    pub fn raw_config(&self) -> &serde_json::Value {
        &self.config
    }

    /// The operator's `config` table decoded into `T`; the error names the bad key.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.config.clone()).with_context(|| format!("invalid config for operator '{}'", self.info.operator_id))
    }
}

/// Passed to `initialize_state` — Flink's `FunctionInitializationContext`.
pub struct FunctionInitializationContext {
    pub(crate) restored_checkpoint_id: Option<u64>,
    pub(crate) backend: Backend,
}

impl FunctionInitializationContext {
    /// Whether the job was started from a checkpoint or savepoint. True for every subtask of a
    /// restored job, even one that received no state (docs/state.md).
    pub fn is_restored(&self) -> bool {
        self.restored_checkpoint_id.is_some()
    }

    /// The id of the checkpoint the job was restored from.
    pub fn restored_checkpoint_id(&self) -> Option<u64> {
        self.restored_checkpoint_id
    }

    /// `getListState`: a list split over the subtasks on rescale (SPLIT_DISTRIBUTE).
    pub fn get_list_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> Result<ListState<T>> {
        self.backend.list(name, Mode::SplitDistribute)
    }

    /// `getUnionListState`: on restore every subtask gets every subtask's elements (UNION).
    pub fn get_union_list_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> Result<ListState<T>> {
        self.backend.list(name, Mode::Union)
    }

    /// `getBroadcastState`: a map every subtask holds a copy of (BROADCAST).
    pub fn get_broadcast_state<K, V>(&mut self, name: &str) -> Result<BroadcastState<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.backend.broadcast(name)
    }

    /// Keyed operators: `getState(ValueStateDescriptor)`, one value per key.
    pub fn get_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> Result<ValueState<T>> {
        self.backend.value_state(name, None)
    }

    /// Keyed operators: a [`ValueState`] whose entries expire `ttl` of processing time after
    /// their last write (Flink's `StateTtlConfig` with `OnCreateAndWrite`, `NeverReturnExpired`).
    pub fn get_state_with_ttl<T: Serialize + DeserializeOwned>(&mut self, name: &str, ttl: std::time::Duration) -> Result<ValueState<T>> {
        self.backend.value_state(name, Some(ttl))
    }

    /// Keyed operators: `getListState(ListStateDescriptor)`, a list per key.
    pub fn get_keyed_list_state<T: Serialize + DeserializeOwned>(&mut self, name: &str) -> Result<KeyedListState<T>> {
        self.backend.keyed_list_state(name)
    }

    /// Keyed operators: `getMapState(MapStateDescriptor)`, a map per key.
    pub fn get_map_state<K, V>(&mut self, name: &str) -> Result<MapState<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.backend.map_state(name, None)
    }

    /// Keyed operators: a [`MapState`] whose entries expire `ttl` of processing time after their
    /// last write.
    pub fn get_map_state_with_ttl<K, V>(&mut self, name: &str, ttl: std::time::Duration) -> Result<MapState<K, V>>
    where
        K: Serialize + DeserializeOwned,
        V: Serialize + DeserializeOwned,
    {
        self.backend.map_state(name, Some(ttl))
    }

    /// Keyed operators: `getReducingState`, values combined per key by `reduce`.
    pub fn get_reducing_state<T: Serialize + DeserializeOwned>(&mut self, name: &str, reduce: fn(T, T) -> T) -> Result<ReducingState<T>> {
        Ok(ReducingState::new(self.backend.value_state(name, None)?, reduce))
    }

    /// Keyed operators: `getAggregatingState`, inputs folded per key by `function`.
    pub fn get_aggregating_state<F: AggregateFunction>(&mut self, name: &str, function: F) -> Result<AggregatingState<F>> {
        Ok(AggregatingState::new(self.backend.value_state(name, None)?, function))
    }
}

/// Passed to `snapshot_state` — Flink's `FunctionSnapshotContext`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionSnapshotContext {
    pub(crate) checkpoint_id: u64,
    pub(crate) checkpoint_timestamp: i64,
}

impl FunctionSnapshotContext {
    /// A context for tests and harnesses.
    pub fn new(checkpoint_id: u64, checkpoint_timestamp: i64) -> Self {
        FunctionSnapshotContext { checkpoint_id, checkpoint_timestamp }
    }

    /// Id of the checkpoint being taken (strictly increasing).
    pub fn checkpoint_id(&self) -> u64 {
        self.checkpoint_id
    }

    /// When the checkpoint was triggered, milliseconds since the Unix epoch.
    pub fn checkpoint_timestamp(&self) -> i64 {
        self.checkpoint_timestamp
    }
}
