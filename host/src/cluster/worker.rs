//! `wasmflow worker`: a process that runs its job manager's subtasks.
//!
//! A worker serves the data plane, attaches to its job manager (a control stream), and then
//! does what it is told: deploy its slice of an attempt (instantiate, restore, start its
//! subtasks), route controls to them, report their events, tear an attempt down. It keeps no
//! state of its own: when its job manager goes away it drops everything it ran and waits for
//! the next job manager (or, started by one with `--once`, exits with it).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use wasmflow_types::SubtaskTag;

use super::announced::AnnouncedWriter;
use super::auth::Secret;
use super::grpc::{self, Handler, ToWorkerStream};
use super::network::{DataPlane, Incoming};
use super::placement::{Placement, Slice};
use super::protocol::{DataFrame, Deployment, FromWorker, ToWorker};
use crate::checkpoint::{Location, load_location};
use crate::engine::Engine;
use crate::job::JobSpec;
use crate::runtime::RunOptions;
use crate::runtime::attempt::Attempt;
use crate::runtime::operator::load_operators;
use crate::runtime::subtask::Control;

/// How long a worker keeps trying to reach its job manager at start.
const ATTACH_WAIT: Duration = Duration::from_secs(30);

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// The job manager's cluster address (`host:port`).
    pub job_manager: String,
    /// Where the data plane listens.
    pub listen: SocketAddr,
    /// The address other workers reach the data plane at (default: the one it listens on).
    pub advertise: Option<String>,
    pub secret: Secret,
    /// Exit when the job manager goes away (a job manager's own child workers); otherwise wait
    /// for the next one (workers of a cluster manager, which outlive a job manager's restart).
    pub once: bool,
}

/// The job manager refused this worker (a wrong secret): retrying cannot help.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Refused(String);

/// The worker's side of the `wasmflow.Cluster` service: the data plane.
struct WorkerService {
    secret: Secret,
    incoming: Arc<Incoming>,
}

#[async_trait::async_trait]
impl Handler for WorkerService {
    async fn attach(&self, _: tonic::Request<tonic::Streaming<FromWorker>>) -> Result<tonic::Response<ToWorkerStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("this is a worker: workers attach to a job manager (wasmflow run --workers)"))
    }

    async fn exchange(&self, request: tonic::Request<tonic::Streaming<DataFrame>>) -> Result<tonic::Response<()>, tonic::Status> {
        self.secret.check(request.metadata())?;
        self.incoming.serve(request).await
    }
}

