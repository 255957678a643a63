//! Building operator crates into validated components: `wasmflow build` and `make operators`.
//!
//! * [`toolchain`]: finds a Rust toolchain that can target `wasm32-unknown-unknown`.
//! * [`componentize`]: core module → component.

mod componentize;
pub mod toolchain;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};

pub use componentize::componentize;
pub use toolchain::Toolchain;

/// A built operator.
#[derive(Debug, Clone)]
pub struct BuiltOperator {
    /// Cargo package name.
    pub package: String,
    /// Where the component was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
}

/// The package name and workspace root of the crate in `dir`.
fn cargo_metadata(dir: &Path) -> Result<(String, PathBuf, PathBuf)> {
    let out = Command::new("cargo")
        .args(["metadata", "--no-deps", "--format-version", "1", "--offline"])
        .current_dir(dir)
        .output()
        .with_context(|| format!("running `cargo metadata` in {}", dir.display()))?;
    if !out.status.success() {
        bail!("{}: not a Cargo crate: {}", dir.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let manifest = dir.canonicalize()?.join("Cargo.toml");
    let package = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path())))
        .ok_or_else(|| anyhow!("{}: no package here (is it a workspace root? name the operator crate's directory)", dir.display()))?;
    let name = package["name"].as_str().unwrap_or_default().to_string();
    let root = PathBuf::from(meta["workspace_root"].as_str().unwrap_or_default());
    let target = PathBuf::from(meta["target_directory"].as_str().unwrap_or_default());
    Ok((name, root, target))
}

/// Builds the operator crate in `dir` to a component at `<target>/operators/<crate>.wasm`.
///
/// The wasm build uses its own target directory (`<target>/wasm`), so host builds and guest
/// builds (possibly different compilers) never invalidate each other's caches.
pub fn build_operator(dir: &Path) -> Result<BuiltOperator> {
    let (package, root, target) = cargo_metadata(dir)?;
    warn_about_lost_println(dir);
    let toolchain = Toolchain::detect()?;
    let wasm_target = target.join("wasm");
    let mut cmd = toolchain.cargo_build(&package, &wasm_target);
    cmd.current_dir(&root);
    let status = cmd.status().with_context(|| format!("running cargo for {package}"))?;
    if !status.success() {
        bail!("building {package} for wasm32 failed (see the compiler output above)");
    }
    let artifact = package.replace('-', "_");
    let core_path = wasm_target.join("wasm32-unknown-unknown/release").join(format!("{artifact}.wasm"));
    let core =
        std::fs::read(&core_path).map_err(|e| anyhow!("{}: {e}; does {package} have `crate-type = [\"cdylib\", \"rlib\"]` in [lib]?", core_path.display()))?;
    let component = componentize(&core).with_context(|| format!("making a component of {package}"))?;
    let out_dir = target.join("operators");
    std::fs::create_dir_all(&out_dir)?;
    let path = out_dir.join(format!("{artifact}.wasm"));
    std::fs::write(&path, &component).with_context(|| format!("writing {}", path.display()))?;
    Ok(BuiltOperator { package, size: component.len() as u64, path })
}

/// `println!` compiles in a guest but its output is dropped inside wasm unless the crate uses
/// the SDK's macro; a source scan is the cheapest reliable warning.
fn warn_about_lost_println(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("src")) else { return };
    for e in entries.flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap_or_default();
        if println_is_lost(&text) {
            eprintln!("warning: {} uses println! without `use wasmflow_guest_sdk::println;`: its output would be lost inside wasm", e.path().display());
        }
    }
}

fn println_is_lost(source: &str) -> bool {
    let uses = source.contains("println!(") || source.contains("print!(");
    let imported = source.contains("wasmflow_guest_sdk::println") || source.contains("use wasmflow_guest_sdk::{") && source.contains("println");
    uses && !imported
}

#[cfg(test)]
mod tests {
    #[test]
    fn println_without_the_sdk_macro_is_flagged() {
        assert!(super::println_is_lost("fn f() { println!(\"x\"); }"));
        assert!(!super::println_is_lost("use wasmflow_guest_sdk::println;\nfn f() { println!(\"x\"); }"));
        assert!(!super::println_is_lost("fn f() {}"));
    }
}
