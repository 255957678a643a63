//! Partition → subtask assignment, bit-for-bit Flink's `KafkaTopicPartitionAssigner`
//! (README.md, "The Kafka source").

/// Java's `String.hashCode`: `h = 31*h + c` over UTF-16 code units, wrapping in 32 bits.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// The subtask (of `parallelism`) that owns `topic`/`partition`: partitions of a topic are
/// spread round-robin starting at `((hash * 31) & 0x7FFFFFFF) % parallelism`. The mask clears
/// the sign bit; it is not `abs`.
pub fn assign(topic: &str, partition: i32, parallelism: i32) -> i32 {
    let start = (java_string_hash(topic).wrapping_mul(31) & 0x7FFF_FFFF) % parallelism;
    (start + partition) % parallelism
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test vectors (docs/kafka-source.md §5): topic, hashCode, start index for P = 1..10.
    const VECTORS: &[(&str, i32, [i32; 10])] = &[
        ("test-topic", 639758388, [0, 0, 0, 0, 1, 0, 5, 4, 3, 6]),
        ("topic", 110546223, [0, 1, 1, 1, 0, 1, 3, 1, 4, 5]),
        ("abc", 96354, [0, 0, 0, 2, 4, 0, 4, 6, 0, 4]),
        ("def", 99333, [0, 1, 0, 3, 3, 3, 2, 3, 0, 3]),
        ("orders", -1008770331, [0, 1, 0, 3, 4, 3, 3, 3, 0, 9]),
        ("payments", 1382682413, [0, 1, 0, 3, 1, 3, 4, 3, 6, 1]),
        ("kafka_topic_1", 2138759432, [0, 0, 2, 0, 2, 2, 4, 0, 8, 2]),
        ("dummy-topic", 2132592586, [0, 0, 1, 2, 1, 4, 4, 6, 4, 6]),
    ];

    #[test]
    fn java_hash_codes_match_the_spec() {
        for (topic, hash, _) in VECTORS {
            assert_eq!(java_string_hash(topic), *hash, "{topic}");
        }
    }

    #[test]
    fn start_indexes_match_the_spec_for_p_1_to_10() {
        for (topic, _, starts) in VECTORS {
            for p in 1..=10 {
                assert_eq!(assign(topic, 0, p), starts[p as usize - 1], "{topic} P={p}");
            }
        }
    }

    #[test]
    fn partitions_go_round_robin_from_the_start_index() {
        // docs/kafka-source.md §5: clockwise from startIndex, each subtask gets ⌊n/P⌋ or ⌊n/P⌋+1.
        for (topic, _, starts) in VECTORS {
            for p in 1..=10 {
                let mut per_subtask = vec![0; p as usize];
                for partition in 0..23 {
                    let owner = assign(topic, partition, p);
                    assert_eq!(owner, (starts[p as usize - 1] + partition) % p);
                    per_subtask[owner as usize] += 1;
                }
                let (mn, mx) = (per_subtask.iter().min().unwrap(), per_subtask.iter().max().unwrap());
                assert!(mx - mn <= 1, "{topic} P={p}: {per_subtask:?}");
            }
        }
    }
}
