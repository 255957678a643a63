//! The source's configuration (`[operators.config]` in the job file), with Flink's defaults.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Where a fresh start begins (docs/kafka-source.md §3). A restore ignores it (docs/kafka-source.md §7).
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum StartupMode {
    #[default]
    GroupOffsets,
    Earliest,
    Latest,
    SpecificOffsets,
    Timestamp,
}

/// When offsets are committed to Kafka (docs/kafka-source.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetCommitMode {
    OnCheckpoints,
    KafkaPeriodic,
    Disabled,
}

/// The configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourceConfig {
    /// Fixed topics (non-empty), or…
    #[serde(default)]
    pub topics: Vec<String>,
    /// …a regex every topic must match in full.
    #[serde(default)]
    pub topic_pattern: Option<String>,
    #[serde(default)]
    pub startup_mode: StartupMode,
    /// For `specific-offsets`: `"topic:partition" = next offset to read`.
    #[serde(default)]
    pub specific_offsets: BTreeMap<String, i64>,
    /// For `timestamp`: start at the first record with timestamp >= this (ms).
    #[serde(default)]
    pub startup_timestamp_ms: Option<i64>,
    /// `setCommitOffsetsOnCheckpoints` (default true).
    #[serde(default = "yes")]
    pub commit_offsets_on_checkpoints: bool,
    /// `flink.partition-discovery.interval-millis`; absent = disabled, 0 = every poll.
    #[serde(default)]
    pub partition_discovery_interval_ms: Option<i64>,
    /// Drop restored partitions whose topic is no longer subscribed (default true).
    #[serde(default = "yes")]
    pub filter_restored_partitions_with_subscribed_topics: bool,
    /// Stop at the offsets that were latest when the source started.
    #[serde(default)]
    pub bounded: bool,
    /// librdkafka properties (`group.id` for committing). The brokers come from the job file's
    /// grant (`grants = { kafka = { bootstrap-servers = ... } }`), not from here.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Records asked for per fetch (default: what the host asks for).
    #[serde(default)]
    pub max_records_per_poll: Option<u32>,
    /// How long one fetch waits for a record (default 100 ms, Flink's `flink.poll-timeout`).
    #[serde(default = "default_poll_timeout")]
    pub fetch_timeout_ms: u32,
    /// Event time: emit watermarks for records at most this many ms out of order, generated per
    /// partition; the source's watermark is the lowest over its partitions (docs/kafka-source.md
    /// §13). Absent = no watermarks.
    #[serde(default)]
    pub watermark_delay_ms: Option<u64>,
    /// With watermarks: a partition without records for this long is left out of the minimum
    /// until it has records again (Flink's `withIdleness`). Absent = partitions never go idle.
    #[serde(default)]
    pub idle_timeout_ms: Option<u64>,
}

fn yes() -> bool {
    true
}

fn default_poll_timeout() -> u32 {
    100
}

