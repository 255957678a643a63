//! Overrides of job-file values: `wasmflow run JOB.toml --set checkpoints.interval-ms=500` and
//! `WASMFLOW__CHECKPOINTS__INTERVAL_MS=500` (docs/cli.md, overrides).
//!
//! An override is a path into the job file's TOML and a value. It is applied to the parsed TOML
//! *before* the job is deserialized, so every check and message of a job file applies to the
//! overridden value too; an error caused by an override names it.
//!
//! Paths are dotted keys (`limits.memory-mb`, quoted segments for keys with dots:
//! `operators.events.config.properties."group.id"`). An array is addressed by an element's `id`
//! (`operators.counter.parallelism`) or by its index (`edges.0.partitioning`). Missing tables
//! are created (`checkpoints.interval-ms` on a job without `[checkpoints]`); array elements are not.
//!
//! Values are TOML values (`500`, `true`, `"text"`, `[1, 2]`, `{ count = 10 }`); anything that
//! does not parse as one is taken as a string (`job.name=demo`, `...bootstrap-servers=host:9092`).

use std::fmt;

use anyhow::{Result, anyhow, bail};

/// The prefix of override variables: `WASMFLOW__` then the path, `__` between segments.
pub const ENV_PREFIX: &str = "WASMFLOW__";

/// Where an override came from: it is named so in every error it causes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `--set KEY=VALUE`
    Set(String),
    /// An environment variable `WASMFLOW__...=VALUE`.
    Env(String),
}

/// One override: a path into the job file and the value to put there.
#[derive(Clone, Debug, PartialEq)]
pub struct Override {
    /// Key path, one segment per table or array level.
    pub path: Vec<String>,
    /// The value.
    pub value: toml::Value,
    /// Where it came from (for messages).
    pub origin: Origin,
}

impl fmt::Display for Override {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::Set(arg) => write!(f, "--set {arg}"),
            Origin::Env(var) => write!(f, "environment variable {var}"),
        }
    }
}

impl Override {
    /// Parses `KEY=VALUE` as given to `--set`.
    pub fn parse_set(arg: &str) -> Result<Override> {
        let Some(eq) = split_at_equals(arg) else { bail!("--set takes KEY=VALUE (e.g. checkpoints.interval-ms=500), got '{arg}'") };
        let (key, raw) = (arg[..eq].trim(), &arg[eq + 1..]);
        let path = parse_key(key).map_err(|e| anyhow!("--set {arg}: {e}"))?;
        Ok(Override { path, value: parse_value(raw), origin: Origin::Set(arg.to_string()) })
    }

    /// An override from environment variable `name` (which starts with [`ENV_PREFIX`]), or
    /// `None` for a name without the prefix. `__` separates segments; segments are lower-cased
    /// and `_` becomes `-`, the job file's kebab-case (`WASMFLOW__JOB__BATCH_SIZE` is
    /// `job.batch-size`). Keys are matched ignoring case and `-`/`_`, so a key or operator id
    /// written with `_` or capitals in the file is found too.
    pub fn from_env_var(name: &str, value: &str) -> Option<Result<Override>> {
        let rest = name.strip_prefix(ENV_PREFIX)?;
        let origin = Origin::Env(name.to_string());
        let path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase().replace('_', "-")).collect();
        if path.iter().any(String::is_empty) {
            return Some(Err(anyhow!("environment variable {name}: empty key segment (write WASMFLOW__TABLE__KEY, `__` between segments)")));
        }
        Some(Ok(Override { path, value: parse_value(value), origin }))
    }

    fn is_env(&self) -> bool {
        matches!(self.origin, Origin::Env(_))
    }

    /// Puts the value into `doc`. An error names the override and where its path went wrong.
    pub fn apply(&self, doc: &mut toml::Table) -> Result<()> {
        let (path, loose) = (&self.path, self.is_env());
        let mut table = doc;
        let mut i = 0;
        while i + 1 < path.len() {
            let key = find_key(table, &path[i], loose).unwrap_or_else(|| path[i].clone());
            let entry = table.entry(key).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            i += 1;
            table = match entry {
                toml::Value::Table(t) => t,
                toml::Value::Array(items) => {
                    // The next segment picks an element: by `id`, else by index.
                    let next = &path[i];
                    let index = element(items, next, loose).ok_or_else(|| {
                        let ids: Vec<&str> = items.iter().filter_map(|v| v.get("id").and_then(toml::Value::as_str)).collect();
                        let known = if ids.is_empty() { format!("indexes 0 to {}", items.len() as i64 - 1) } else { format!("ids: {}", ids.join(", ")) };
                        anyhow!("{self}: {} has no element '{next}' ({known})", path[..i].join("."))
                    })?;
                    i += 1;
                    if i == path.len() {
                        bail!("{self}: {} is an array element; set one of its keys ({}.KEY)", path.join("."), path.join("."));
                    }
                    match &mut items[index] {
                        toml::Value::Table(t) => t,
                        other => bail!("{self}: {} is {}, not a table", path[..i].join("."), a_type(other)),
                    }
                }
                other => bail!("{self}: {} is {}, not a table", path[..i].join("."), a_type(other)),
            };
        }
        let key = find_key(table, &path[i], loose).unwrap_or_else(|| path[i].clone());
        table.insert(key, self.value.clone());
        Ok(())
    }
}

