//! One deployment of a job (the first, or one after a restart): channels wired per edge, every
//! subtask instantiated, restored and started on tokio.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Result, bail};
use tokio::sync::mpsc;
use wasmflow_types::{OperatorKind, SubtaskTag, TaskInfo};

use super::channel::{EdgeOutput, InputGate};
use super::job::RunOptions;
use super::limits::subtask_limits;
use super::operator::OperatorCode;
use super::restore::{self, Assignment};
use super::subtask::{self, ChainMember, Control, Event, Progress, SubtaskLoop};
use crate::checkpoint::{CheckpointStorage, LoadedCheckpoint, OperatorMetadata, SnapshotWriter};
use crate::cluster::{ChannelId, Slice, ToWorker};
use crate::engine::Engine;
use crate::engine::host::{FilesDir, StoreData, SubtaskLimits};
use crate::job::{JobSpec, OperatorSpec, Partitioning};
use crate::metrics::labels::EdgeLabels;
use crate::metrics::{ChainTime, EdgeProbe, JobMetrics};
use crate::status::JobStatus;

/// What every subtask of one operator shares in a deployment.
struct OperatorSetup<'a> {
    op: &'a OperatorSpec,
    limits: SubtaskLimits,
    call_timeout: Duration,
    has_inputs: bool,
    /// The operator's `config` table as JSON.
    config: String,
    /// The checkpoint id and the operator's metadata, if the checkpoint restored from knows the
    /// operator (even with empty state): an operator added since starts fresh, and a Kafka source
    /// applies its startup mode.
    restored: Option<(u64, &'a OperatorMetadata)>,
    /// For a keyed operator: (max-parallelism, parallelism), to give each subtask its key groups.
    keyed: Option<(u32, u32)>,
}

impl<'a> OperatorSetup<'a> {
    fn new(job: &JobSpec, op: &'a OperatorSpec, restore: Option<&'a LoadedCheckpoint>) -> Result<Self> {
        let (limits, call_timeout) = subtask_limits(&op.limits.or(&job.limits), op.grants.kafka.as_ref());
        Ok(OperatorSetup {
            op,
            limits,
            call_timeout,
            has_inputs: job.edges.iter().any(|e| e.to == op.id),
            config: serde_json::to_string(&op.config.clone().unwrap_or_default())?,
            restored: restore.and_then(|c| c.metadata.operators.get(&op.id).map(|m| (c.metadata.checkpoint_id, m))),
            keyed: job.is_keyed(&op.id).then_some((job.job.max_parallelism(), op.parallelism)),
        })
    }
}

pub(crate) enum AttemptEnd {
    Finished,
    Stopped,
}

/// Where a subtask's controls go: its task in this process, or the worker that runs it.
pub(crate) enum ControlSender {
    Local(mpsc::UnboundedSender<Control>),
    /// Down the control stream of the worker that runs the subtask (distributed execution).
    Remote {
        attempt: u64,
        worker: mpsc::UnboundedSender<ToWorker>,
    },
}

impl ControlSender {
    /// Sends `control` to the chain whose head is `tag`; a subtask or worker that is gone
    /// (the attempt is ending) is not an error.
    pub(crate) fn send(&self, tag: &SubtaskTag, control: Control) {
        match self {
            ControlSender::Local(tx) => {
                let _ = tx.send(control);
            }
            ControlSender::Remote { attempt, worker } => {
                let _ = worker.send(ToWorker::Control { attempt: *attempt, tag: tag.clone(), control });
            }
        }
    }
}

/// Tells every worker about a checkpoint before its barriers are injected (its id, and a
/// savepoint's location), so their subtasks write their files to the right place.
pub(crate) type Announce = Box<dyn Fn(u64, Option<&crate::checkpoint::Location>) + Send + Sync>;

