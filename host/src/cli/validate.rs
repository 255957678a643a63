//! `wasmflow validate JOB.toml` and `wasmflow validate MODULE.wasm`: a file ending in `.toml` is
//! a job file, anything else a component.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::json;

use super::output::print_json;
use super::{Exit, JobOverrides};
use crate::engine::{Capability, Engine, OperatorModule};

pub fn validate(file: &Path, grants: &[String], overrides: &JobOverrides, json: bool) -> Result<()> {
    if file.extension().is_some_and(|e| e.eq_ignore_ascii_case("toml")) {
        if !grants.is_empty() {
            return Err(Exit::Usage.wrap(anyhow!("--grant is for modules; a job file grants capabilities itself (grants = {{ ... }})")));
        }
        job(file, overrides, json)
    } else {
        if !overrides.set.is_empty() {
            return Err(Exit::Usage.wrap(anyhow!("--set is for job files (*.toml)")));
        }
        module(file, grants, json)
    }
}

/// Schema first (every problem, each naming its key), then the job's own checks.
fn job(file: &Path, overrides: &JobOverrides, json: bool) -> Result<()> {
    let (problems, job) = crate::job::schema::validate_job_file(file, &overrides.overrides()?);
    if json {
        let mut out = json!({ "file": file, "kind": "job", "valid": problems.is_empty(), "errors": problems });
        if let Some(job) = &job {
            out["job"] = json!(job.job.name);
            out["operators"] = job.operators.iter().map(|o| json!({ "id": o.id, "parallelism": o.parallelism, "module": job.resolve(&o.module) })).collect();
        }
        print_json(&out);
    }
    match job {
        Some(job) if problems.is_empty() => {
            if !json {
                let ops: Vec<String> = job.operators.iter().map(|o| format!("{} (x{})", o.id, o.parallelism)).collect();
                println!("{}: valid job '{}': {}", file.display(), job.job.name.as_deref().unwrap_or("unnamed"), ops.join(", "));
            }
            Ok(())
        }
        _ => {
            let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
            Err(Exit::InvalidInput.wrap(anyhow!(
                "{}: {} problem{}:\n  {}",
                file.display(),
                list.len(),
                if list.len() == 1 { "" } else { "s" },
                list.join("\n  ")
            )))
        }
    }
}

fn module(module: &Path, grants: &[String], json: bool) -> Result<()> {
    let mut granted = BTreeSet::new();
    for g in grants {
        let Some(cap) = Capability::named(g) else {
            return Err(Exit::Usage.wrap(anyhow!("unknown capability '{g}' in --grant (known: kafka, files)")));
        };
        granted.insert(cap);
    }
    let engine = Engine::new()?;
    let m = match OperatorModule::load(&engine, module, &granted) {
        Ok(m) => m,
        Err(e) => {
            if json {
                print_json(&json!({ "file": module, "kind": "module", "valid": false, "errors": [{ "kind": "module", "message": format!("{e:#}") }] }));
            }
            return Err(Exit::InvalidInput.wrap(e));
        }
    };
    let info = m.info();
    if json {
        print_json(&json!({
            "file": module, "kind": "module", "valid": true, "errors": [], "size": info.size,
            "from_cache": info.from_cache, "exports": info.exports, "imports": info.imports,
        }));
        return Ok(());
    }
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
