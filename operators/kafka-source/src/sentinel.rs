//! Offset sentinels of Flink's `KafkaTopicPartitionStateSentinel` (docs/kafka-source.md §3): negative
//! values that stand for a start position not resolved yet. `-1` is a real state ("nothing read,
//! next offset 0").

pub const OFFSET_NOT_SET: i64 = -915623761776;
pub const EARLIEST_OFFSET: i64 = -915623761775;
pub const LATEST_OFFSET: i64 = -915623761774;
pub const GROUP_OFFSET: i64 = -915623761773;

/// `isSentinel(x) := x < 0`: used to filter what is committed (drops -1 too, docs/kafka-source.md §11).
pub fn is_sentinel(offset: i64) -> bool {
    offset < 0
}
