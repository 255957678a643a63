//! Compiling a component and checking it against the contract and the grants.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use wasmtime::component::{HasSelf, Linker};

use super::Engine;
use super::bindings::OperatorModulePre;
use super::bindings::wasmflow::operator as wit;
use super::host::StoreData;
use crate::untrusted::Symlinks;

const PACKAGE: &str = "wasmflow:operator";
/// The contract's version: 0.2.0 added keyed state, timers and watermarks (`keyed`,
/// `clock.current-watermark`, `poll`'s `source-output`, the `on-timer` export); 0.3.0 lets
/// `process` forward its input without returning it (`process-output`); 0.4.0 carries a Kafka
/// fetch column by column (`fetched-batch`); 0.5.0 lends `process` its input as a handle
/// (`input-batch`) that the guest reads only if it needs the records.
const VERSION: &str = "0.5.0";

/// A capability interface that is linked only when the job file grants it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    Kafka,
    Files,
}

impl Capability {
    /// The capability an interface name stands for (`kafka`, `files`), in the contract and on
    /// `wasmflow validate --grant`.
    pub fn named(name: &str) -> Option<Capability> {
        match name {
            "kafka" => Some(Capability::Kafka),
            "files" => Some(Capability::Files),
            _ => None,
        }
    }

    fn grant_key(self) -> &'static str {
        match self {
            Capability::Kafka => "grants = { kafka = { bootstrap-servers = \"host:port\" } }",
            Capability::Files => "grants = { files = \"<dir>\" }",
        }
    }
}

/// What a module imports and exports, for `wasmflow validate`.
#[derive(Clone, Debug)]
pub struct ModuleInfo {
    pub path: PathBuf,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    pub capabilities: BTreeSet<Capability>,
    pub size: usize,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
}

/// A checked, compiled and pre-linked operator module.
#[derive(Clone)]
pub struct OperatorModule {
    pub(crate) pre: OperatorModulePre<StoreData>,
    pub(crate) info: ModuleInfo,
}

fn interface_name(import: &str) -> Option<&str> {
    let rest = import.strip_prefix(PACKAGE)?.strip_prefix('/')?;
    let (iface, version) = rest.split_once('@').unwrap_or((rest, ""));
    if version != VERSION {
        return None;
    }
    Some(iface)
}

/// Largest module file read (a component is a few MB; this only stops runaway reads).
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

impl OperatorModule {
    /// Reads, compiles and checks the module at `path`. `granted` are the capabilities the job
    /// file grants this operator; importing any other capability is an error naming the import.
    pub fn load(engine: &Engine, path: &Path, granted: &BTreeSet<Capability>) -> Result<OperatorModule> {
        let bytes = crate::untrusted::read_regular_file(path, MAX_MODULE_BYTES, Symlinks::Follow, "module")
            .map_err(|e| anyhow!("{e:#} (check the `module` path in the job file)"))?;
        Self::from_bytes(engine, path, &bytes, granted)
    }

    /// As [`load`](Self::load), from bytes already read.
    pub fn from_bytes(engine: &Engine, path: &Path, bytes: &[u8], granted: &BTreeSet<Capability>) -> Result<OperatorModule> {
        let file = path.display();
        if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
            bail!("{file}: not a WebAssembly file (no \\0asm header); build operators with `wasmflow build`");
        }
        if wasmparser::Parser::is_core_wasm(bytes) {
            bail!("{file}: is a core wasm module, not a component; build it with `wasmflow build`, which makes the component");
        }
        let (component, origin) = super::cache::load_or_compile(engine.wasmtime(), bytes, super::cache::default_dir().as_deref())
            .map_err(|e| anyhow!("{file}: invalid component: {e:#}"))?;
        let ty = component.component_type();
        let w = engine.wasmtime();
        let mut imports = Vec::new();
        let mut capabilities = BTreeSet::new();
        for (name, _) in ty.imports(w) {
            if let Some(other) = name.strip_prefix(PACKAGE).and_then(|r| r.split_once('@')).map(|(_, v)| v).filter(|v| *v != VERSION) {
                bail!(
                    "{file}: was built against version {other} of the wasmflow contract; this wasmflow speaks {VERSION}: rebuild it with the current guest-sdk (`wasmflow build`)"
                );
            }
            let iface = interface_name(name).ok_or_else(|| {
                anyhow!("{file}: imports `{name}`, which is not part of the wasmflow contract ({PACKAGE}/*@{VERSION}); operators get no other capabilities")
            })?;
            let cap = match iface {
                "input" | "state" | "keyed" | "log" | "clock" | "types" => None,
                other => match Capability::named(other) {
                    Some(cap) => Some(cap),
                    None => bail!("{file}: imports unknown interface `{PACKAGE}/{other}`"),
                },
            };
            if let Some(cap) = cap {
                if !granted.contains(&cap) {
                    bail!("{file}: imports `{name}` but the job file does not grant it; add `{}` to this operator if you trust it", cap.grant_key());
                }
                capabilities.insert(cap);
            }
            imports.push(name.to_string());
        }
        let exports: Vec<String> = ty.exports(w).map(|(name, _)| name.to_string()).collect();
        let expected = format!("{PACKAGE}/operator@{VERSION}");
        if !exports.contains(&expected) {
            bail!(
                "{file}: does not export `{expected}`; is it a wasmflow operator? (exports: {}) — use one of the guest-sdk export macros",
                if exports.is_empty() { "none".to_string() } else { exports.join(", ") }
            );
        }

        let mut linker: Linker<StoreData> = Linker::new(w);
        wit::types::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        super::host::input::add_to_linker(&mut linker, &format!("{PACKAGE}/input@{VERSION}"))?;
        wit::state::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        wit::keyed::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        wit::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        wit::clock::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        if capabilities.contains(&Capability::Files) {
            wit::files::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        }
        if capabilities.contains(&Capability::Kafka) {
            wit::kafka::add_to_linker::<_, HasSelf<_>>(&mut linker, |d| d)?;
        }
        let instance_pre = linker.instantiate_pre(&component).map_err(|e| anyhow!("{file}: does not match the wasmflow contract: {e:#}"))?;
        let pre = OperatorModulePre::new(instance_pre)
            .map_err(|e| anyhow!("{file}: does not implement the operator interface: {e:#}"))
            .context("rebuild it against the current guest-sdk")?;
        let info =
            ModuleInfo { path: path.to_path_buf(), imports, exports, capabilities, size: bytes.len(), from_cache: origin == super::cache::Origin::Cached };
        Ok(OperatorModule { pre, info })
    }

    /// What the module imports and exports.
    pub fn info(&self) -> &ModuleInfo {
        &self.info
    }
}
