//! Where a savepoint requested over the API may be written.

use std::path::Path;

use anyhow::{Result, anyhow, bail};

use crate::checkpoint::Location;

/// Below `root` (`[savepoints] dir`), or anywhere the job's user can write when the job file
/// says `allow-any-target = true`: whoever holds the token must not make the job write (as its
/// user, or with its object-store credentials) where the caller chooses.
#[derive(Clone, Debug)]
pub struct SavepointPolicy {
    pub root: Location,
    pub allow_any_target: bool,
}

impl SavepointPolicy {
    /// The target, resolved, if the policy allows it. A local target must exist (the CLI creates
    /// it, as the user who asks): symlinks and `..` are resolved before the check. An
    /// object-store prefix has no `..` (refused when parsed) and is compared segment-wise.
    pub fn check(&self, target: &Location) -> Result<Location> {
        let resolved = match target {
            Location::Local(dir) => Location::Local(dir.canonicalize().map_err(|e| anyhow!("savepoint target {}: {e}", dir.display()))?),
            Location::Object(_) => target.clone(),
        };
        if self.allow_any_target {
            return Ok(resolved);
        }
        let inside = match (&self.root, &resolved) {
            (Location::Local(root), Location::Local(dir)) => dir.starts_with(root.canonicalize().unwrap_or_else(|_| root.clone())),
            (Location::Object(root), Location::Object(url)) => root.contains(url),
            _ => false,
        };
        if !inside {
            bail!(
                "savepoint target {resolved} is outside the job's savepoint directory {}; use a location inside it, or set [savepoints] allow-any-target = true in the job file",
                self.root
            );
        }
        Ok(resolved)
    }

    /// A local root exists before the job starts (the default target of a request).
    pub fn create_root(&self) -> Result<()> {
        if let Location::Local(dir) = &self.root {
            create_dir(dir)?;
        }
        Ok(())
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create savepoint directory {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savepoint_targets_stay_below_the_root_unless_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("savepoints");
        std::fs::create_dir_all(root.join("mine")).unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        let local = |p: std::path::PathBuf| Location::Local(p);
        let policy = SavepointPolicy { root: local(root.clone()), allow_any_target: false };
        assert!(policy.check(&local(root.join("mine"))).is_ok());
        let e = format!("{:#}", policy.check(&local(root.join("../elsewhere"))).unwrap_err());
        assert!(e.contains("is outside the job's savepoint directory") && e.contains("allow-any-target = true"), "{e}");
        let link = root.join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(policy.check(&local(link)).is_err(), "a symlink out of the root is resolved first");
        assert!(policy.check(&"s3://b/savepoints".parse().unwrap()).is_err(), "an object store is not below a local root");
        let open = SavepointPolicy { allow_any_target: true, ..policy };
        assert!(open.check(&local(dir.path().join("elsewhere"))).is_ok());
    }

    #[test]
    fn object_store_targets_stay_below_the_root_prefix() {
        let policy = SavepointPolicy { root: "s3://b/savepoints".parse().unwrap(), allow_any_target: false };
        assert!(policy.check(&"s3://b/savepoints/nightly".parse().unwrap()).is_ok());
        for outside in ["s3://b/savepoints-other", "s3://c/savepoints", "s3://b"] {
            let e = format!("{:#}", policy.check(&outside.parse().unwrap()).unwrap_err());
            assert!(e.starts_with(&format!("savepoint target {outside} is outside")), "{e}");
        }
    }
}
