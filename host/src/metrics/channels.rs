//! How full the output channels are: `wasmflow_output_channel_fill_ratio`, read at scrape time.
//!
//! A full channel is back-pressure: the gauge shows where it starts (the first operator whose
//! output channels are full while its consumer's are not). It is computed when Prometheus asks,
//! from probes on the channels the current attempt wired, so sending a batch costs nothing extra.
//! A probe does not keep its channel open: after a restart the old attempt's channels close as
//! before, and their probes are replaced by the new attempt's.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use super::labels::EdgeLabels;
use crate::runtime::channel::ChannelProbe;

/// The channels of one edge leaving one subtask.
#[derive(Debug)]
pub struct EdgeProbe {
    pub labels: EdgeLabels,
    pub channels: Vec<ChannelProbe>,
}

impl EdgeProbe {
    /// The fullest of the edge's channels (one full channel blocks the sender, however empty the
    /// others are); `None` once every channel is gone.
    fn fill(&self) -> Option<f64> {
        self.channels.iter().filter_map(ChannelProbe::fill).reduce(f64::max)
    }
}

/// The probes of the attempt that runs now, and what workers last reported of theirs.
#[derive(Debug, Default)]
pub struct ChannelFill {
    edges: Mutex<Vec<EdgeProbe>>,
    /// Distributed execution: each worker's edges and their fill, by worker index, as it last
    /// reported them (every second).
    reported: Mutex<BTreeMap<usize, Vec<(EdgeLabels, f64)>>>,
}

impl ChannelFill {
    /// A new attempt's channels replace the previous attempt's.
    pub fn replace(&self, edges: Vec<EdgeProbe>) {
        *self.edges.lock().expect("channel probes lock") = edges;
    }

    /// Worker `worker`'s edges now (nothing: its part of the attempt ended).
    pub fn reported(&self, worker: usize, edges: Vec<(EdgeLabels, f64)>) {
        let mut reported = self.reported.lock().expect("reported fills lock");
        if edges.is_empty() {
            reported.remove(&worker);
        } else {
            reported.insert(worker, edges);
        }
    }

    /// Each edge's fill now.
    pub fn values(&self) -> Vec<(EdgeLabels, f64)> {
        let mut values: Vec<(EdgeLabels, f64)> =
            self.edges.lock().expect("channel probes lock").iter().filter_map(|e| Some((e.labels.clone(), e.fill()?))).collect();
        values.extend(self.reported.lock().expect("reported fills lock").values().flatten().cloned());
        values
    }
}

impl Collector for ChannelFill {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let values = self.values();
        if values.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "output_channel_fill_ratio",
            "How full the fullest channel of an edge leaving this subtask is: queued messages over channel-capacity, or record bytes over channel-bytes, whichever is higher (1 = the sender waits).",
            None,
            MetricType::Gauge,
        )?;
        for (labels, fill) in &values {
            ConstGauge::new(*fill).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
