//! Channels between subtasks: partitioning on the sending side, barrier alignment on the
//! receiving side.

use std::future::poll_fn;
use std::task::Poll;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::mpsc::{self, Receiver, Sender, WeakSender};
use tokio::sync::{Semaphore, TryAcquireError};

use wasmflow_types::Batch;

use super::message::{Barrier, Message, WatermarkStatus};
use crate::job::Partitioning;

/// One channel between two subtasks, bounded twice: in messages (`capacity`) and in bytes of
/// record data (`budget`), so memory the host holds for a guest's output does not depend on how
/// large the guest makes its batches. A batch larger than the whole budget still passes, alone.
pub fn channel(capacity: usize, budget: usize) -> (ChannelSender, ChannelReceiver) {
    let (tx, rx) = mpsc::channel(capacity);
    let bytes = Arc::new(Semaphore::new(budget));
    (ChannelSender { tx, bytes: bytes.clone(), budget }, ChannelReceiver { rx, bytes, budget })
}

/// The sending half of a [`channel`].
pub struct ChannelSender {
    tx: Sender<Message>,
    bytes: Arc<Semaphore>,
    budget: usize,
}

/// The receiving half of a [`channel`].
pub struct ChannelReceiver {
    rx: Receiver<Message>,
    bytes: Arc<Semaphore>,
    budget: usize,
}

/// Bytes of record data in a channel whose byte budget is `budget` and whose free bytes are
/// `bytes`'s permits.
fn bytes_in_flight(bytes: &Semaphore, budget: usize) -> usize {
    budget.saturating_sub(bytes.available_permits())
}

/// Bytes of the budget a message holds while it is in the channel.
fn cost(message: &Message, budget: usize) -> usize {
    match message {
        Message::Records(batch) => batch.size_bytes().min(budget),
        Message::Barrier(_) | Message::Watermark(_) | Message::Status(_) | Message::EndOfInput => 0,
    }
}

impl ChannelSender {
    /// Sends, waiting for room in messages and in bytes (back-pressure). Returns how long it
    /// waited (the subtask's back-pressured time); a send that finds room reads no clock.
    pub async fn send(&self, message: Message) -> Result<Duration, ChannelClosed> {
        let mut waited = Duration::ZERO;
        let n = cost(&message, self.budget);
        if n > 0 {
            let permit = match self.bytes.try_acquire_many(n as u32) {
                Ok(permit) => permit,
                Err(TryAcquireError::Closed) => return Err(ChannelClosed),
                Err(TryAcquireError::NoPermits) => {
                    let started = Instant::now();
                    let permit = self.bytes.acquire_many(n as u32).await.map_err(|_| ChannelClosed)?;
                    waited += started.elapsed();
                    permit
                }
            };
            // Given back by the receiver when it takes the message out.
            permit.forget();
        }
        match self.tx.try_send(message) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => return Err(ChannelClosed),
            Err(TrySendError::Full(message)) => {
                let started = Instant::now();
                self.tx.send(message).await.map_err(|_| ChannelClosed)?;
                waited += started.elapsed();
            }
        }
        Ok(waited)
    }

    /// A probe on how full the channel is, for the metrics (it does not keep the channel open).
    pub fn probe(&self) -> ChannelProbe {
        ChannelProbe { tx: self.tx.downgrade(), bytes: self.bytes.clone(), budget: self.budget }
    }

    /// Bytes of record data in the channel now.
    pub fn bytes_in_flight(&self) -> usize {
        bytes_in_flight(&self.bytes, self.budget)
    }
}

impl ChannelReceiver {
    /// The next message; `None` once the sender is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut std::task::Context<'_>) -> Poll<Option<Message>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(m)) = &polled {
            self.bytes.add_permits(cost(m, self.budget));
        }
        polled
    }
}

/// Reads how full a channel is without keeping it open (`wasmflow_output_channel_fill_ratio`).
#[derive(Debug)]
pub struct ChannelProbe {
    tx: WeakSender<Message>,
    bytes: Arc<Semaphore>,
    budget: usize,
}

impl ChannelProbe {
    /// The higher of the channel's two fills, messages over capacity and record bytes over the
    /// byte budget (either bound full blocks the sender); `None` once the channel is gone.
    pub fn fill(&self) -> Option<f64> {
        let tx = self.tx.upgrade()?;
        let messages = (tx.max_capacity() - tx.capacity()) as f64 / tx.max_capacity() as f64;
        let bytes = bytes_in_flight(&self.bytes, self.budget) as f64 / self.budget.max(1) as f64;
        Some(messages.max(bytes))
    }
}

