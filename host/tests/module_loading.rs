//! Loading modules: every bad module gets a one-line error naming the file and what to fix.

use std::collections::BTreeSet;
use std::path::Path;

use wasmflow_host::engine::{Capability, Engine, OperatorModule};

fn load_bytes(bytes: &[u8], granted: &[Capability]) -> String {
    let engine = Engine::new().unwrap();
    let granted: BTreeSet<Capability> = granted.iter().copied().collect();
    match OperatorModule::from_bytes(&engine, Path::new("op.wasm"), bytes, &granted) {
        Ok(_) => "loaded".into(),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_file_that_is_not_wasm() {
    assert_eq!(load_bytes(b"hello, world", &[]), "op.wasm: not a WebAssembly file (no \\0asm header); build operators with `wasmflow build`");
}

#[test]
fn a_core_module_instead_of_a_component() {
    let core = wat::parse_str("(module)").unwrap();
    assert_eq!(load_bytes(&core, &[]), "op.wasm: is a core wasm module, not a component; build it with `wasmflow build`, which makes the component");
}

#[test]
fn a_truncated_component() {
    let c = wat::parse_str("(component (core module))").unwrap();
    let e = load_bytes(&c[..c.len() - 3], &[]);
    assert!(e.starts_with("op.wasm: invalid component:"), "{e}");
}

#[test]
fn a_component_that_is_not_an_operator() {
    let c = wat::parse_str("(component)").unwrap();
    assert_eq!(
        load_bytes(&c, &[]),
        "op.wasm: does not export `wasmflow:operator/operator@0.5.0`; is it a wasmflow operator? (exports: none) — use one of the guest-sdk export macros"
    );
}

#[test]
fn an_import_outside_the_contract_is_rejected_by_name() {
    let c = wat::parse_str(r#"(component (import "wasi:filesystem/types@0.2.0" (instance)))"#).unwrap();
    assert_eq!(
        load_bytes(&c, &[]),
        "op.wasm: imports `wasi:filesystem/types@0.2.0`, which is not part of the wasmflow contract (wasmflow:operator/*@0.5.0); operators get no other capabilities"
    );
}

#[test]
fn an_ungranted_capability_is_rejected_by_name() {
    let c = wat::parse_str(r#"(component (import "wasmflow:operator/kafka@0.5.0" (instance)))"#).unwrap();
    assert_eq!(
        load_bytes(&c, &[]),
        "op.wasm: imports `wasmflow:operator/kafka@0.5.0` but the job file does not grant it; add `grants = { kafka = { bootstrap-servers = \"host:port\" } }` to this operator if you trust it"
    );
}

/// A module built by an older SDK (contract 0.1.0, before keyed state; 0.2.0, before
/// `process-output`; 0.3.0, before the column-wise `fetched-batch`; 0.4.0, before `input-batch`) is told to rebuild.
#[test]
fn a_module_of_an_older_contract_is_told_to_rebuild() {
    for old in ["0.1.0", "0.2.0", "0.3.0", "0.4.0"] {
        let c = wat::parse_str(format!(r#"(component (import "wasmflow:operator/state@{old}" (instance)))"#)).unwrap();
        assert_eq!(
            load_bytes(&c, &[]),
            format!(
                "op.wasm: was built against version {old} of the wasmflow contract; this wasmflow speaks 0.5.0: rebuild it with the current guest-sdk (`wasmflow build`)"
            )
        );
    }
}

#[test]
fn a_missing_module_path() {
    let engine = Engine::new().unwrap();
    let e = OperatorModule::load(&engine, Path::new("/nonexistent/op.wasm"), &BTreeSet::new()).err().unwrap();
    assert_eq!(format!("{e:#}"), "/nonexistent/op.wasm: cannot read module: No such file or directory (os error 2) (check the `module` path in the job file)");
}

/// `module = "/dev/zero"` used to read without end; a FIFO blocked the open. Both fail at once.
#[test]
fn a_device_or_fifo_as_module_fails_fast() {
    let engine = Engine::new().unwrap();
    let Err(e) = OperatorModule::load(&engine, Path::new("/dev/zero"), &BTreeSet::new()) else { panic!("/dev/zero loaded") };
    let e = format!("{e:#}");
    assert_eq!(e, "/dev/zero: module is not a regular file (a device, FIFO or socket); it must be a regular file (check the `module` path in the job file)");
}