/// One deployment of the job (the first, or one after a restart): the subtasks of this process,
/// or (distributed) of its workers as the job manager sees them.
pub(crate) struct Attempt<'a> {
    pub(crate) job: &'a JobSpec,
    /// This deployment's attempt number (recorded in every checkpoint it completes).
    pub(crate) number: u64,
    pub(crate) storage: Arc<dyn CheckpointStorage>,
    /// Each chain's controls, by the tag of its head.
    pub(crate) controls: Vec<(SubtaskTag, ControlSender)>,
    pub(crate) events: mpsc::UnboundedReceiver<Event>,
    /// What the attempt waits for when it ends: its subtasks (or its workers' reports that
    /// theirs have ended).
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Heads of source chains: where checkpoints are triggered.
    pub(crate) sources: BTreeSet<SubtaskTag>,
    /// Operator subtasks (members of chains) in the whole job: how many acks complete a checkpoint.
    pub(crate) total: usize,
    /// The run's metrics (they outlive the attempt).
    pub(crate) metrics: Arc<JobMetrics>,
    /// Where checkpoints and failures are recorded for the HTTP API.
    pub(crate) status: Arc<JobStatus>,
    /// Distributed execution: announces checkpoints to the workers.
    pub(crate) announce: Option<Announce>,
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl<'a> Attempt<'a> {
    /// Deploys the job's subtasks in this process — all of them, or a worker's `slice`, whose
    /// channels to subtasks on other workers go over its network.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn deploy(
        engine: &Engine,
        job: &'a JobSpec,
        modules: &BTreeMap<String, OperatorCode>,
        storage: Arc<dyn CheckpointStorage>,
        writer: Arc<dyn SnapshotWriter>,
        restore: Option<&LoadedCheckpoint>,
        attempt: u64,
        opts: &RunOptions,
        slice: Option<&Slice<'_>>,
    ) -> Result<Attempt<'a>> {
        let mut assignment: Option<Assignment> = restore.map(|c| restore::assign(job, c, opts.allow_non_restored_state)).transpose()?;
        let capacity = job.job.channel_capacity();
        let batch_size = job.job.batch_size();

        // Channels: one per (edge, upstream subtask, downstream subtask) that can talk, except
        // on chained edges, where batches go from one operator to the next inside one task.
        let budget = job.job.channel_bytes();
        let mut inputs: HashMap<(String, usize), Vec<super::channel::ChannelReceiver>> = HashMap::new();
        let mut outputs: HashMap<(String, usize), Vec<EdgeOutput>> = HashMap::new();
        let mut probes = Vec::new();
        let (event_tx, events) = mpsc::unbounded_channel();
        let runs = |index: usize| slice.is_none_or(|s| s.runs(index));
        for (e, edge) in job.edges.iter().enumerate().filter(|(i, _)| !job.is_chained(*i)) {
            let (pa, pb) = (job.operator(&edge.from).unwrap().parallelism as usize, job.operator(&edge.to).unwrap().parallelism as usize);
            for i in 0..pa {
                let targets: Vec<usize> = if edge.partitioning == Partitioning::Forward { vec![i] } else { (0..pb).collect() };
                let mut senders = Vec::new();
                for j in targets {
                    let (sends, receives) = (runs(i), runs(j));
                    if !sends && !receives {
                        continue;
                    }
                    // A channel with one end on another worker is a local channel bridged to
                    // the network at that end (only a worker's slice leaves subtasks out).
                    let (tx, rx) = super::channel::channel(capacity, budget);
                    let remote = || slice.expect("without a slice every subtask runs here");
                    let channel = ChannelId { edge: e, from: i as u32, to: j as u32 };
                    if sends {
                        senders.push(tx);
                    } else {
                        remote().network.receive(channel, tx);
                    }
                    if receives {
                        inputs.entry((edge.to.clone(), j)).or_default().push(rx);
                    } else {
                        let (s, from) = (remote(), SubtaskTag { operator: edge.from.clone(), subtask: i as u32 });
                        s.network.send(channel, s.placement.worker_of(j), rx, from, event_tx.clone());
                    }
                }
                if !runs(i) {
                    continue;
                }
                let index = if edge.partitioning == Partitioning::Forward { 0 } else { i };
                let output = EdgeOutput::new(edge.partitioning, senders, index, job.job.max_parallelism());
                let labels = EdgeLabels { operator: edge.from.clone(), subtask: i as u32, target: edge.to.clone() };
                probes.push(EdgeProbe { labels, channels: output.probes() });
                outputs.entry((edge.from.clone(), i)).or_default().push(output);
            }
        }

        let mut a = Attempt {
            job,
            number: attempt,
            storage: storage.clone(),
            controls: Vec::new(),
            events,
            tasks: Vec::new(),
            sources: BTreeSet::new(),
            total: 0,
            metrics: opts.metrics.clone().expect("run_job always passes metrics"),
            status: opts.status.clone().expect("run_job always passes a status"),
            announce: None,
        };
        a.metrics.channels(probes);
        // What every subtask of an operator shares, worked out once per operator.
        let mut setups = BTreeMap::new();
        for op in &job.operators {
            setups.insert(op.id.as_str(), OperatorSetup::new(job, op, restore)?);
        }
        for chain in job.chains() {
            let parallelism = setups[chain.head()].op.parallelism as usize;
            for index in (0..parallelism).filter(|&i| runs(i)) {
                let mut members = Vec::with_capacity(chain.operators.len());
                for id in &chain.operators {
                    members.push(a.start_member(engine, &modules[id], &setups[id.as_str()], index, assignment.as_mut()).await?);
                }
                let (ctl_tx, ctl_rx) = mpsc::unbounded_channel();
                let head = &members[0];
                if head.instance.kind() == OperatorKind::Source {
                    a.sources.insert(head.tag.clone());
                }
                a.controls.push((head.tag.clone(), ControlSender::Local(ctl_tx)));
                a.total += members.len();
                let time = ChainTime::new(members.iter().map(|m| m.metrics.clone()).collect());
                let task = SubtaskLoop {
                    chain: members,
                    control: ctl_rx,
                    events: event_tx.clone(),
                    outputs: outputs.remove(&(chain.tail().to_string(), index)).unwrap_or_default(),
                    input: inputs.remove(&(chain.head().to_string(), index)).map(InputGate::new),
                    storage: writer.clone(),
                    batch_size,
                    event_time: Default::default(),
                    time,
                };
                a.tasks.push(tokio::spawn(subtask::run(task)));
            }
        }
        Ok(a)
    }

    /// With the disk backend, where subtask `index` of `operator` keeps its keyed state in this
    /// attempt: below `[state] dir`, or the system's temporary directory.
    fn state_store_dir(&self, operator: &str, index: usize) -> Option<std::path::PathBuf> {
        if self.job.state.backend != crate::job::StateBackendKind::Disk {
            return None;
        }
        let base = match &self.job.state.dir {
            Some(dir) => self.job.resolve(dir),
            None => std::env::temp_dir().join(format!("wasmflow-state-{}", std::process::id())),
        };
        Some(base.join(format!("attempt-{}-{operator}-{index}", self.number)))
    }

    /// Subtask `index` of an operator: instantiated, restored, created, initialized and opened.
    async fn start_member(
        &self,
        engine: &Engine,
        module: &OperatorCode,
        setup: &OperatorSetup<'_>,
        index: usize,
        assignment: Option<&mut Assignment>,
    ) -> Result<ChainMember> {
        let op = setup.op;
        let tag = SubtaskTag { operator: op.id.clone(), subtask: index as u32 };
        let files = match &op.grants.files {
            Some(dir) => Some(FilesDir::open(self.job.resolve(dir))?),
            None => None,
        };
        let incremental = self.job.incremental_checkpoints();
        let store_dir = self.state_store_dir(&op.id, index);
        let store = restore::state_for(assignment, &op.id, index, setup.limits.state.clone(), setup.keyed, incremental, store_dir.as_deref())?;
        let metrics = self.metrics.subtask(&op.id, index as u32);
        let data = StoreData::new(tag.clone(), store, &setup.limits, files).with_metrics(metrics.clone());
        let mut instance = module.instantiate(engine, data, setup.call_timeout).await?;
        match (instance.kind(), setup.has_inputs) {
            (OperatorKind::Source, true) => bail!("operator '{}' is a source but an edge leads into it", op.id),
            (OperatorKind::Transform | OperatorKind::Sink, false) => {
                bail!("operator '{}' needs input but no edge leads into it; add an [[edges]] entry", op.id)
            }
            _ => {}
        }
        let info = TaskInfo {
            operator_id: op.id.clone(),
            subtask_index: index as u32,
            parallelism: op.parallelism,
            checkpointing_enabled: self.job.checkpoints.is_some(),
            attempt: self.number,
        };
        instance.create(info, setup.config.clone()).await?;
        instance.initialize_state(setup.restored.map(|(id, _)| id)).await?;
        instance.open().await?;
        let finished_on_restore = setup.restored.is_some_and(|(_, m)| m.finished_on_restore(index as u32, op.parallelism));
        Ok(ChainMember { tag, instance, metrics, progress: Progress::at_start(finished_on_restore, setup.has_inputs), keyed_files: Default::default() })
    }

    pub(super) fn send_all(&self, c: Control) {
        for (tag, tx) in &self.controls {
            tx.send(tag, c.clone());
        }
    }
}