/// The sending side of one edge, for one upstream subtask: one sender per downstream subtask.
pub struct EdgeOutput {
    partitioning: Partitioning,
    /// Key groups of the job (key-hash partitioning routes by key group).
    max_parallelism: u32,
    senders: Vec<ChannelSender>,
    /// This upstream subtask's index (forward partitioning) and round-robin cursor (rebalance).
    index: usize,
    next: usize,
}

/// Error: the downstream side is gone (the job is being torn down).
#[derive(Debug, thiserror::Error)]
#[error("downstream channel closed")]
pub struct ChannelClosed;

/// The downstream subtask of a key-hash edge for a record key: the owner of the key's key
/// group (`wasmflow_state::subtask_for_key`), so records meet their keyed state. Records without
/// a key go to subtask 0.
pub fn key_partition(key: Option<&[u8]>, max_parallelism: u32, parallelism: usize) -> usize {
    match key {
        Some(k) => wasmflow_state::subtask_for_key(k, max_parallelism, parallelism as u32) as usize,
        None => 0,
    }
}

impl EdgeOutput {
    pub fn new(partitioning: Partitioning, senders: Vec<ChannelSender>, index: usize, max_parallelism: u32) -> Self {
        EdgeOutput { partitioning, max_parallelism, next: index, senders, index }
    }

    /// Probes on this edge's channels (see [`ChannelProbe`]).
    pub fn probes(&self) -> Vec<ChannelProbe> {
        self.senders.iter().map(ChannelSender::probe).collect()
    }

    /// Sends a batch according to the partitioning; returns how long it waited for room.
    pub async fn send_batch(&mut self, batch: Batch) -> Result<Duration, ChannelClosed> {
        if batch.is_empty() {
            return Ok(Duration::ZERO);
        }
        match self.partitioning {
            Partitioning::Forward => self.send_to(self.index, Message::Records(batch)).await,
            Partitioning::Rebalance => {
                let target = self.next % self.senders.len();
                self.next = self.next.wrapping_add(1);
                self.send_to(target, Message::Records(batch)).await
            }
            // One consumer owns every key group: nothing to split.
            Partitioning::KeyHash if self.senders.len() == 1 => self.send_to(0, Message::Records(batch)).await,
            Partitioning::KeyHash => {
                let mut waited = Duration::ZERO;
                for (target, part) in split_by_key(&batch, self.max_parallelism, self.senders.len()).into_iter().enumerate() {
                    if !part.is_empty() {
                        waited += self.send_to(target, Message::Records(part)).await?;
                    }
                }
                Ok(waited)
            }
        }
    }

    /// Sends a barrier, watermark, status or end-of-input to every downstream subtask; returns
    /// how long it waited for room.
    pub async fn broadcast(&mut self, message: Message) -> Result<Duration, ChannelClosed> {
        let mut waited = Duration::ZERO;
        for i in 0..self.senders.len() {
            waited += self.send_to(i, message.clone()).await?;
        }
        Ok(waited)
    }

    async fn send_to(&mut self, target: usize, message: Message) -> Result<Duration, ChannelClosed> {
        self.senders[target].send(message).await
    }
}

/// Splits a batch into one batch per downstream subtask by key group, keeping record order.
pub fn split_by_key(batch: &Batch, max_parallelism: u32, parallelism: usize) -> Vec<Batch> {
    let mut parts: Vec<Batch> = (0..parallelism).map(|_| Batch::new()).collect();
    for r in batch {
        parts[key_partition(r.key, max_parallelism, parallelism)].push(r.key, r.value, r.timestamp);
    }
    parts
}

/// What an [`InputGate`] yields.
#[derive(Debug)]
pub enum InputEvent {
    Records(Batch),
    /// Every input channel delivered this barrier: take the snapshot now.
    BarrierAligned(Barrier),
    /// The lowest watermark over the active input channels rose to this.
    Watermark(i64),
    /// Every input channel is idle (or one is active again): pass it on.
    Status(WatermarkStatus),
    /// Every input channel has ended.
    AllEnded,
}

