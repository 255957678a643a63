//! `wasmflow new`: scaffolds an operator crate that builds and passes its own tests at once.
//!
//! The guest SDK is not on crates.io yet, so the scaffold depends on a wasmflow checkout's
//! `guest-sdk` by path. Which checkout is found at run time ([`find_sdk`]), never baked into the
//! binary, and the path is written relative to the new crate, so the two can move together.

use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};

/// The kind of operator to scaffold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Source,
    Map,
    Sink,
    /// A `KeyedProcessFunction`: keyed state and timers.
    Keyed,
}

const CARGO: &str = include_str!("templates/Cargo.toml.tmpl");
const SOURCE: &str = include_str!("templates/source.rs.tmpl");
const MAP: &str = include_str!("templates/map.rs.tmpl");
const SINK: &str = include_str!("templates/sink.rs.tmpl");
const KEYED: &str = include_str!("templates/keyed.rs.tmpl");

/// The environment variable naming the guest-sdk directory.
pub const SDK_ENV: &str = "WASMFLOW_SDK";

/// The guest-sdk to depend on: `explicit` (`--sdk`), else `$WASMFLOW_SDK`, else the `guest-sdk`
/// of the checkout the running `wasmflow` lives in (`<checkout>/target/release/wasmflow`), else
/// one above the current directory.
pub fn find_sdk(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit.map(Path::to_path_buf).or_else(|| std::env::var_os(SDK_ENV).map(PathBuf::from)) {
        return if is_sdk(&dir) { Ok(dir) } else { bail!("{} is not wasmflow's guest-sdk (no Cargo.toml of package wasmflow-guest-sdk there)", dir.display()) };
    }
    let starts: Vec<PathBuf> = [std::env::current_exe().ok(), std::env::current_dir().ok()].into_iter().flatten().collect();
    find_sdk_above(&starts).with_context(|| format!("cannot find wasmflow's guest-sdk: pass --sdk <checkout>/guest-sdk or set {SDK_ENV}"))
}

/// The first `guest-sdk` beside any ancestor of `starts`.
fn find_sdk_above(starts: &[PathBuf]) -> Option<PathBuf> {
    starts.iter().flat_map(|start| start.ancestors()).map(|dir| dir.join("guest-sdk")).find(|dir| is_sdk(dir))
}

fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|toml| toml.contains("name = \"wasmflow-guest-sdk\""))
}

/// `target` as a path relative to `base` (both absolute), or `target` itself when they share no
/// root.
fn relative(target: &Path, base: &Path) -> PathBuf {
    let (t, b): (Vec<Component>, Vec<Component>) = (target.components().collect(), base.components().collect());
    let common = t.iter().zip(&b).take_while(|(x, y)| x == y).count();
    if common == 0 {
        return target.to_path_buf();
    }
    let mut out: PathBuf = b[common..].iter().map(|_| Component::ParentDir).collect();
    out.extend(&t[common..]);
    out
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
    std::fs::create_dir_all(dir.join("src"))?;
    let sdk = relative(&sdk, &dir.canonicalize()?);
    let fill = |t: &str| t.replace("{{name}}", name).replace("{{sdk}}", &sdk.display().to_string());
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO))?;
    let lib = match kind {
        Kind::Source => SOURCE,
        Kind::Map => MAP,
        Kind::Sink => SINK,
        Kind::Keyed => KEYED,
    };
    std::fs::write(dir.join("src/lib.rs"), fill(lib))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_sdk() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().join("guest-sdk")
    }

    #[test]
    fn writes_a_crate_for_each_kind() {
        let dir = tempfile::tempdir().unwrap();
        for (kind, marker) in [(Kind::Source, "export_source!"), (Kind::Map, "export_map!"), (Kind::Sink, "export_sink!"), (Kind::Keyed, "export_keyed!")] {
            let name = format!("op-{kind:?}").to_lowercase();
            let path = new_operator(&name, kind, dir.path(), &repo_sdk()).unwrap();
            let lib = std::fs::read_to_string(path.join("src/lib.rs")).unwrap();
            assert!(lib.contains(marker) && !lib.contains("{{"), "{kind:?}");
            let cargo = std::fs::read_to_string(path.join("Cargo.toml")).unwrap();
            assert!(cargo.contains(&format!("name = \"{name}\"")) && cargo.contains("guest-sdk\" }"), "{cargo}");
            // Relative to the crate, so it resolves to the same SDK from there (and moves along).
            let dep = cargo.lines().find(|l| l.starts_with("wasmflow-guest-sdk")).unwrap();
            let rel = dep.split('"').nth(1).unwrap();
            assert!(rel.starts_with(".."), "{dep}");
            assert_eq!(path.join(rel).canonicalize().unwrap(), repo_sdk().canonicalize().unwrap());
        }
    }

    #[test]
    fn the_sdk_is_found_above_the_binary_or_named_explicitly() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let exe = repo.join("target/release/wasmflow");
        assert_eq!(find_sdk_above(&[exe]), Some(repo.join("guest-sdk")));
        let elsewhere = tempfile::tempdir().unwrap();
        assert_eq!(find_sdk_above(&[elsewhere.path().to_path_buf()]), None);
        let err = find_sdk(Some(elsewhere.path())).unwrap_err().to_string();
        assert!(err.contains("is not wasmflow's guest-sdk"), "{err}");
        assert_eq!(find_sdk(Some(&repo.join("guest-sdk"))).unwrap(), repo.join("guest-sdk"));
    }

    #[test]
    fn relative_paths_climb_to_the_common_ancestor() {
        assert_eq!(relative(Path::new("/a/b/sdk"), Path::new("/a/c/d")), PathBuf::from("../../b/sdk"));
        assert_eq!(relative(Path::new("/a/sdk"), Path::new("/a")), PathBuf::from("sdk"));
    }

    #[test]
    fn refuses_bad_names_and_existing_directories() {
        let dir = tempfile::tempdir().unwrap();
        assert!(new_operator("9lives", Kind::Map, dir.path(), &repo_sdk()).unwrap_err().to_string().contains("not a valid crate name"));
        new_operator("twice", Kind::Map, dir.path(), &repo_sdk()).unwrap();
        assert!(new_operator("twice", Kind::Map, dir.path(), &repo_sdk()).unwrap_err().to_string().contains("already exists"));
    }
}
