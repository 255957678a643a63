//! Small Kafka helper for `make run`: `kafka-tool produce BOOTSTRAP TOPIC PARTITIONS PER_PARTITION`
//! produces `PER_PARTITION` records (`event-<partition>-<n>`) into each partition;
//! `kafka-tool committed BOOTSTRAP GROUP TOPIC PARTITIONS` prints the group's committed offsets.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use wasmflow_host::connectors::kafka::{KafkaConsumer, KafkaLimits, KafkaProducer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let num = |i: usize, what: &str| -> Result<i64> {
        args.get(i).with_context(|| format!("missing {what}"))?.parse().with_context(|| format!("{what} must be a number"))
    };
    match args.first().map(String::as_str) {
        Some("produce") => {
            let props = vec![("bootstrap.servers".to_string(), args[1].clone())];
            let producer = KafkaProducer::new(&props, KafkaLimits::default())?;
            let (partitions, per) = (num(3, "PARTITIONS")? as i32, num(4, "PER_PARTITION")?);
            for p in 0..partitions {
                for n in 0..per {
                    producer.send(&args[2], Some(p), Some(format!("user-{}", n % 7).as_bytes()), format!("event-{p}-{n}").as_bytes(), -1)?;
                }
            }
            producer.flush(Duration::from_secs(30))?;
            println!("produced {} records into {} ({partitions} partitions)", partitions as i64 * per, args[2]);
        }
        Some("committed") => {
            let props = vec![("bootstrap.servers".to_string(), args[1].clone()), ("group.id".to_string(), args[2].clone())];
            let consumer = KafkaConsumer::new(&props, KafkaLimits::default())?;
            let tps: Vec<(String, i32)> = (0..num(4, "PARTITIONS")? as i32).map(|p| (args[3].clone(), p)).collect();
            for (t, p, o) in consumer.committed_offsets(&tps).await? {
                println!("{t}/{p}: committed offset {o}");
            }
        }
        _ => bail!("usage: kafka-tool produce BOOTSTRAP TOPIC PARTITIONS PER_PARTITION | committed BOOTSTRAP GROUP TOPIC PARTITIONS"),
    }
    Ok(())
}