/// The slice of an attempt this worker runs.
struct Running {
    attempt: u64,
    controls: mpsc::UnboundedSender<(SubtaskTag, Control)>,
    writer: Arc<AnnouncedWriter>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs a worker until its job manager goes away.
pub async fn run(opts: WorkerOptions) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("cannot listen on {} for the data plane", opts.listen))?;
    let bound = listener.local_addr()?;
    let data_address = match &opts.advertise {
        Some(a) => a.clone(),
        None if bound.ip().is_unspecified() => bail!("the data plane listens on {bound}: give --advertise HOST:PORT, the address other workers reach it at"),
        None => bound.to_string(),
    };
    let incoming = Arc::new(Incoming::default());
    let service = Arc::new(WorkerService { secret: opts.secret.clone(), incoming: incoming.clone() });
    let server = tokio::spawn(grpc::serve(listener, service));

    let engine = Arc::new(Engine::new()?);
    loop {
        let end = session(&opts, &data_address, &engine, &incoming).await;
        // A refused secret ends the worker too: retrying cannot help.
        let exits = opts.once || end.as_ref().is_err_and(|e| e.is::<Refused>());
        match (&end, exits) {
            (Ok(()), true) => tracing::info!("the job manager closed the control stream: worker {} exits", std::process::id()),
            (Err(e), true) => tracing::warn!("{e:#}: worker {} exits", std::process::id()),
            (Ok(()), false) => tracing::info!("the job manager closed the control stream; waiting for the next one"),
            (Err(e), false) => tracing::warn!("{e:#}; waiting for a job manager"),
        }
        if exits {
            server.abort();
            return end;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One attachment to a job manager: runs what it deploys until its control stream closes.
async fn session(opts: &WorkerOptions, data_address: &str, engine: &Arc<Engine>, incoming: &Arc<Incoming>) -> Result<()> {
    let (mut down, up) = attach(opts, data_address).await?;
    tracing::info!("worker {} attached to {}; data plane at {data_address}", std::process::id(), opts.job_manager);
    // One set of metrics for the whole attachment: counts go on across attempts, and the job
    // manager adds what changed between reports.
    let session =
        Session { engine: engine.clone(), secret: opts.secret.clone(), incoming: incoming.clone(), up, metrics: Arc::new(crate::metrics::JobMetrics::new("")) };
    let mut running: Option<Running> = None;
    loop {
        let message = match down.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(status) => bail!("lost the job manager at {}: {}", opts.job_manager, status.message()),
        };
        match message {
            ToWorker::Deploy(d) => {
                // A new attempt replaces whatever is left of the last one.
                drop(running.take());
                let attempt = d.attempt;
                match deploy(session.clone(), *d) {
                    Ok(r) => running = Some(r),
                    Err(e) => {
                        let _ = session.up.send(FromWorker::DeployFailed { attempt, message: format!("{e:#}") });
                    }
                }
            }
            ToWorker::Announce { id, savepoint } => {
                if let Some(r) = &running {
                    let announced = savepoint.map(|s| s.parse::<Location>()).transpose().and_then(|location| r.writer.announce(id, location.as_ref()));
                    if let Err(e) = announced {
                        tracing::warn!("checkpoint {id}: {e:#}");
                    }
                }
            }
            ToWorker::Control { attempt, tag, control } => {
                if let Some(r) = running.as_ref().filter(|r| r.attempt == attempt) {
                    let _ = r.controls.send((tag, control));
                }
            }
            ToWorker::Cancel { attempt } => {
                if running.as_ref().is_some_and(|r| r.attempt == attempt) {
                    running = None;
                }
                incoming.retire(attempt);
            }
        }
    }
}

/// What every deployment of one attachment shares.
#[derive(Clone)]
struct Session {
    engine: Arc<Engine>,
    secret: Secret,
    incoming: Arc<Incoming>,
    /// The control stream up to the job manager.
    up: mpsc::UnboundedSender<FromWorker>,
    metrics: Arc<crate::metrics::JobMetrics>,
}

/// Attaches to the job manager, retrying while it is not up yet; returns the controls coming
/// down and the sender of what goes up (its first message, `Hello`, already sent).
async fn attach(opts: &WorkerOptions, data_address: &str) -> Result<(tonic::Streaming<ToWorker>, mpsc::UnboundedSender<FromWorker>)> {
    let deadline = opts.once.then(|| tokio::time::Instant::now() + ATTACH_WAIT);
    let channel = grpc::channel(&opts.job_manager)?;
    let mut tries = 0u64;
    loop {
        let (up, up_rx) = mpsc::unbounded_channel();
        up.send(FromWorker::Hello { data_address: data_address.to_string(), pid: std::process::id() })?;
        match grpc::attach(channel.clone(), &opts.secret, UnboundedReceiverStream::new(up_rx)).await {
            Ok(down) => return Ok((down, up)),
            Err(status) if status.code() == tonic::Code::Unavailable && deadline.is_none_or(|d| tokio::time::Instant::now() < d) => {
                tries += 1;
                if tries.is_multiple_of(50) {
                    tracing::info!("no job manager at {} yet: {}", opts.job_manager, status.message());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                return Err(Refused(format!("the job manager at {} refused this worker: {}", opts.job_manager, status.message())).into());
            }
            Err(status) => bail!("cannot attach to the job manager at {}: {}", opts.job_manager, status.message()),
        }
    }
}

/// Starts the slice of `d` this worker runs.
fn deploy(session: Session, d: Deployment) -> Result<Running> {
    let job = JobSpec::parse(&d.job_text, Path::new(&d.job_path)).with_context(|| format!("the job manager sent job {}", d.job_path))?;
    let storage = crate::checkpoint::open(&job.checkpoint_location()?, &job.object_store)?;
    let writer = Arc::new(AnnouncedWriter::new(storage.clone()));
    let (controls, control_rx) = mpsc::unbounded_channel();
    let attempt = d.attempt;
    let task = tokio::spawn(run_slice(session, job, d, storage, writer.clone(), control_rx));
    Ok(Running { attempt, controls, writer, task })
}

/// How often a worker reports its subtasks' counts.
const METRICS_EVERY: Duration = Duration::from_secs(1);

async fn run_slice(
    session: Session,
    job: JobSpec,
    d: Deployment,
    storage: Arc<dyn crate::checkpoint::CheckpointStorage>,
    writer: Arc<AnnouncedWriter>,
    mut controls: mpsc::UnboundedReceiver<(SubtaskTag, Control)>,
) {
    let (attempt, up) = (d.attempt, session.up.clone());
    let plane = match DataPlane::new(attempt, session.secret.clone(), &d.data_addresses, session.incoming.clone()) {
        Ok(p) => p,
        Err(e) => {
            let _ = up.send(FromWorker::DeployFailed { attempt, message: format!("{e:#}") });
            return;
        }
    };
    let slice = Slice { worker: d.worker, placement: Placement { workers: d.data_addresses.len() as u32 }, network: &plane };
    let started = async {
        let modules = load_operators(&session.engine, &job, &Default::default())?;
        let restore = match &d.restore {
            Some(location) => Some(load_location(&location.parse()?, &job.object_store)?),
            None => None,
        };
        let opts = RunOptions {
            allow_non_restored_state: d.allow_non_restored_state,
            metrics: Some(session.metrics.clone()),
            status: Some(crate::status::JobStatus::new(&job)),
            ..Default::default()
        };
        Attempt::deploy(&session.engine, &job, &modules, storage, writer.clone(), restore.as_ref(), attempt, &opts, Some(&slice)).await
    };
    let mut a = match started.await {
        Ok(a) => a,
        Err(e) => {
            let _ = up.send(FromWorker::DeployFailed { attempt, message: format!("{e:#}") });
            return;
        }
    };
    let _ = up.send(FromWorker::Deployed { attempt });
    // The series of this slice's subtasks (the handles the subtasks record into).
    let local: Vec<(SubtaskTag, Arc<crate::metrics::SubtaskMetrics>)> = job
        .operators
        .iter()
        .flat_map(|op| (0..op.parallelism as usize).filter(|&i| slice.runs(i)).map(move |i| (op.id.clone(), i as u32)))
        .map(|(operator, subtask)| (SubtaskTag { operator: operator.clone(), subtask }, session.metrics.subtask(&operator, subtask)))
        .collect();
    let report = || FromWorker::Metrics {
        attempt,
        subtasks: local.iter().map(|(tag, m)| (tag.clone(), m.sample())).collect(),
        channels: session.metrics.channel_fills(),
    };
    let mut tick = tokio::time::interval(METRICS_EVERY);
    let mut ended = futures::future::join_all(a.tasks.iter_mut());
    loop {
        tokio::select! {
            control = controls.recv() => match control {
                Some((tag, control)) => {
                    if let Control::Aborted(id) = control {
                        let writer = writer.clone();
                        tokio::task::spawn_blocking(move || writer.abort(id));
                    }
                    if let Some((_, tx)) = a.controls.iter().find(|(t, _)| *t == tag) {
                        tx.send(&tag, control);
                    }
                }
                None => return,
            },
            Some(event) = a.events.recv() => {
                let _ = up.send(FromWorker::Event { attempt, event });
            }
            _ = tick.tick() => {
                let _ = up.send(report());
            }
            _ = &mut ended => break,
        }
    }
    drop(ended);
    while let Ok(event) = a.events.try_recv() {
        let _ = up.send(FromWorker::Event { attempt, event });
    }
    let _ = up.send(report());
    let _ = up.send(FromWorker::Stopped { attempt });
    // Keep the data plane until the attempt is cancelled: its forwarders flush what the
    // subtasks sent last.
    drop(a);
    let _plane = plane;
    std::future::pending::<()>().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::protocol::ChannelId;
    use crate::runtime::message::Message;

    /// The data plane only takes streams that carry the cluster secret, and feeds an accepted
    /// stream into the registered channel in order.
    #[tokio::test]
    async fn the_data_plane_takes_only_streams_with_the_secret() {
        let secret = Secret::new("0123456789abcdef0123".into()).unwrap();
        let incoming = Arc::new(Incoming::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(grpc::serve(listener, Arc::new(WorkerService { secret: secret.clone(), incoming: incoming.clone() })));
        let channel = ChannelId { edge: 1, from: 0, to: 2 };
        let (into, mut received) = crate::runtime::channel::channel(16, 1 << 20);
        incoming.register(7, channel, into);
        let frames = || {
            futures::stream::iter([DataFrame::Open { attempt: 7, channel }, DataFrame::Message(Message::Watermark(5)), DataFrame::Message(Message::EndOfInput)])
        };

        let wrong = Secret::new("not-the-secret-at-all".into()).unwrap();
        let refused = grpc::exchange(grpc::channel(&address).unwrap(), &wrong, frames()).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let unsigned = grpc::exchange_unsigned(grpc::channel(&address).unwrap(), frames()).await.unwrap_err();
        assert_eq!(unsigned.code(), tonic::Code::Unauthenticated);

        grpc::exchange(grpc::channel(&address).unwrap(), &secret, frames()).await.unwrap();
        assert!(matches!(received.recv().await, Some(Message::Watermark(5))));
        assert!(matches!(received.recv().await, Some(Message::EndOfInput)));
        assert!(received.recv().await.is_none(), "the stream ended, and with it the channel");

        // A stream for an attempt that is over is refused as cancelled (not a failure).
        incoming.retire(7);
        let late = grpc::exchange(grpc::channel(&address).unwrap(), &secret, frames()).await.unwrap_err();
        assert_eq!(late.code(), tonic::Code::Cancelled);
        server.abort();
    }
}
