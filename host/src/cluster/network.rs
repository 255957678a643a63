//! The data plane of a worker: channels whose ends are on different workers.
//!
//! The sending worker opens one `Exchange` stream per channel and forwards the local channel's
//! messages into it in order, so barriers stay in-band and aligned exactly as in one process.
//! The receiving worker feeds the stream into a local channel of the downstream subtask's input
//! gate. Back-pressure crosses the network: a full local channel stops the handler reading,
//! HTTP/2 flow control stops the sender's stream, and the upstream subtask's channel fills.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::{Notify, mpsc};
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status, Streaming};
use wasmflow_types::SubtaskTag;

use super::auth::Secret;
use super::grpc;
use super::placement::Network;
use super::protocol::{ChannelId, DataFrame};
use crate::runtime::channel::{ChannelReceiver, ChannelSender};
use crate::runtime::subtask::Event;

/// How long a stream that arrives before its receiving subtask is deployed waits for it.
const REGISTRATION_WAIT: Duration = Duration::from_secs(60);

/// The local ends of a worker's incoming channels, by attempt and channel, until their streams
/// arrive. Shared by the deployments (which register) and the data-plane service (which takes).
#[derive(Default)]
pub struct Incoming {
    waiting: Mutex<IncomingState>,
    registered: Notify,
}

#[derive(Default)]
struct IncomingState {
    channels: HashMap<(u64, ChannelId), ChannelSender>,
    /// Attempts at or below this are over: their streams are refused.
    retired: u64,
}

impl Incoming {
    pub(crate) fn register(&self, attempt: u64, channel: ChannelId, into: ChannelSender) {
        self.waiting.lock().expect("incoming lock").channels.insert((attempt, channel), into);
        self.registered.notify_waiters();
    }

    /// Attempt `attempt` is over: its unclaimed channels are dropped and late streams refused.
    pub fn retire(&self, attempt: u64) {
        let mut state = self.waiting.lock().expect("incoming lock");
        state.retired = state.retired.max(attempt);
        state.channels.retain(|(a, _), _| *a > attempt);
        drop(state);
        self.registered.notify_waiters();
    }

    /// The local end of `channel`, once its deployment registered it.
    async fn take(&self, attempt: u64, channel: ChannelId) -> Result<ChannelSender, Status> {
        let deadline = tokio::time::Instant::now() + REGISTRATION_WAIT;
        loop {
            let notified = self.registered.notified();
            {
                let mut state = self.waiting.lock().expect("incoming lock");
                if attempt <= state.retired {
                    return Err(Status::cancelled(format!("attempt {attempt} is over on this worker")));
                }
                if let Some(tx) = state.channels.remove(&(attempt, channel)) {
                    return Ok(tx);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Status::not_found(format!("no subtask of attempt {attempt} on this worker receives channel {channel:?}")));
            }
        }
    }

    /// Serves one incoming `Exchange` stream: its frames into the channel's local end.
    pub async fn serve(&self, request: Request<Streaming<DataFrame>>) -> Result<Response<()>, Status> {
        let mut frames = request.into_inner();
        let Some(DataFrame::Open { attempt, channel }) = frames.message().await? else {
            return Err(Status::invalid_argument("a data stream must start with Open"));
        };
        let into = self.take(attempt, channel).await?;
        while let Some(frame) = frames.message().await? {
            let DataFrame::Message(message) = frame else {
                return Err(Status::invalid_argument("Open sent twice on one data stream"));
            };
            if into.send(message).await.is_err() {
                // The receiving subtask has ended: the attempt is being torn down.
                return Err(Status::cancelled("the receiving subtask has stopped"));
            }
        }
        Ok(Response::new(()))
    }
}

/// One deployment's network: its outgoing streams (aborted with it) and its registrations.
pub struct DataPlane {
    attempt: u64,
    secret: Secret,
    /// A connection per worker, by worker index (HTTP/2 carries every channel to that worker).
    peers: Vec<Channel>,
    incoming: Arc<Incoming>,
    forwarders: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl DataPlane {
    pub fn new(attempt: u64, secret: Secret, addresses: &[String], incoming: Arc<Incoming>) -> anyhow::Result<DataPlane> {
        let peers = addresses.iter().map(|a| grpc::channel(a)).collect::<anyhow::Result<_>>()?;
        Ok(DataPlane { attempt, secret, peers, incoming, forwarders: Mutex::new(Vec::new()) })
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        for task in self.forwarders.lock().expect("forwarders lock").drain(..) {
            task.abort();
        }
        self.incoming.retire(self.attempt);
    }
}

impl Network for DataPlane {
    fn send(&self, channel: ChannelId, to_worker: u32, messages: ChannelReceiver, from: SubtaskTag, events: mpsc::UnboundedSender<Event>) {
        let (peer, secret, attempt) = (self.peers[to_worker as usize].clone(), self.secret.clone(), self.attempt);
        let frames = futures::stream::once(async move { DataFrame::Open { attempt, channel } })
            .chain(futures::stream::unfold(messages, |mut rx| async move { rx.recv().await.map(|m| (DataFrame::Message(m), rx)) }));
        let task = tokio::spawn(async move {
            match grpc::exchange(peer, &secret, frames).await {
                Ok(()) => {}
                // The receiving side was torn down first: the attempt is ending, not failing.
                Err(status) if status.code() == Code::Cancelled => {}
                Err(status) => {
                    let _ = events.send(Event::Failed(from, format!("cannot send to worker {to_worker}: {}", status.message())));
                }
            }
        });
        self.forwarders.lock().expect("forwarders lock").push(task);
    }

    fn receive(&self, channel: ChannelId, into: ChannelSender) {
        self.incoming.register(self.attempt, channel, into);
    }
}