/// The overrides of one command: the environment's, then `--set`'s, applied in that order (so a
/// later one wins: file < environment < `--set`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides(pub Vec<Override>);

impl Overrides {
    /// No overrides.
    pub fn none() -> Overrides {
        Overrides::default()
    }

    /// The `WASMFLOW__*` variables of `vars` (in name order), then `sets`.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>, sets: &[Override]) -> Result<Overrides> {
        let mut vars: Vec<(String, String)> = vars.into_iter().filter(|(name, _)| name.starts_with(ENV_PREFIX)).collect();
        vars.sort();
        let mut all = vars.iter().filter_map(|(name, value)| Override::from_env_var(name, value)).collect::<Result<Vec<_>>>()?;
        all.extend(sets.iter().cloned());
        Ok(Overrides(all))
    }

    /// This process's environment and `sets`.
    pub fn from_env_and(sets: &[Override]) -> Result<Overrides> {
        // A variable whose value is not UTF-8 cannot be a job-file value.
        let vars = std::env::vars_os().filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        Self::new(vars, sets)
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Applies them all, in order.
    pub fn apply(&self, doc: &mut toml::Table) -> Result<()> {
        self.0.iter().try_for_each(|o| o.apply(doc))
    }
}

/// Index of the first `=` outside double or single quotes.
fn split_at_equals(arg: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in arg.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '=') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A dotted TOML key (`a.b."c.d"`) as its segments, parsed by toml itself.
fn parse_key(key: &str) -> Result<Vec<String>> {
    if key.is_empty() {
        bail!("empty key");
    }
    let doc: toml::Table =
        toml::from_str(&format!("{key} = 0")).map_err(|_| anyhow!("'{key}' is not a dotted key (quote a segment with dots or spaces: a.\"b.c\")"))?;
    let mut path = Vec::new();
    let mut value = toml::Value::Table(doc);
    while let toml::Value::Table(t) = value {
        let mut entries = t.into_iter();
        let (k, v) = entries.next().ok_or_else(|| anyhow!("'{key}' is not a dotted key"))?;
        path.push(k);
        value = v;
    }
    Ok(path)
}

/// A TOML value, else the text as a string.
fn parse_value(raw: &str) -> toml::Value {
    let trimmed = raw.trim();
    match toml::from_str::<toml::Table>(&format!("v = {trimmed}")) {
        Ok(mut t) if t.len() == 1 && !trimmed.is_empty() => t.remove("v").expect("one key"),
        _ => toml::Value::String(raw.to_string()),
    }
}

/// The key of `table` that `segment` names: itself, or (from the environment) one equal to it
/// ignoring case and `-`/`_`.
fn find_key(table: &toml::Table, segment: &str, loose: bool) -> Option<String> {
    if table.contains_key(segment) {
        return Some(segment.to_string());
    }
    loose.then(|| table.keys().find(|k| same_loosely(k, segment)).cloned()).flatten()
}

fn same_loosely(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    norm(a) == norm(b)
}

/// The element of `items` with `id = segment`, else at index `segment`.
fn element(items: &[toml::Value], segment: &str, loose: bool) -> Option<usize> {
    let id_of = |v: &toml::Value| v.get("id").and_then(toml::Value::as_str).map(str::to_string);
    items
        .iter()
        .position(|v| id_of(v).as_deref() == Some(segment))
        .or_else(|| if loose { items.iter().position(|v| id_of(v).is_some_and(|id| same_loosely(&id, segment))) } else { None })
        .or_else(|| segment.parse::<usize>().ok().filter(|&i| i < items.len()))
}

fn a_type(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}
