//! Which worker runs which subtasks, and what a worker needs to run its slice of a job.

use wasmflow_types::SubtaskTag;

use super::protocol::ChannelId;
use crate::runtime::channel::{ChannelReceiver, ChannelSender};
use crate::runtime::subtask::Event;

/// Subtask index `i` of every operator runs on worker `i mod N`: Flink's slot sharing, where a
/// slot holds one slice of the whole pipeline. Forward edges (`i → i`) and chains therefore never
/// leave a worker; only `rebalance`, `hash` and `broadcast` edges cross the network, and every
/// worker holds a share of every operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    pub workers: u32,
}

impl Placement {
    /// The worker that runs subtask `index` of any operator.
    pub fn worker_of(&self, index: usize) -> u32 {
        (index as u32) % self.workers
    }
}

/// A worker's part of an attempt: the subtasks it runs, and the network to the others.
pub struct Slice<'n> {
    pub worker: u32,
    pub placement: Placement,
    pub network: &'n dyn Network,
}

impl Slice<'_> {
    /// Whether this worker runs subtask `index` (of any operator).
    pub fn runs(&self, index: usize) -> bool {
        self.placement.worker_of(index) == self.worker
    }
}

/// The data plane as a deployment sees it: channels whose other end is on another worker.
pub trait Network: Send + Sync {
    /// Sends what upstream subtask `from` puts into a local channel to the worker that runs the
    /// channel's downstream subtask. A failure to reach it is reported as `from`'s failure.
    fn send(&self, channel: ChannelId, to_worker: u32, messages: ChannelReceiver, from: SubtaskTag, events: tokio::sync::mpsc::UnboundedSender<Event>);
    /// Feeds what arrives from another worker for `channel` into a local channel.
    fn receive(&self, channel: ChannelId, into: ChannelSender);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipeline_slices_go_round_robin() {
        let p = Placement { workers: 3 };
        let placed: Vec<u32> = (0..7).map(|i| p.worker_of(i)).collect();
        assert_eq!(placed, [0, 1, 2, 0, 1, 2, 0]);
    }
}
