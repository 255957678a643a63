//! The job manager's side of distributed execution: the workers it waits for (and starts, when
//! it runs them as local processes), and each attempt deployed across them.
//!
//! An attempt on workers looks to the checkpoint coordinator exactly like one in process
//! ([`Attempt`]): controls go down the workers' control streams, their events come up merged,
//! and a worker whose control stream closes (the process died) is a failed subtask, so the
//! restart strategy restores the whole job from the last complete checkpoint — on the
//! surviving workers and a replacement.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::sync::{Mutex, mpsc};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::UnboundedReceiverStream;
use wasmflow_types::SubtaskTag;

use super::auth::{SECRET_ENV, Secret};
use super::grpc::{self, Handler, ToWorkerStream};
use super::placement::Placement;
use super::protocol::{DataFrame, Deployment, FromWorker, ToWorker};
use crate::checkpoint::{CheckpointStorage, LoadedCheckpoint};
use crate::job::JobSpec;
use crate::metrics::{JobMetrics, SubtaskSample};
use crate::runtime::RunOptions;
use crate::runtime::attempt::{Attempt, ControlSender};
use crate::runtime::subtask::Event;

/// How long the job manager waits for its workers to attach (and re-attach after a loss).
const ATTACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to instantiate and restore its slice.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(300);

/// How a job manager gets its workers.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// How many workers run the job.
    pub workers: u32,
    /// Where workers attach (`host:port`; port 0 picks a free one).
    pub listen: SocketAddr,
    /// Start the workers as child processes of this executable (`wasmflow worker`); otherwise
    /// wait for workers started elsewhere (Kubernetes) to attach.
    pub spawn: Option<PathBuf>,
    pub secret: Secret,
    /// Environment for the workers it starts, beside the secret (e.g. the log format, so a JSON
    /// log stays JSON).
    pub worker_env: Vec<(String, String)>,
}

/// One attached worker.
struct Worker {
    pid: u32,
    data_address: String,
    to: mpsc::UnboundedSender<ToWorker>,
    /// Its messages; closed when its control stream is (the worker is gone).
    from: Arc<Mutex<mpsc::UnboundedReceiver<FromWorker>>>,
    /// The last counts it reported per subtask (its counts go on across attempts).
    reported: Arc<std::sync::Mutex<HashMap<SubtaskTag, SubtaskSample>>>,
}

/// The job manager's side of the `wasmflow.Cluster` service: workers attach here.
struct ManagerService {
    secret: Secret,
    attached: mpsc::UnboundedSender<Worker>,
}

#[async_trait::async_trait]
impl Handler for ManagerService {
    async fn attach(&self, request: tonic::Request<tonic::Streaming<FromWorker>>) -> Result<tonic::Response<ToWorkerStream>, tonic::Status> {
        self.secret.check(request.metadata())?;
        let mut incoming = request.into_inner();
        let Some(FromWorker::Hello { data_address, pid }) = incoming.message().await? else {
            return Err(tonic::Status::invalid_argument("a worker's first message must be Hello"));
        };
        let (to, down) = mpsc::unbounded_channel();
        let (up, from) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                match incoming.message().await {
                    Ok(Some(message)) => {
                        if up.send(message).is_err() {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        // The job manager learns of the loss from the closed receiver.
                        tracing::debug!("worker {pid}'s control stream broke: {}", status.message());
                        return;
                    }
                }
            }
        });
        tracing::info!("worker {pid} attached (data plane at {data_address})");
        self.attached
            .send(Worker { pid, data_address, to, from: Arc::new(Mutex::new(from)), reported: Default::default() })
            .map_err(|_| tonic::Status::unavailable("the job manager is shutting down"))?;
        Ok(tonic::Response::new(Box::pin(UnboundedReceiverStream::new(down).map(Ok))))
    }

    async fn exchange(&self, _: tonic::Request<tonic::Streaming<DataFrame>>) -> Result<tonic::Response<()>, tonic::Status> {
        Err(tonic::Status::unimplemented("this is a job manager: data streams go to workers"))
    }
}

