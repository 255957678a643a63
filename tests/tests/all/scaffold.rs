//! `wasmflow new` for each kind: the scaffold passes its own tests and builds to a valid
//! component at once (as an author would run it: `cargo test`, then `wasmflow build`).

use std::process::Command;

use wasmflow_tests::{wasmflow_bin, workspace_root};

#[test]
fn each_scaffold_tests_and_builds() {
    let dir = tempfile::tempdir().unwrap();
    // One target directory for the four crates, so dependencies and std build once.
    let target = workspace_root().join("target/scaffold-test");
    for kind in ["source", "map", "sink", "keyed"] {
        let name = format!("my-{kind}");
        let status = Command::new(wasmflow_bin()).args(["new", &name, "--kind", kind, "--dir"]).arg(dir.path()).status().unwrap();
        assert!(status.success(), "wasmflow new {name}");
        let crate_dir = dir.path().join(&name);
        let test = Command::new("cargo").arg("test").current_dir(&crate_dir).env("CARGO_TARGET_DIR", &target).output().unwrap();
        let log = String::from_utf8_lossy(&test.stdout).to_string() + &String::from_utf8_lossy(&test.stderr);
        assert!(test.status.success(), "cargo test of the {kind} scaffold failed:\n{log}");
        assert!(log.contains("test result: ok. 1 passed"), "{log}");
        let build = Command::new(wasmflow_bin()).arg("build").arg(&crate_dir).env("CARGO_TARGET_DIR", &target).output().unwrap();
        let out = String::from_utf8_lossy(&build.stdout).to_string();
        assert!(build.status.success(), "wasmflow build of the {kind} scaffold failed:\n{out}{}", String::from_utf8_lossy(&build.stderr));
        let wasm = target.join("operators").join(format!("my_{kind}.wasm"));
        assert!(out.starts_with(&format!("{name}: {}", wasm.display())), "{out}");
        let validate = Command::new(wasmflow_bin()).arg("validate").arg(&wasm).output().unwrap();
        assert!(validate.status.success(), "{}", String::from_utf8_lossy(&validate.stderr));
    }
}