/// The receiving side of a subtask: all its input channels, with Flink's aligned barriers.
///
/// When a barrier arrives on a channel, that channel is blocked (its later records belong to
/// the next checkpoint) until the same barrier has arrived on every channel.
pub struct InputGate {
    inputs: Vec<ChannelReceiver>,
    blocked: Vec<bool>,
    ended: Vec<bool>,
    pending_barrier: Option<Barrier>,
    /// When the pending barrier arrived on its first channel.
    aligning_since: Option<Instant>,
    /// How long the last aligned barrier took from its first channel to its last.
    last_alignment: Duration,
    all_ended_reported: bool,
    cursor: usize,
    watermarks: WatermarkValve,
}

/// Flink's `StatusWatermarkValve`: the operator's watermark is the lowest over its input
/// channels that are active and aligned; idle channels are left out; when every channel is idle
/// the operator's output is idle too. A channel that becomes active again with a watermark
/// below the operator's takes part again only once it has caught up (watermarks never go back).
#[derive(Debug)]
struct WatermarkValve {
    channels: Vec<ChannelWatermark>,
    /// The last watermark passed on.
    output: i64,
    output_idle: bool,
}

#[derive(Clone, Copy, Debug)]
struct ChannelWatermark {
    watermark: i64,
    idle: bool,
    aligned: bool,
}

impl WatermarkValve {
    fn new(n: usize) -> Self {
        WatermarkValve { channels: vec![ChannelWatermark { watermark: i64::MIN, idle: false, aligned: true }; n], output: i64::MIN, output_idle: false }
    }

    /// A watermark on channel `c`; the new output watermark if it rose.
    fn watermark(&mut self, c: usize, watermark: i64) -> Option<i64> {
        let ch = &mut self.channels[c];
        if ch.idle || watermark <= ch.watermark {
            return None;
        }
        ch.watermark = watermark;
        if watermark >= self.output {
            ch.aligned = true;
        }
        self.advance()
    }

    /// Channel `c` became idle or active; what to pass on: a status change and/or a watermark.
    fn status(&mut self, c: usize, status: WatermarkStatus) -> (Option<WatermarkStatus>, Option<i64>) {
        let ch = &mut self.channels[c];
        match status {
            WatermarkStatus::Idle if !ch.idle => {
                ch.idle = true;
                ch.aligned = false;
                if self.channels.iter().all(|c| c.idle) {
                    self.output_idle = true;
                    return (Some(WatermarkStatus::Idle), None);
                }
                (None, self.advance())
            }
            WatermarkStatus::Active if ch.idle => {
                ch.idle = false;
                ch.aligned = ch.watermark >= self.output;
                if self.output_idle {
                    self.output_idle = false;
                    return (Some(WatermarkStatus::Active), None);
                }
                (None, None)
            }
            _ => (None, None),
        }
    }

    /// Channel `c` ended: it holds nothing back any more.
    fn end(&mut self, c: usize) -> Option<i64> {
        self.channels[c] = ChannelWatermark { watermark: i64::MAX, idle: false, aligned: true };
        // The ended channel is not idle: the output is not either (the subtask loop says so
        // downstream before it passes the watermark on).
        self.output_idle = false;
        self.advance()
    }

    /// The lowest watermark over active, aligned channels, if above the last output.
    fn advance(&mut self) -> Option<i64> {
        let low = self.channels.iter().filter(|c| !c.idle && c.aligned).map(|c| c.watermark).min()?;
        if low > self.output {
            self.output = low;
            Some(low)
        } else {
            None
        }
    }
}

impl InputGate {
    pub fn new(inputs: Vec<ChannelReceiver>) -> Self {
        let n = inputs.len();
        InputGate {
            inputs,
            blocked: vec![false; n],
            ended: vec![false; n],
            pending_barrier: None,
            aligning_since: None,
            last_alignment: Duration::ZERO,
            all_ended_reported: false,
            cursor: 0,
            watermarks: WatermarkValve::new(n),
        }
    }

    /// How long the last [`InputEvent::BarrierAligned`] waited, from the barrier's arrival on
    /// its first channel to its last (zero with one input channel).
    pub fn last_alignment(&self) -> Duration {
        self.last_alignment
    }