/// The workers of a job manager.
pub struct WorkerPool {
    options: ClusterOptions,
    /// Where workers attach.
    pub address: SocketAddr,
    /// The job as every worker runs it: its file's path and effective text.
    job_path: String,
    job_text: String,
    slots: Vec<Option<Worker>>,
    attached: mpsc::UnboundedReceiver<Worker>,
    children: Vec<tokio::process::Child>,
    server: tokio::task::JoinHandle<Result<()>>,
}

impl Drop for WorkerPool {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl WorkerPool {
    /// Listens for workers of the job at `job_path` (whose effective text is `job_text`) and,
    /// with [`ClusterOptions::spawn`], starts them.
    pub async fn start(options: ClusterOptions, job_path: String, job_text: String) -> Result<WorkerPool> {
        if options.workers == 0 {
            bail!("--workers must be at least 1");
        }
        let listener = tokio::net::TcpListener::bind(options.listen).await.with_context(|| format!("cannot listen on {} for workers", options.listen))?;
        let address = listener.local_addr()?;
        let (attached_tx, attached) = mpsc::unbounded_channel();
        let service = Arc::new(ManagerService { secret: options.secret.clone(), attached: attached_tx });
        let server = tokio::spawn(grpc::serve(listener, service));
        let slots = (0..options.workers).map(|_| None).collect();
        let mut pool = WorkerPool { options, address, job_path, job_text, slots, attached, children: Vec::new(), server };
        pool.spawn_missing()?;
        Ok(pool)
    }

    /// The address workers reach this job manager at.
    fn reachable_address(&self) -> String {
        if self.address.ip().is_unspecified() { format!("127.0.0.1:{}", self.address.port()) } else { self.address.to_string() }
    }

    /// Local workers: starts one per empty slot that no live child will fill.
    fn spawn_missing(&mut self) -> Result<()> {
        let Some(exe) = self.options.spawn.clone() else { return Ok(()) };
        self.children.retain_mut(|c| matches!(c.try_wait(), Ok(None)));
        let attached: BTreeSet<u32> = self.slots.iter().flatten().map(|w| w.pid).collect();
        let pending = self.children.iter().filter(|c| c.id().is_some_and(|pid| !attached.contains(&pid))).count();
        let empty = self.slots.iter().filter(|s| s.is_none()).count();
        for _ in pending..empty {
            let child = tokio::process::Command::new(&exe)
                .args(["worker", "--once", "--job-manager"])
                .arg(self.reachable_address())
                .env(SECRET_ENV, self.options.secret.as_str())
                .envs(self.options.worker_env.iter().map(|(k, v)| (k, v)))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("cannot start a worker process ({} worker)", exe.display()))?;
            tracing::info!("started worker process {}", child.id().unwrap_or_default());
            self.children.push(child);
        }
        Ok(())
    }