impl SourceConfig {
    /// Checks what serde cannot: one of topics / topic-pattern, mode-specific keys.
    pub fn validate(&self, now_ms: i64) -> Result<(), String> {
        if self.idle_timeout_ms.is_some() && self.watermark_delay_ms.is_none() {
            return Err("idle-timeout-ms only applies to watermarks: set watermark-delay-ms too (or remove idle-timeout-ms)".into());
        }
        match (self.topics.is_empty(), &self.topic_pattern) {
            (true, None) => return Err("set `topics` (a non-empty list) or `topic-pattern` (a regex)".into()),
            (false, Some(_)) => return Err("set either `topics` or `topic-pattern`, not both".into()),
            _ => {}
        }
        if let Some(p) = &self.topic_pattern {
            regex::Regex::new(p).map_err(|e| format!("`topic-pattern` is not a valid regex: {e}"))?;
        }
        if let Some(i) = self.partition_discovery_interval_ms
            && i < 0
        {
            return Err("Cannot define a negative value for the topic / partition discovery interval.".into());
        }
        match self.startup_mode {
            StartupMode::Timestamp => match self.startup_timestamp_ms {
                None => return Err("startup-mode = \"timestamp\" needs `startup-timestamp-ms`".into()),
                Some(ts) if ts < 0 => return Err(format!("startup-timestamp-ms {ts} must not be negative")),
                Some(ts) if ts > now_ms => return Err(format!("startup-timestamp-ms {ts} is in the future")),
                _ => {}
            },
            StartupMode::SpecificOffsets => {
                for key in self.specific_offsets.keys() {
                    parse_topic_partition(key)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `OffsetCommitModes.fromConfiguration` (docs/kafka-source.md §4).
    pub fn commit_mode(&self, checkpointing_enabled: bool) -> OffsetCommitMode {
        if checkpointing_enabled {
            if self.commit_offsets_on_checkpoints { OffsetCommitMode::OnCheckpoints } else { OffsetCommitMode::Disabled }
        } else {
            let auto = self.properties.get("enable.auto.commit").is_none_or(|v| v == "true");
            let interval = self.auto_commit_interval_ms();
            if auto && interval > 0 { OffsetCommitMode::KafkaPeriodic } else { OffsetCommitMode::Disabled }
        }
    }

    /// `auto.commit.interval.ms` (default 5000).
    pub fn auto_commit_interval_ms(&self) -> i64 {
        self.properties.get("auto.commit.interval.ms").and_then(|v| v.parse().ok()).unwrap_or(5000)
    }

    /// The librdkafka properties the host client gets. Offsets are committed explicitly by the
    /// source in every mode (partitions are assigned manually), so auto-commit is always off
    /// (Flink's `adjustAutoCommitConfig` for ON_CHECKPOINTS and DISABLED; KAFKA_PERIODIC is
    /// emulated with explicit commits at the same interval).
    pub fn client_properties(&self) -> Vec<(String, String)> {
        let mut p: Vec<(String, String)> = self
            .properties
            .iter()
            .filter(|(k, _)| *k != "enable.auto.commit" && *k != "auto.commit.interval.ms")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        p.push(("enable.auto.commit".into(), "false".into()));
        p
    }

    /// `auto.offset.reset` is `earliest`/`smallest` (else Kafka's default, latest).
    pub fn reset_to_earliest(&self) -> bool {
        self.properties.get("auto.offset.reset").is_some_and(|v| v == "earliest" || v == "smallest" || v == "beginning")
    }

    /// `KafkaTopicsDescriptor.isMatchingTopic` (docs/kafka-source.md §1): list membership or full regex match.
    pub fn matches_topic(&self, topic: &str) -> bool {
        match &self.topic_pattern {
            Some(p) => regex::Regex::new(&format!("^(?:{p})$")).is_ok_and(|r| r.is_match(topic)),
            None => self.topics.iter().any(|t| t == topic),
        }
    }
}

/// Parses `"topic:partition"`.
pub fn parse_topic_partition(key: &str) -> Result<(String, i32), String> {
    let (t, p) = key.rsplit_once(':').ok_or_else(|| format!("specific-offsets key '{key}' must be \"topic:partition\""))?;
    let p = p.parse().map_err(|_| format!("specific-offsets key '{key}': partition '{p}' is not a number"))?;
    Ok((t.to_string(), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: serde_json::Value) -> SourceConfig {
        let mut base = serde_json::json!({"topics": ["t"], "properties": {"bootstrap.servers": "x"}});
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn commit_mode_table() {
        // docs/kafka-source.md §4 table.
        assert_eq!(config(serde_json::json!({})).commit_mode(true), OffsetCommitMode::OnCheckpoints);
        assert_eq!(config(serde_json::json!({"commit-offsets-on-checkpoints": false})).commit_mode(true), OffsetCommitMode::Disabled);
        assert_eq!(config(serde_json::json!({})).commit_mode(false), OffsetCommitMode::KafkaPeriodic);
        let off = config(serde_json::json!({"properties": {"bootstrap.servers": "x", "enable.auto.commit": "false"}}));
        assert_eq!(off.commit_mode(false), OffsetCommitMode::Disabled);
        let zero = config(serde_json::json!({"properties": {"bootstrap.servers": "x", "auto.commit.interval.ms": "0"}}));
        assert_eq!(zero.commit_mode(false), OffsetCommitMode::Disabled);
        assert!(config(serde_json::json!({})).client_properties().contains(&("enable.auto.commit".into(), "false".into())));
    }

    #[test]
    fn validation_errors_name_the_key() {
        assert_eq!(
            config(serde_json::json!({"partition-discovery-interval-ms": -5})).validate(0).unwrap_err(),
            "Cannot define a negative value for the topic / partition discovery interval."
        );
        assert!(config(serde_json::json!({"topic-pattern": "a.*"})).validate(0).unwrap_err().contains("not both"));
        assert!(config(serde_json::json!({"startup-mode": "timestamp"})).validate(0).unwrap_err().contains("startup-timestamp-ms"));
        assert!(config(serde_json::json!({"startup-mode": "timestamp", "startup-timestamp-ms": 10})).validate(5).unwrap_err().contains("future"));
        let bad = serde_json::from_value::<SourceConfig>(serde_json::json!({"topics": ["t"], "properties": {}, "bogus": 1})).unwrap_err();
        assert!(bad.to_string().contains("unknown field `bogus`"));
    }

    #[test]
    fn pattern_is_a_full_match() {
        let c = config(serde_json::json!({"topics": [], "topic-pattern": "orders-[0-9]+"}));
        assert!(c.matches_topic("orders-12"));
        assert!(!c.matches_topic("orders-12x") && !c.matches_topic("xorders-1"));
    }
}