    /// Next event; `None` when every upstream sender is gone (teardown).
    pub async fn next(&mut self) -> Option<InputEvent> {
        loop {
            let (channel, message) = self.recv().await?;
            match message {
                Message::Records(batch) => return Some(InputEvent::Records(batch)),
                Message::Barrier(b) => {
                    if self.pending_barrier.replace(b).is_none() && self.inputs.len() > 1 {
                        self.aligning_since = Some(Instant::now());
                    }
                    self.blocked[channel] = true;
                    if self.blocked.iter().all(|&x| x) {
                        self.blocked.iter_mut().for_each(|x| *x = false);
                        self.pending_barrier = None;
                        self.last_alignment = self.aligning_since.take().map_or(Duration::ZERO, |t| t.elapsed());
                        return Some(InputEvent::BarrierAligned(b));
                    }
                }
                Message::Watermark(w) => {
                    if let Some(w) = self.watermarks.watermark(channel, w) {
                        return Some(InputEvent::Watermark(w));
                    }
                }
                Message::Status(status) => match self.watermarks.status(channel, status) {
                    (Some(s), _) => return Some(InputEvent::Status(s)),
                    (None, Some(w)) => return Some(InputEvent::Watermark(w)),
                    (None, None) => {}
                },
                Message::EndOfInput => {
                    self.ended[channel] = true;
                    // An ended input is at the end of event time, idle or not.
                    let watermark = self.watermarks.end(channel);
                    if !self.all_ended_reported && self.ended.iter().all(|&x| x) {
                        self.all_ended_reported = true;
                        return Some(InputEvent::AllEnded);
                    }
                    if let Some(w) = watermark {
                        return Some(InputEvent::Watermark(w));
                    }
                }
            }
        }
    }

    /// Receives from the next unblocked channel that has a message, round-robin for fairness.
    async fn recv(&mut self) -> Option<(usize, Message)> {
        poll_fn(|cx| {
            let n = self.inputs.len();
            let mut open = 0;
            for step in 0..n {
                let i = (self.cursor + step) % n;
                if self.blocked[i] {
                    open += 1;
                    continue;
                }
                match self.inputs[i].poll_recv(cx) {
                    Poll::Ready(Some(m)) => {
                        self.cursor = (i + 1) % n;
                        return Poll::Ready(Some((i, m)));
                    }
                    Poll::Ready(None) => {}
                    Poll::Pending => open += 1,
                }
            }
            if open == 0 { Poll::Ready(None) } else { Poll::Pending }
        })
        .await
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    /// Record i has key `values[i]`, the same text as value, and timestamp i.
    fn batch(values: &[&str]) -> Batch {
        let mut b = Batch::new();
        for (i, v) in values.iter().enumerate() {
            b.push(Some(v.as_bytes()), v.as_bytes(), i as i64);
        }
        b
    }

    #[test]
    fn key_split_keeps_every_record_once_and_in_order() {
        let keys = ["a", "bb", "ccc", "a", "dddd"];
        let parts = split_by_key(&batch(&keys), 128, 3);
        for (p, part) in parts.iter().enumerate() {
            // Each record keeps its own key, value and timestamp, in the original order.
            let expected: Vec<(&[u8], &[u8], i64)> = keys
                .iter()
                .enumerate()
                .filter(|(_, k)| key_partition(Some(k.as_bytes()), 128, 3) == p)
                .map(|(i, k)| (k.as_bytes(), k.as_bytes(), i as i64))
                .collect();
            let got: Vec<(&[u8], &[u8], i64)> = part.iter().map(|r| (r.key.unwrap(), r.value, r.timestamp)).collect();
            assert_eq!(got, expected, "partition {p}");
        }
        assert_eq!(parts.iter().map(|p| p.len()).sum::<usize>(), 5);
        assert_eq!(key_partition(None, 128, 3), 0);
        // The owner of the key's key group, as a restore assigns the groups.
        for k in keys {
            let kg = wasmflow_state::key_group(k.as_bytes(), 128);
            let owner = key_partition(Some(k.as_bytes()), 128, 3) as u32;
            assert!(wasmflow_state::KeyGroupRange::for_subtask(128, 3, owner).contains(kg));
        }
    }

    /// Batches from a guest are bounded in bytes, not only in number: with a budget of 3 KiB,
    /// three 1 KiB batches fill the channel and the fourth waits for the receiver; a batch larger
    /// than the whole budget still passes once the channel is empty.
    #[tokio::test]
    async fn a_channel_holds_at_most_its_byte_budget() {
        let (tx, rx) = channel(16, 3 * 1024);
        let mut gate = InputGate::new(vec![rx]);
        let kib = || {
            let mut b = Batch::new();
            b.push(None, &[b'x'; 1024 - 16], 0);
            b
        };
        for _ in 0..3 {
            tx.send(Message::Records(kib())).await.unwrap();
        }
        assert_eq!(tx.bytes_in_flight(), 3 * 1024);
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(Message::Records(kib()))).await;
        assert!(blocked.is_err(), "the fourth batch waits: the budget is full");
        assert!(matches!(gate.next().await, Some(InputEvent::Records(_))));
        tx.send(Message::Records(kib())).await.expect("room again after one was taken");
        for _ in 0..3 {
            gate.next().await.unwrap();
        }
        assert_eq!(tx.bytes_in_flight(), 0);
        let mut huge = Batch::new();
        huge.push(None, &vec![b'y'; 100 * 1024], 0);
        tx.send(Message::Records(huge)).await.expect("an oversized batch passes alone");
        assert_eq!(tx.bytes_in_flight(), 3 * 1024);
    }

