//! A hostile operator for the sandbox tests that never finishes starting: a static constructor
//! spins forever, so the first guest code the host runs (instantiation or `kind`) never returns.
//! The host must fail it at the call deadline instead of hanging the job. Never use it in a job.

use wasmflow_guest_sdk::prelude::*;

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
extern "C" fn spin_forever() {
    loop {
        std::hint::spin_loop();
    }
}

/// A static constructor (wasm-ld runs `.init_array` entries before the first export runs).
#[cfg(target_arch = "wasm32")]
#[used]
#[unsafe(link_section = ".init_array")]
static SPIN_AT_START: extern "C" fn() = spin_forever;

/// Would pass records through, if it ever started.
fn pass(record: Record<'_>, out: &mut Collector) -> Result<()> {
    out.emit_record(&record);
    Ok(())
}

export_map!(pass);
