//! `wasmflow new`: scaffolds an operator crate that builds and passes its own tests at once.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The kind of operator to scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Source,
    Map,
    Sink,
}

const CARGO: &str = include_str!("templates/Cargo.toml.tmpl");
const SOURCE: &str = include_str!("templates/source.rs.tmpl");
const MAP: &str = include_str!("templates/map.rs.tmpl");
const SINK: &str = include_str!("templates/sink.rs.tmpl");

/// The guest-sdk this binary was built with (the repository's), for the path dependency.
pub fn default_sdk_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("host/ is in the repository").join("guest-sdk")
}

/// Creates `parent/name` with a Cargo.toml and `src/lib.rs` for `kind`; returns its path.
pub fn new_operator(name: &str, kind: Kind, parent: &Path, sdk: &Path) -> Result<PathBuf> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') || name.starts_with(|c: char| c.is_ascii_digit()) {
        bail!("'{name}' is not a valid crate name: use letters, digits, '-' and '_', not starting with a digit");
    }
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists; choose another name or directory", dir.display());
    }
    let sdk = sdk.canonicalize().with_context(|| format!("guest-sdk not found at {}", sdk.display()))?;
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{sdk}}", &sdk.display().to_string());
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO))?;
    let lib = match kind {
        Kind::Source => SOURCE,
        Kind::Map => MAP,
        Kind::Sink => SINK,
    };
    std::fs::write(dir.join("src/lib.rs"), fill(lib))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_crate_for_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, marker) in [(Kind::Source, "export_source!"), (Kind::Map, "export_map!"), (Kind::Sink, "export_sink!")] {
            let name = format!("op-{kind:?}").to_lowercase();
            let path = new_operator(&name, kind, dir.path(), &default_sdk_path()).unwrap();
            let lib = std::fs::read_to_string(path.join("src/lib.rs")).unwrap();
            assert!(lib.contains(marker) && !lib.contains("{{"), "{kind:?}");
            let cargo = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
            assert!(cargo.contains(&format!("name = \"{name}\"")) && cargo.contains("guest-sdk\" }"), "{cargo}");
        }
    }

    #[test]
    fn refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(new_operator("9lives", Kind::Map, dir.path(), &default_sdk_path()).unwrap_err().to_string().contains("not a valid crate name"));
        new_operator("twice", Kind::Map, dir.path(), &default_sdk_path()).unwrap();
        assert!(new_operator("twice", Kind::Map, dir.path(), &default_sdk_path()).unwrap_err().to_string().contains("already exists"));
    }
}
