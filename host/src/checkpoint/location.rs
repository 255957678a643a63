//! Where a checkpoint, a savepoint or a checkpoint storage lives: a local directory or a prefix
//! in an object store (`s3://bucket/prefix`).
//!
//! Job files, `--from-savepoint`, savepoint targets and the API all take the same spelling: a
//! path (relative to the job file where a job file is involved), `file:///abs/path`, or
//! `s3://bucket/prefix`.
//!
//! ```
//! use wasmflow_host::checkpoint::Location;
//! let sp: Location = "s3://flows/savepoints".parse().unwrap();
//! assert_eq!(sp.join("savepoint-7").to_string(), "s3://flows/savepoints/savepoint-7");
//! let local: Location = "file:///var/lib/wasmflow".parse().unwrap();
//! assert_eq!(local, Location::Local("/var/lib/wasmflow".into()));
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

/// A local directory or an object-store prefix.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Location {
    Local(PathBuf),
    Object(ObjectUrl),
}

/// `s3://bucket/prefix`: a bucket and a prefix of `/`-separated segments (no empty, `.` or `..`
/// segment, so a prefix can only name what is below it).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ObjectUrl {
    pub scheme: String,
    pub bucket: String,
    /// Segments below the bucket, joined by `/`; empty for the bucket's root.
    pub prefix: String,
}

/// Object-store schemes this build reaches.
const SCHEMES: &[&str] = &["s3"];

impl ObjectUrl {
    /// The URL of the store itself (scheme and bucket), which the client is built for.
    pub fn store_url(&self) -> String {
        format!("{}://{}", self.scheme, self.bucket)
    }

    /// This prefix extended by `name` (one or more `/`-separated segments).
    pub fn join(&self, name: &str) -> ObjectUrl {
        let name = name.trim_matches('/');
        let prefix = if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) };
        ObjectUrl { prefix, ..self.clone() }
    }

    /// Whether `other` is this prefix or below it (segment-wise: `a/b` is not below `a/bc`).
    pub fn contains(&self, other: &ObjectUrl) -> bool {
        self.scheme == other.scheme
            && self.bucket == other.bucket
            && (self.prefix.is_empty() || other.prefix == self.prefix || other.prefix.starts_with(&format!("{}/", self.prefix)))
    }
}

impl Location {
    /// This location extended by `name` (a directory or a prefix segment).
    pub fn join(&self, name: &str) -> Location {
        match self {
            Location::Local(dir) => Location::Local(dir.join(name)),
            Location::Object(url) => Location::Object(url.join(name)),
        }
    }

    /// A path as written in a job file: relative ones are resolved against `base` (the job
    /// file's directory); URLs are taken as they are.
    pub fn resolve(given: &Path, base: &Path) -> Result<Location> {
        match given.to_str().map(str::parse::<Location>) {
            Some(Ok(Location::Local(p))) if p.is_relative() => Ok(Location::Local(base.join(p))),
            Some(parsed) => parsed,
            None if given.is_relative() => Ok(Location::Local(base.join(given))),
            None => Ok(Location::Local(given.to_path_buf())),
        }
    }

    /// The local directory, if this is one.
    pub fn as_local(&self) -> Option<&Path> {
        match self {
            Location::Local(p) => Some(p),
            Location::Object(_) => None,
        }
    }
}

impl FromStr for Location {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Location> {
        let Some((scheme, rest)) = s.split_once("://") else { return Ok(Location::Local(PathBuf::from(s))) };
        if scheme == "file" {
            if !rest.starts_with('/') {
                bail!("{s}: a file:// URL names an absolute path (file:///var/lib/wasmflow); write a relative path without file://");
            }
            return Ok(Location::Local(PathBuf::from(rest)));
        }
        if !SCHEMES.contains(&scheme) {
            bail!("{s}: unknown storage scheme '{scheme}://'; use a local path, file:///abs/path or s3://bucket/prefix");
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{s}: no bucket; write {scheme}://bucket/prefix");
        }
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() && prefix.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
            bail!("{s}: the prefix has an empty, '.' or '..' segment; write {scheme}://{bucket}/a/b");
        }
        Ok(Location::Object(ObjectUrl { scheme: scheme.into(), bucket: bucket.into(), prefix: prefix.into() }))
    }
}

impl fmt::Display for ObjectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() { write!(f, "{}://{}", self.scheme, self.bucket) } else { write!(f, "{}://{}/{}", self.scheme, self.bucket, self.prefix) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::Object(u) => u.fmt(f),
        }
    }
}

impl From<Location> for String {
    fn from(l: Location) -> String {
        l.to_string()
    }
}

impl TryFrom<String> for Location {
    type Error = anyhow::Error;

    fn try_from(s: String) -> Result<Location> {
        s.parse()
    }
}

impl From<PathBuf> for Location {
    fn from(p: PathBuf) -> Location {
        Location::Local(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_file_and_s3_urls_and_refuses_the_rest() {
        assert_eq!("chk".parse::<Location>().unwrap(), Location::Local("chk".into()));
        let u: Location = "s3://b/x/y/".parse().unwrap();
        assert_eq!(u.to_string(), "s3://b/x/y");
        assert_eq!("s3://b".parse::<Location>().unwrap().join("chk-1").to_string(), "s3://b/chk-1");
        for (bad, why) in [
            ("gs://b/x", "unknown storage scheme 'gs://'"),
            ("s3:///x", "no bucket"),
            ("s3://b/x/../y", "'..' segment"),
            ("s3://b//y", "empty"),
            ("file://rel/x", "absolute path"),
        ] {
            let e = bad.parse::<Location>().unwrap_err().to_string();
            assert!(e.starts_with(bad) && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn containment_is_by_segment() {
        let root = match "s3://b/sp".parse::<Location>().unwrap() {
            Location::Object(u) => u,
            _ => unreachable!(),
        };
        assert!(root.contains(&root.join("a/b")));
        assert!(root.contains(&root));
        let sibling = ObjectUrl { prefix: "spx/a".into(), ..root.clone() };
        assert!(!root.contains(&sibling));
        let other_bucket = ObjectUrl { bucket: "c".into(), ..root.join("a") };
        assert!(!root.contains(&other_bucket));
    }

    #[test]
    fn relative_paths_resolve_against_the_job_file_and_round_trip_as_strings() {
        let base = Path::new("/jobs");
        assert_eq!(Location::resolve(Path::new("chk"), base).unwrap(), Location::Local("/jobs/chk".into()));
        assert_eq!(Location::resolve(Path::new("s3://b/p"), base).unwrap().to_string(), "s3://b/p");
        let json = serde_json::to_string(&Location::resolve(Path::new("s3://b/p"), base).unwrap()).unwrap();
        assert_eq!(json, "\"s3://b/p\"");
        assert_eq!(serde_json::from_str::<Location>("\"/x/savepoint-3\"").unwrap(), Location::Local("/x/savepoint-3".into()));
    }
}
