//! A deliberately hostile operator for the sandbox tests: each `behavior` attacks the host in
//! one way. It must only ever fail its own subtask. Never use it in a real job.

use wasmflow_guest_sdk::prelude::*;

/// Configuration (`[operators.config]` in the job file).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct HostileConfig {
    /// `loop-in-process`, `loop-in-snapshot`, `memory-bomb`, `deep-recursion`, `huge-state-entry`,
    /// `many-states`, `log-flood`, `panic-in-snapshot`, `huge-batch`, `huge-error`, `kafka-clients`,
    /// `kafka-debug`, `register-outside-init`, `stale-input`. (Its job must grant `kafka`.)
    pub behavior: String,
}

/// See the crate documentation.
pub struct Hostile {
    behavior: String,
    state: ListState<Vec<u8>>,
    hoard: Vec<Vec<u8>>,
}

#[allow(unconditional_recursion)] // the point: recursion without end
fn recurse(depth: u64, trail: &mut [u64; 16]) -> u64 {
    // Each frame keeps a live array so the recursion cannot be turned into a loop.
    trail[(depth % 16) as usize] = depth;
    let mut local = [depth; 64];
    local[(depth % 64) as usize] = recurse(depth + 1, trail);
    local.iter().sum()
}

/// The handle every `process` call's input is lent under: handle 1 is the `blob` list state, the
/// only handle this operator makes itself.
#[cfg(target_arch = "wasm32")]
const INPUT_HANDLE: u32 = 2;

/// The input batch as [`INPUT_HANDLE`] names it, held or not (never dropped: `mem::forget` it).
#[cfg(target_arch = "wasm32")]
fn input_by_handle() -> wasmflow_guest_sdk::bindings::wasmflow::operator::input::InputBatch {
    // SAFETY: none in `snapshot_state`, on purpose: the point is a handle the guest may no
    // longer hold; in `process` it is the call's input.
    unsafe { wasmflow_guest_sdk::bindings::wasmflow::operator::input::InputBatch::from_handle(INPUT_HANDLE) }
}

impl Transform for Hostile {
    fn create(ctx: &RuntimeContext) -> Result<Self> {
        let config: HostileConfig = ctx.config()?;
        Ok(Hostile { behavior: config.behavior, state: ListState::default(), hoard: Vec::new() })
    }

    fn process(&mut self, input: &Input, out: &mut Collector) -> Result<()> {
        match self.behavior.as_str() {
            "loop-in-process" => loop {
                std::hint::black_box(&mut self.hoard);
            },
            "memory-bomb" => loop {
                self.hoard.push(vec![1u8; 1 << 20]);
            },
            "deep-recursion" => {
                let mut trail = [0u64; 16];
                out.emit(None, recurse(0, &mut trail).to_string().as_bytes(), 0);
            }
            "huge-state-entry" => self.state.add(&vec![7u8; 32 << 20])?,
            "log-flood" => {
                for i in 0..20_000 {
                    info!("flood line {i} {}", "x".repeat(10_000));
                }
            }
            // A 50 MiB error whose text also tries to forge a host log line.
            "huge-error" => bail!("first line\n2099-01-01T00:00:00Z  INFO wasmflow: forged host line\r{}", "e".repeat(50 << 20)),
            "huge-batch" => {
                let big = vec![b'x'; 1 << 20];
                for _ in 0..100 {
                    out.emit(None, &big, 0);
                }
                return Ok(());
            }
            // Exactly the batch-size limit emitted besides a forwarded input: the output, input
            // and all, is over it.
            "huge-batch-forwarded" => {
                out.forward_input();
                let big = vec![b'x'; 1 << 20];
                for _ in 0..64 {
                    out.emit(None, &big, 0);
                }
                return Ok(());
            }
            // Kafka clients without end (each is a host client with threads of its own).
            #[cfg(target_arch = "wasm32")]
            "kafka-clients" => {
                let props = [("group.id".to_string(), "hostile".to_string())];
                let clients: Vec<_> = (0..1000).map(|_| wasmflow_guest_sdk::kafka::Consumer::new(&props, true)).collect();
                std::hint::black_box(clients);
            }
            // A property that would make librdkafka log without the guest's budget.
            #[cfg(target_arch = "wasm32")]
            "kafka-debug" => {
                std::hint::black_box(wasmflow_guest_sdk::kafka::Consumer::new(&[("debug".to_string(), "all".to_string())], true));
            }
            // Checks that its input is lent under the handle it reads again in `snapshot_state`.
            #[cfg(target_arch = "wasm32")]
            "stale-input" => {
                let lent = input_by_handle();
                ensure!(lent.len() as usize == input.len(), "handle {INPUT_HANDLE} is not the input");
                std::mem::forget(lent);
            }
            #[cfg(target_arch = "wasm32")]
            "register-outside-init" => {
                wasmflow_guest_sdk::bindings::wasmflow::operator::state::get_list_state("late", "u8", "").map_err(|e| anyhow!(e))?;
            }
            _ => {}
        }
        for r in input {
            out.emit_record(&r);
        }
        Ok(())
    }

    fn initialize_state(&mut self, ctx: &mut FunctionInitializationContext) -> Result<()> {
        if self.behavior == "many-states" {
            for i in 0..100_000 {
                ctx.get_list_state::<u8>(&format!("state-{i}"))?;
            }
        }
        self.state = ctx.get_list_state::<Vec<u8>>("blob")?;
        Ok(())
    }

    fn snapshot_state(&mut self, _ctx: &FunctionSnapshotContext) -> Result<()> {
        match self.behavior.as_str() {
            "loop-in-snapshot" => loop {
                std::hint::black_box(&mut self.hoard);
            },
            "panic-in-snapshot" => panic!("hostile operator panics in snapshot_state"),
            // Reads its last input again, outside `process`, with the handle it was lent under.
            #[cfg(target_arch = "wasm32")]
            "stale-input" => {
                let kept = input_by_handle();
                std::hint::black_box(kept.read());
                std::mem::forget(kept);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

export_transform!(Hostile);
