use serde::{Deserialize, Serialize};

/// How a named state is redistributed when a job is restored (docs/state.md).
///
/// The names are Flink's `OperatorStateHandle.Mode`, so a Flink user recognises them.
///
/// ```
/// use wasmflow_state::Mode;
/// assert_eq!(Mode::Union.to_string(), "UNION");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Mode {
    /// `getListState`: elements are split into contiguous chunks over the new subtasks (docs/state.md, split lists).
    SplitDistribute,
    /// `getUnionListState`: every new subtask gets every old subtask's elements (docs/state.md, union lists).
    Union,
    /// `getBroadcastState`: new subtask `i` gets old subtask `i mod oldP`'s map (docs/state.md, broadcast maps).
    Broadcast,
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Mode::SplitDistribute => "SPLIT_DISTRIBUTE",
            Mode::Union => "UNION",
            Mode::Broadcast => "BROADCAST",
        })
    }
}
