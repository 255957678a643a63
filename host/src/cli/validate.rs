//! `wasmflow validate MODULE.wasm`.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, bail};

use crate::engine::{Capability, Engine, OperatorModule};

pub fn validate(module: &Path, grants: &[String]) -> Result<()> {
    let mut granted = BTreeSet::new();
    for g in grants {
        granted.insert(match g.as_str() {
            "kafka" => Capability::Kafka,
            "files" => Capability::Files,
            other => bail!("unknown capability '{other}' in --grant (known: kafka, files)"),
        });
    }
    let engine = Engine::new()?;
    let m = OperatorModule::load(&engine, module, &granted)?;
    let info = m.info();
    let origin = if info.from_cache { "compiled code from the cache" } else { "compiled" };
    println!("{}: valid wasmflow operator ({} bytes, {origin})", module.display(), info.size);
    println!("exports:");
    for e in &info.exports {
        println!("  {e}");
    }
    println!("imports:");
    for i in &info.imports {
        println!("  {i}");
    }
    Ok(())
}
