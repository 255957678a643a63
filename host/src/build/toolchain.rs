//! Which Rust toolchain builds guests.
//!
//! Preferred: a rustup toolchain with the `wasm32-unknown-unknown` target installed. Otherwise
//! Debian's `rustc-web` + `rust-web-src` + `lld`, building the standard library from source
//! (`-Zbuild-std`); `make guest-toolchain` installs those packages.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

const TARGET: &str = "wasm32-unknown-unknown";
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library";
/// Code generation for every guest: 128-bit SIMD, which wasmtime compiles to the host's vector
/// instructions. Loops over bytes (upper-casing, scanning, copying a record's value) vectorise;
/// without it they run a byte at a time (`bench/REPORT.md`, wasm overhead: 2.4x on 1 KiB values).
const GUEST_RUSTFLAGS: &str = "-C target-feature=+simd128";

/// A way to build `wasm32-unknown-unknown` code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's cargo with the target installed.
    Rustup,
    /// Debian's rustc-web, building std from source with wasm-ld as linker.
    DebianBuildStd { rustc: PathBuf, cargo: PathBuf },
}

/// Whether `rustup target list --installed` output lists the wasm target.
pub fn lists_wasm_target(installed: &str) -> bool {
    installed.lines().any(|l| l.trim() == TARGET)
}

fn has_program(name: &str) -> bool {
    Command::new(name).arg("--version").output().is_ok_and(|o| o.status.success())
}

impl Toolchain {
    /// Finds a toolchain, or says how to install one.
    pub fn detect() -> Result<Toolchain> {
        if let Ok(out) = Command::new("rustup").args(["target", "list", "--installed"]).output()
            && out.status.success()
            && lists_wasm_target(&String::from_utf8_lossy(&out.stdout))
        {
            return Ok(Toolchain::Rustup);
        }
        Self::choose_debian(Path::new(DEBIAN_RUSTC).exists(), Path::new(DEBIAN_STD_SRC).is_dir(), has_program("wasm-ld"))
    }

    /// The Debian fallback, if all its parts are there.
    pub fn choose_debian(rustc: bool, std_src: bool, wasm_ld: bool) -> Result<Toolchain> {
        if rustc && std_src && wasm_ld {
            return Ok(Toolchain::DebianBuildStd { rustc: DEBIAN_RUSTC.into(), cargo: DEBIAN_CARGO.into() });
        }
        let mut missing = Vec::new();
        if !rustc {
            missing.push("rustc-web (/usr/bin/rustc)");
        }
        if !std_src {
            missing.push("rust-web-src (std sources)");
        }
        if !wasm_ld {
            missing.push("lld (wasm-ld)");
        }
        bail!(
            "no Rust toolchain can build wasm32-unknown-unknown: rustup has no {TARGET} target and Debian's guest toolchain lacks {}; run `make guest-toolchain` (or `rustup target add {TARGET}`)",
            missing.join(", ")
        )
    }

    /// The `cargo build` command for `package`, writing into `target_dir`.
    pub fn cargo_build(&self, package: &str, target_dir: &Path) -> Command {
        let mut cmd;
        match self {
            Toolchain::Rustup => {
                cmd = Command::new("cargo");
                cmd.env("RUSTFLAGS", GUEST_RUSTFLAGS).args(["build", "--release", "--target", TARGET]);
            }
            Toolchain::DebianBuildStd { rustc, cargo } => {
                cmd = Command::new(cargo);
                cmd.env("RUSTC", rustc).env("RUSTC_BOOTSTRAP", "1").env("RUSTFLAGS", format!("{GUEST_RUSTFLAGS} -C linker=wasm-ld -C panic=abort")).args([
                    "build",
                    "--release",
                    "-Zbuild-std=std,panic_abort",
                    "--target",
                    TARGET,
                ]);
                // rustup's proxies must not pick a rustup toolchain for this cargo.
                cmd.env_remove("RUSTUP_TOOLCHAIN").env_remove("CARGO");
            }
        }
        cmd.arg("-p").arg(package).env("CARGO_TARGET_DIR", target_dir);
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_target_in_rustup_output() {
        assert!(lists_wasm_target("x86_64-unknown-linux-gnu\nwasm32-unknown-unknown\n"));
        assert!(!lists_wasm_target("x86_64-unknown-linux-gnu\nwasm32-wasip1\n"));
    }

    #[test]
    fn debian_fallback_needs_all_three_parts() {
        assert!(matches!(Toolchain::choose_debian(true, true, true), Ok(Toolchain::DebianBuildStd { .. })));
        let e = Toolchain::choose_debian(true, false, false).unwrap_err().to_string();
        assert!(e.contains("lacks rust-web-src (std sources), lld (wasm-ld)"), "{e}");
        assert!(e.contains("run `make guest-toolchain`"), "{e}");
    }

    #[test]
    fn debian_command_builds_std_from_source() {
        let t = Toolchain::DebianBuildStd { rustc: "/usr/bin/rustc".into(), cargo: "/usr/bin/cargo".into() };
        let cmd = t.cargo_build("op", Path::new("/t"));
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["build", "--release", "-Zbuild-std=std,panic_abort", "--target", TARGET, "-p", "op"]);
    }

    #[test]
    fn guests_are_built_with_simd_by_either_toolchain() {
        let debian = Toolchain::DebianBuildStd { rustc: "/usr/bin/rustc".into(), cargo: "/usr/bin/cargo".into() };
        for toolchain in [Toolchain::Rustup, debian] {
            let cmd = toolchain.cargo_build("op", Path::new("/t"));
            let flags = cmd.get_envs().find(|(k, _)| *k == "RUSTFLAGS").and_then(|(_, v)| v).map(|v| v.to_string_lossy().into_owned());
            assert!(flags.as_deref().is_some_and(|f| f.contains("+simd128")), "{toolchain:?}: {flags:?}");
        }
    }
}
