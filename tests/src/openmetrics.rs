//! A strict parser of the OpenMetrics text format, for tests that read `GET /metrics` pages.
//!
//! Why our own, not a crate: `prometheus-parse` reads the older Prometheus text format and
//! accepts what OpenMetrics forbids (no `# EOF`, samples of a family split apart, a `_total`
//! suffix on a gauge), and it pulls in regex and chrono. What Prometheus scrapes from us is
//! OpenMetrics, and a test should fail when our page is not what Prometheus's OpenMetrics parser
//! accepts. This checks the rules a page of ours can break: metadata before samples, each
//! family's samples together, sample names that fit the family's type, a unit that ends the
//! name, label syntax and escaping, unique label sets, counters not negative, histogram buckets
//! cumulative up to `+Inf` with `_count` equal to it, and `# EOF` last. (Not covered: exemplars,
//! timestamps, and the types we never write: stateset, gaugehistogram, summary.)

use std::collections::{BTreeMap, BTreeSet};

/// A parsed page: its families by name.
#[derive(Debug, Default)]
pub struct Page {
    pub families: BTreeMap<String, Family>,
}

/// One metric family.
#[derive(Debug, Default)]
pub struct Family {
    pub kind: String,
    pub help: Option<String>,
    pub unit: Option<String>,
    pub samples: Vec<Sample>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The sample's own name (`x_total`, `x_bucket`, …).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Labels as `[("operator", "counter"), ("subtask", "0")]`.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Page {
    /// The value of the sample `name` with exactly `labels`.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want = self::labels(labels);
        self.samples(name).find(|s| s.labels == want).map(|s| s.value)
    }

    /// Every sample called `name`, whatever its family.
    pub fn samples<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.families.values().flat_map(|f| f.samples.iter()).filter(move |s| s.name == name)
    }
}

/// The sample-name suffixes a family of `kind` may use.
fn suffixes(kind: &str) -> Result<&'static [&'static str], String> {
    Ok(match kind {
        "counter" => &["_total", "_created"],
        "gauge" | "unknown" => &[""],
        "info" => &["_info"],
        "histogram" => &["_bucket", "_count", "_sum", "_created"],
        other => return Err(format!("metric type '{other}' is not one this parser accepts")),
    })
}

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if s.chars().all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) => s.parse().map_err(|_| format!("'{s}' is not a number")),
        _ => Err(format!("'{s}' is not a number")),
    }
}