    /// The lowest watermark of the active channels goes on; an idle channel is left out; all
    /// idle makes the output idle; a channel back from idle behind the output waits to catch up.
    #[tokio::test]
    async fn watermarks_take_the_minimum_over_active_channels() {
        let (tx0, rx0) = channel(8, 1 << 20);
        let (tx1, rx1) = channel(8, 1 << 20);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        let next = async |gate: &mut InputGate| match gate.next().await.unwrap() {
            InputEvent::Watermark(w) => format!("wm {w}"),
            InputEvent::Status(s) => format!("{s:?}"),
            e => format!("{e:?}"),
        };
        tx0.send(Message::Watermark(10)).await.unwrap();
        tx1.send(Message::Watermark(5)).await.unwrap();
        assert_eq!(next(&mut gate).await, "wm 5", "both channels have one now: the lower");
        tx1.send(Message::Watermark(20)).await.unwrap();
        assert_eq!(next(&mut gate).await, "wm 10");
        tx0.send(Message::Status(WatermarkStatus::Idle)).await.unwrap();
        assert_eq!(next(&mut gate).await, "wm 20", "the idle channel no longer holds it back");
        tx1.send(Message::Status(WatermarkStatus::Idle)).await.unwrap();
        assert_eq!(next(&mut gate).await, "Idle");
        tx0.send(Message::Status(WatermarkStatus::Active)).await.unwrap();
        assert_eq!(next(&mut gate).await, "Active");
        // Channel 0 is at 10, behind the output (20): it does not pull the watermark back, and
        // counts again once it passes 20.
        tx0.send(Message::Watermark(15)).await.unwrap();
        tx0.send(Message::Watermark(30)).await.unwrap();
        assert_eq!(next(&mut gate).await, "wm 30");
        tx0.send(Message::Watermark(30)).await.unwrap();
        tx0.send(Message::EndOfInput).await.unwrap();
        tx1.send(Message::EndOfInput).await.unwrap();
        assert_eq!(next(&mut gate).await, "AllEnded", "a repeated watermark passes nothing on");
    }

    #[tokio::test]
    async fn barrier_blocks_a_channel_until_aligned() {
        let (tx0, rx0) = channel(8, 1 << 20);
        let (tx1, rx1) = channel(8, 1 << 20);
        let mut gate = InputGate::new(vec![rx0, rx1]);
        let b = Barrier { checkpoint_id: 1, timestamp: 0, keyed: super::super::message::KeyedSnapshotKind::SelfContained };
        tx0.send(Message::Barrier(b)).await.unwrap();
        tx0.send(Message::Records(batch(&["after"]))).await.unwrap();
        tx1.send(Message::Records(batch(&["before"]))).await.unwrap();
        tx1.send(Message::Barrier(b)).await.unwrap();
        // Channel 0 is blocked after its barrier: channel 1's record comes first.
        match gate.next().await.unwrap() {
            InputEvent::Records(r) => assert_eq!(r.iter().next().unwrap().value, b"before"),
            e => panic!("{e:?}"),
        }
        assert!(matches!(gate.next().await.unwrap(), InputEvent::BarrierAligned(x) if x == b));
        match gate.next().await.unwrap() {
            InputEvent::Records(r) => assert_eq!(r.iter().next().unwrap().value, b"after"),
            e => panic!("{e:?}"),
        }
        tx0.send(Message::EndOfInput).await.unwrap();
        tx1.send(Message::EndOfInput).await.unwrap();
        assert!(matches!(gate.next().await.unwrap(), InputEvent::AllEnded));
        drop((tx0, tx1));
        assert!(gate.next().await.is_none());
    }
}