    /// Empties the slots of workers that are gone, then fills every slot.
    async fn ready(&mut self) -> Result<()> {
        let mut gone = BTreeSet::new();
        for (k, slot) in self.slots.iter_mut().enumerate() {
            let Some(w) = slot else { continue };
            let mut from = w.from.lock().await;
            // Leftovers of an earlier attempt are stale; a closed stream is a lost worker.
            loop {
                match from.try_recv() {
                    Ok(_) => continue,
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        tracing::warn!("worker {k} (process {}) is gone; waiting for a replacement", w.pid);
                        gone.insert(w.pid);
                        drop(from);
                        *slot = None;
                        break;
                    }
                }
            }
        }
        // A local worker whose control stream closed is of no use even if its process lives on.
        self.children.retain(|c| c.id().is_none_or(|pid| !gone.contains(&pid)));
        self.spawn_missing()?;
        let deadline = tokio::time::Instant::now() + ATTACH_TIMEOUT;
        while let Some(empty) = self.slots.iter().position(Option::is_none) {
            if tokio::time::Instant::now() >= deadline {
                let have = self.slots.iter().flatten().count();
                bail!(
                    "only {have} of {} workers attached to {} within {} s (start them with `wasmflow worker --job-manager {}` and the same {SECRET_ENV})",
                    self.slots.len(),
                    self.address,
                    ATTACH_TIMEOUT.as_secs(),
                    self.reachable_address()
                );
            }
            match tokio::time::timeout(Duration::from_millis(250), self.attached.recv()).await {
                Ok(Some(w)) => self.slots[empty] = Some(w),
                Ok(None) => bail!("the cluster service stopped"),
                // A worker this job manager started that exits before attaching will not attach:
                // say so now rather than at the deadline (its own log is above).
                Err(_) => {
                    for child in &mut self.children {
                        if let Ok(Some(status)) = child.try_wait() {
                            bail!("a worker process exited ({status}) before attaching to the job manager");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Deploys attempt `attempt` across the workers; the returned attempt is coordinated like
    /// one in process.
    pub(crate) async fn deploy<'a>(
        &mut self,
        job: &'a JobSpec,
        storage: Arc<dyn CheckpointStorage>,
        restore: Option<&LoadedCheckpoint>,
        attempt: u64,
        opts: &RunOptions,
    ) -> Result<Attempt<'a>> {
        self.ready().await?;
        let workers: Vec<&Worker> = self.slots.iter().map(|s| s.as_ref().expect("ready fills every slot")).collect();
        let data_addresses: Vec<String> = workers.iter().map(|w| w.data_address.clone()).collect();
        for (k, w) in workers.iter().enumerate() {
            let deployment = Deployment {
                attempt,
                job_path: self.job_path.clone(),
                job_text: self.job_text.clone(),
                restore: restore.map(|c| c.location.clone()),
                allow_non_restored_state: opts.allow_non_restored_state,
                worker: k as u32,
                data_addresses: data_addresses.clone(),
            };
            w.to.send(ToWorker::Deploy(Box::new(deployment))).map_err(|_| anyhow!("worker {k} (process {}) is gone", w.pid))?;
        }
        // Events of subtasks that started before every worker deployed are kept for the attempt.
        let (events_tx, events) = mpsc::unbounded_channel();
        for (k, w) in workers.iter().enumerate() {
            deployed(k, w, attempt, &events_tx).await?;
        }
        let (controls, sources) = remote_controls(job, &workers, attempt);
        let metrics = opts.metrics.clone().expect("run_job always passes metrics");
        let tasks = workers.iter().enumerate().map(|(k, w)| relay(k, w, attempt, job, events_tx.clone(), metrics.clone())).collect();
        let announce_to: Vec<mpsc::UnboundedSender<ToWorker>> = workers.iter().map(|w| w.to.clone()).collect();
        Ok(Attempt {
            job,
            number: attempt,
            storage,
            controls,
            events,
            tasks,
            sources,
            total: job.operators.iter().map(|op| op.parallelism as usize).sum(),
            metrics,
            status: opts.status.clone().expect("run_job always passes a status"),
            announce: Some(Box::new(move |id, savepoint| {
                for to in &announce_to {
                    let _ = to.send(ToWorker::Announce { id, savepoint: savepoint.map(ToString::to_string) });
                }
            })),
        })
    }

    /// Attempt `attempt` is over: every worker tears down what is left of it.
    pub(crate) fn cancel(&self, attempt: u64) {
        for w in self.slots.iter().flatten() {
            let _ = w.to.send(ToWorker::Cancel { attempt });
        }
    }

    /// Ends the run: closes the control streams (the workers exit) and waits for local
    /// workers to exit.
    pub async fn shutdown(mut self) {
        let workers: Vec<Worker> = self.slots.drain(..).flatten().collect();
        for w in workers {
            // Closing the control stream ends the worker; wait until it closed its side, so it
            // read the end of the stream rather than a dropped connection.
            let Worker { to, from, .. } = w;
            drop(to);
            let mut from = from.lock().await;
            let _ = tokio::time::timeout(Duration::from_secs(5), async { while from.recv().await.is_some() {} }).await;
        }
        for mut child in std::mem::take(&mut self.children) {
            if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                let _ = child.kill().await;
            }
        }
    }
}

/// Waits until worker `k` has deployed its slice of `attempt`, keeping the events its
/// subtasks send meanwhile.
async fn deployed(k: usize, w: &Worker, attempt: u64, events: &mpsc::UnboundedSender<Event>) -> Result<()> {
    let mut from = w.from.lock().await;
    loop {
        match tokio::time::timeout(DEPLOY_TIMEOUT, from.recv()).await {
            Ok(Some(FromWorker::Deployed { attempt: a })) if a == attempt => return Ok(()),
            Ok(Some(FromWorker::DeployFailed { attempt: a, message })) if a == attempt => bail!("worker {k} (process {}): {message}", w.pid),
            Ok(Some(FromWorker::Event { attempt: a, event })) if a == attempt => {
                let _ = events.send(event);
            }
            Ok(Some(_)) => {}
            Ok(None) => bail!("worker {k} (process {}) was lost while deploying attempt {attempt}", w.pid),
            Err(_) => bail!("worker {k} (process {}) did not deploy attempt {attempt} within {} s", w.pid, DEPLOY_TIMEOUT.as_secs()),
        }
    }
}

/// Each chain's controls, by its head's tag, going down the control stream of the worker that
/// runs it; and the heads of source chains (where checkpoints are triggered).
fn remote_controls(job: &JobSpec, workers: &[&Worker], attempt: u64) -> (Vec<(SubtaskTag, ControlSender)>, BTreeSet<SubtaskTag>) {
    let placement = Placement { workers: workers.len() as u32 };
    let (mut controls, mut sources) = (Vec::new(), BTreeSet::new());
    for chain in job.chains() {
        let head = job.operator(chain.head()).expect("chains name operators");
        for index in 0..head.parallelism as usize {
            let tag = SubtaskTag { operator: head.id.clone(), subtask: index as u32 };
            if !job.edges.iter().any(|e| e.to == head.id) {
                sources.insert(tag.clone());
            }
            let worker = workers[placement.worker_of(index) as usize].to.clone();
            controls.push((tag, ControlSender::Remote { attempt, worker }));
        }
    }
    (controls, sources)
}

/// Relays worker `k`'s events and counts for `attempt` until it reports its slice stopped; a
/// lost control stream is reported as the failure of a subtask it ran.
fn relay(k: usize, w: &Worker, attempt: u64, job: &JobSpec, events: mpsc::UnboundedSender<Event>, metrics: Arc<JobMetrics>) -> tokio::task::JoinHandle<()> {
    let first = job.operators.iter().find(|op| op.parallelism as usize > k).map(|op| SubtaskTag { operator: op.id.clone(), subtask: k as u32 });
    let (from, reported, pid) = (w.from.clone(), w.reported.clone(), w.pid);
    tokio::spawn(async move {
        let mut from = from.lock().await;
        loop {
            match from.recv().await {
                Some(FromWorker::Event { attempt: a, event }) if a == attempt => {
                    let _ = events.send(event);
                }
                Some(FromWorker::Metrics { attempt: a, subtasks, channels }) if a == attempt => {
                    let mut reported = reported.lock().expect("reported lock");
                    for (tag, now) in subtasks {
                        let before = reported.get(&tag).cloned().unwrap_or_default();
                        metrics.subtask(&tag.operator, tag.subtask).add_since(&before, &now);
                        reported.insert(tag, now);
                    }
                    metrics.worker_channel_fills(k, channels);
                }
                Some(FromWorker::Stopped { attempt: a }) if a == attempt => {
                    metrics.worker_channel_fills(k, Vec::new());
                    return;
                }
                Some(_) => {}
                None => {
                    metrics.worker_channel_fills(k, Vec::new());
                    if let Some(tag) = first {
                        let _ = events.send(Event::Failed(tag, format!("worker {k} (process {pid}) was lost: its control stream closed")));
                    }
                    return;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker process that dies before attaching (a broken binary, a bad environment) fails
    /// the attempt at once, naming the exit, instead of leaving the job manager waiting a minute.
    #[tokio::test]
    async fn a_worker_that_exits_before_attaching_is_reported_at_once() {
        let options = ClusterOptions {
            workers: 2,
            listen: "127.0.0.1:0".parse().unwrap(),
            spawn: Some("false".into()),
            secret: Secret::generate().unwrap(),
            worker_env: Vec::new(),
        };
        let mut pool = WorkerPool::start(options, "job.toml".into(), String::new()).await.unwrap();
        let started = std::time::Instant::now();
        let e = format!("{:#}", pool.ready().await.unwrap_err());
        assert!(e.contains("a worker process exited (exit status: 1) before attaching"), "{e}");
        assert!(started.elapsed() < ATTACH_TIMEOUT / 2);
    }
}