/// `{a="x",b="y"}` starting at `s` (after the name); returns the labels and the rest.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let Some(mut rest) = s.strip_prefix('{') else { return Ok((labels, s)) };
    if let Some(r) = rest.strip_prefix('}') {
        return Ok((labels, r));
    }
    loop {
        let eq = rest.find('=').ok_or("a label without '='")?;
        let name = &rest[..eq];
        if !is_name(name) || name.contains(':') {
            return Err(format!("'{name}' is not a label name"));
        }
        rest = rest[eq + 1..].strip_prefix('"').ok_or("a label value must be quoted")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next().ok_or("an unterminated label value")? {
                (i, '"') => break i,
                (_, '\\') => match chars.next().ok_or("a dangling escape")?.1 {
                    '\\' => value.push('\\'),
                    '"' => value.push('"'),
                    'n' => value.push('\n'),
                    c => return Err(format!("'\\{c}' is not an escape of the format")),
                },
                (_, c) => value.push(c),
            }
        };
        if labels.insert(name.to_string(), value).is_some() {
            return Err(format!("label '{name}' twice"));
        }
        rest = &rest[end + 1..];
        if let Some(r) = rest.strip_prefix(',') {
            rest = r;
        } else if let Some(r) = rest.strip_prefix('}') {
            return Ok((labels, r));
        } else {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// Parses `text`, or says which line breaks which rule.
pub fn parse(text: &str) -> Result<Page, String> {
    let mut page = Page::default();
    let Some(body) = text.strip_suffix("# EOF\n").or_else(|| text.strip_suffix("# EOF")) else { return Err("the page does not end with '# EOF'".into()) };
    // The family whose lines come now; a family's lines must not resume after another's.
    let mut current: Option<String> = None;
    let mut closed: BTreeSet<String> = BTreeSet::new();
    let mut seen_samples: BTreeSet<(String, BTreeMap<String, String>)> = BTreeSet::new();
    for (n, line) in body.lines().enumerate() {
        let fail = |why: String| format!("line {}: {why}: {line:?}", n + 1);
        let mut enter = |name: &str, page: &mut Page| -> Result<(), String> {
            if current.as_deref() != Some(name) {
                if closed.contains(name) {
                    return Err(format!("family '{name}' resumes after another family"));
                }
                if let Some(c) = current.replace(name.to_string()) {
                    closed.insert(c);
                }
                page.families.entry(name.to_string()).or_default();
            }
            Ok(())
        };
        if let Some(meta) = line.strip_prefix("# ") {
            let mut parts = meta.splitn(3, ' ');
            let (keyword, name, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            if !is_name(name) {
                return Err(fail(format!("'{name}' is not a metric name")));
            }
            enter(name, &mut page).map_err(&fail)?;
            let family = page.families.get_mut(name).expect("entered");
            if !family.samples.is_empty() {
                return Err(fail("metadata after the family's samples".into()));
            }
            match keyword {
                "TYPE" => {
                    suffixes(rest).map_err(&fail)?;
                    family.kind = rest.to_string();
                }
                "HELP" => family.help = Some(rest.to_string()),
                "UNIT" => {
                    if !name.ends_with(&format!("_{rest}")) {
                        return Err(fail(format!("the name of a family with unit '{rest}' must end with '_{rest}'")));
                    }
                    family.unit = Some(rest.to_string());
                }
                k => return Err(fail(format!("unknown metadata '{k}'"))),
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            return Err(fail("not a metadata line, not a sample".into()));
        }
        let name_end = line.find(['{', ' ']).ok_or_else(|| fail("a sample without a value".into()))?;
        let name = &line[..name_end];
        let (labels, rest) = parse_labels(&line[name_end..]).map_err(&fail)?;
        let value_text = rest.strip_prefix(' ').ok_or_else(|| fail("expected one space before the value".into()))?;
        if value_text.contains(' ') {
            return Err(fail("timestamps and exemplars are not expected".into()));
        }
        let value = number(value_text).map_err(&fail)?;
        // The family: the one in progress, if the name is one of its sample names.
        let family_name = current.clone().ok_or_else(|| fail("a sample before any # TYPE".into()))?;
        let family = page.families.get_mut(&family_name).expect("entered");
        let suffix = name.strip_prefix(family_name.as_str()).ok_or_else(|| fail(format!("sample '{name}' outside its family '{family_name}'")))?;
        if family.kind.is_empty() {
            return Err(fail("a sample before its family's # TYPE".into()));
        }
        if !suffixes(&family.kind).map_err(&fail)?.contains(&suffix) {
            return Err(fail(format!("'{name}' is not a sample name of {} '{family_name}'", family.kind)));
        }
        if family.kind == "counter" && suffix == "_total" && (value.is_nan() || value < 0.0) {
            return Err(fail("a counter is never negative".into()));
        }
        if !seen_samples.insert((name.to_string(), labels.clone())) {
            return Err(fail("the same sample twice".into()));
        }
        family.samples.push(Sample { name: name.to_string(), labels, value });
    }
    for (name, family) in &page.families {
        if family.kind == "histogram" {
            check_histogram(name, family)?;
        }
    }
    Ok(page)
}

/// Buckets cumulative, ending at `+Inf`, whose count `_count` repeats.
fn check_histogram(name: &str, family: &Family) -> Result<(), String> {
    let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
    for s in family.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
        let mut labels = s.labels.clone();
        let le = labels.remove("le").ok_or_else(|| format!("{name}: a bucket without 'le'"))?;
        series.entry(labels).or_default().push((number(&le)?, s.value));
    }
    for (labels, buckets) in series {
        let mut last = (f64::NEG_INFINITY, 0.0);
        for &(le, count) in &buckets {
            if le <= last.0 || count < last.1 {
                return Err(format!("{name}{labels:?}: buckets must rise in 'le' and never fall in count"));
            }
            last = (le, count);
        }
        if last.0 != f64::INFINITY {
            return Err(format!("{name}{labels:?}: the last bucket must be le=\"+Inf\""));
        }
        let count = family.samples.iter().find(|s| s.name == format!("{name}_count") && s.labels == labels).map(|s| s.value);
        if count != Some(last.1) {
            return Err(format!("{name}{labels:?}: _count {count:?} is not the +Inf bucket's {}", last.1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_good_page_parses() {
        let page = parse(concat!(
            "# HELP a_total_x_seconds Time.\n",
            "# TYPE a_total_x_seconds counter\n",
            "# UNIT a_total_x_seconds seconds\n",
            "a_total_x_seconds_total{op=\"q\\\"\\\\\\n\",i=\"0\"} 1.5\n",
            "# TYPE h histogram\n",
            "h_sum 3.0\n",
            "h_count 2\n",
            "h_bucket{le=\"1.0\"} 1\n",
            "h_bucket{le=\"+Inf\"} 2\n",
            "# TYPE j info\n",
            "j_info{name=\"x\"} 1\n",
            "# EOF\n"
        ))
        .unwrap();
        assert_eq!(page.value("a_total_x_seconds_total", &[("op", "q\"\\\n"), ("i", "0")]), Some(1.5));
        assert_eq!(page.families["h"].kind, "histogram");
        assert_eq!(page.value("j_info", &[("name", "x")]), Some(1.0));
    }

    #[test]
    fn broken_pages_are_refused() {
        for (page, why) in [
            ("# TYPE a counter\na_total 1\n", "does not end with '# EOF'"),
            ("# TYPE a gauge\na_total 1\n# EOF\n", "not a sample name of gauge"),
            ("# TYPE a counter\na_total -1\n# EOF\n", "never negative"),
            ("# TYPE a_bytes gauge\n# UNIT a_bytes seconds\na_bytes 1\n# EOF\n", "must end with '_seconds'"),
            ("# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n# EOF\n", "outside its family"),
            ("# TYPE a gauge\na 1\n# TYPE b gauge\n# HELP a x\n# EOF\n", "resumes after another family"),
            ("# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n# EOF\n", "label 'x' twice"),
            ("# TYPE a gauge\na{x=\"1\"} 1\na{x=\"1\"} 2\n# EOF\n", "the same sample twice"),
            ("# TYPE a gauge\na{x=1} 1\n# EOF\n", "must be quoted"),
            ("# TYPE a gauge\na{x=\"\\t\"} 1\n# EOF\n", "not an escape"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n# EOF\n", "never fall"),
            ("# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_count 2\n# EOF\n", "+Inf"),
            ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 3\n# EOF\n", "_count"),
            ("a 1\n# EOF\n", "before any # TYPE"),
        ] {
            let e = parse(page).expect_err(page);
            assert!(e.contains(why), "{page:?}: {e}");
        }
    }
}
