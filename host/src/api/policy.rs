//! Where a savepoint requested over the API may be written.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};

/// Below `root` (`[savepoints] dir`), or anywhere the job's user can write when the job file
/// says `allow-any-target = true`: whoever holds the token must not make the job write (as its
/// user) into directories the caller chooses.
#[derive(Clone, Debug)]
pub struct SavepointPolicy {
    pub root: PathBuf,
    pub allow_any_target: bool,
}

impl SavepointPolicy {
    /// The target, resolved, if the policy allows it. The target must exist (the CLI creates
    /// it, as the user who asks): symlinks and `..` are resolved before the check.
    pub fn check(&self, target: &Path) -> Result<PathBuf> {
        let resolved = target.canonicalize().map_err(|e| anyhow!("savepoint target {}: {e}", target.display()))?;
        if self.allow_any_target {
            return Ok(resolved);
        }
        let root = self.root.canonicalize().unwrap_or_else(|_| self.root.clone());
        if !resolved.starts_with(&root) {
            bail!(
                "savepoint target {} is outside the job's savepoint directory {}; use a directory inside it, or set [savepoints] allow-any-target = true in the job file",
                resolved.display(),
                root.display()
            );
        }
        Ok(resolved)
    }
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
        let policy = SavepointPolicy { root: root.clone(), allow_any_target: false };
        assert!(policy.check(&root.join("mine")).is_ok());
        let e = format!("{:#}", policy.check(&root.join("../elsewhere")).unwrap_err());
        assert!(e.contains("is outside the job's savepoint directory") && e.contains("allow-any-target = true"), "{e}");
        let link = root.join("link");
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &link).unwrap();
        assert!(policy.check(&link).is_err(), "a symlink out of the root is resolved first");
        let open = SavepointPolicy { allow_any_target: true, ..policy };
        assert!(open.check(&dir.path().join("elsewhere")).is_ok());
    }
}
