//! `wasmflow inspect`: what a checkpoint or savepoint holds, and what each subtask would
//! restore at another parallelism — without running anything.
//!
//! The JSON view (schema documented in the README):
//!
//! ```json
//! { "path": "...", "checkpoint_id": 7, "timestamp": 1764000000000, "kind": "savepoint",
//!   "job_name": "demo", "format_version": 1,
//!   "operators": { "counter": { "parallelism": 3, "subtasks": [
//!       { "index": 0, "file": "counter/0.state", "size": 120,
//!         "states": [ { "name": "count", "mode": "SPLIT_DISTRIBUTE", "type": "u64",
//!                       "entries": [ 325 ] } ] } ] } } }
//! ```
//!
//! Entries are decoded to JSON where the SDK recorded the type's format; otherwise each entry is
//! `{"size": N, "hex": "..."}`. Broadcast entries are `{"key": ..., "value": ...}`. With a
//! parallelism preview, `"restored_from"` replaces `"file"` and lists the old subtasks whose
//! state the new subtask receives, and `"segments"` gives each piece's origin.
//!
//! A keyed operator's subtask also has `"keyed"`: its key-group range, its keyed states and, per
//! key group, every entry (`{"state", "key", "value"}`; keys as text when they are UTF-8) and
//! timer (`{"domain", "timestamp", "key"}`). In a preview each new subtask shows the
//! `"key_groups"` it would own and the old subtasks they come from (`"keyed_from"`).

mod decode;

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use wasmflow_state::{KeyGroupRange, KeyedSnapshot, KeyedValue, Mode, RestoredValue, StateValue, SubtaskSnapshot, TimeDomain, TypeInfo, redistribute};

use crate::checkpoint::LoadedCheckpoint;

pub use decode::decode;

fn entry(ty: &TypeInfo, bytes: &[u8]) -> Value {
    decode(&ty.schema, bytes).unwrap_or_else(|| json!({ "size": bytes.len(), "hex": hex::encode(bytes) }))
}

fn list_entries(ty: &TypeInfo, items: &[Vec<u8>]) -> Vec<Value> {
    items.iter().map(|b| entry(ty, b)).collect()
}

fn map_entries(kt: &TypeInfo, vt: Option<&TypeInfo>, items: &[(Vec<u8>, Vec<u8>)]) -> Vec<Value> {
    let vt = vt.cloned().unwrap_or_default();
    items.iter().map(|(k, v)| json!({ "key": entry(kt, k), "value": entry(&vt, v) })).collect()
}

fn state_json(name: &str, mode: Mode, ty: &TypeInfo, value_type: Option<&TypeInfo>, entries: Vec<Value>) -> Value {
    let type_name = match value_type {
        Some(v) => format!("{} -> {}", ty.type_name, v.type_name),
        None => ty.type_name.clone(),
    };
    json!({ "name": name, "mode": mode.to_string(), "type": type_name, "entries": entries })
}

fn snapshot_states(s: &SubtaskSnapshot) -> Vec<Value> {
    s.states
        .iter()
        .map(|st| {
            let entries = match &st.value {
                StateValue::List(items) => list_entries(&st.element_type, items),
                StateValue::Map(items) => map_entries(&st.element_type, st.value_type.as_ref(), items),
            };
            state_json(&st.name, st.mode, &st.element_type, st.value_type.as_ref(), entries)
        })
        .collect()
}

/// A record key as JSON: text if it is UTF-8, else hex.
fn key_json(key: &[u8]) -> Value {
    match std::str::from_utf8(key) {
        Ok(s) => json!(s),
        Err(_) => json!({ "hex": hex::encode(key) }),
    }
}

fn range_json(r: KeyGroupRange) -> Value {
    json!({ "start": r.start, "end": r.end })
}

/// One subtask's keyed state, by key group, decoded.
fn keyed_json(k: &KeyedSnapshot) -> Value {
    let states: Vec<Value> = k
        .states
        .iter()
        .map(|d| {
            let ty = match &d.user_key_type {
                Some(uk) => format!("{} -> {}", uk.type_name, d.value_type.type_name),
                None => d.value_type.type_name.clone(),
            };
            json!({ "name": d.name, "kind": d.kind.to_string(), "type": ty, "ttl_ms": d.ttl_ms })
        })
        .collect();
    let groups: Vec<Value> = k
        .groups
        .iter()
        .map(|g| {
            // Decoded here, sorted by state and key for a stable view (stored in map order).
            let mut decoded = match g.decode_entries() {
                Ok(d) => d,
                Err(e) => return json!({ "key_group": g.key_group, "error": e.to_string() }),
            };
            decoded.sort_by(|a, b| (a.state, &a.key).cmp(&(b.state, &b.key)));
            let entries: Vec<Value> = decoded
                .iter()
                .map(|e| {
                    let d = &k.states[e.state as usize];
                    let value = match &e.value {
                        KeyedValue::Value(v, _) => entry(&d.value_type, v),
                        KeyedValue::List(items) => json!(list_entries(&d.value_type, items)),
                        KeyedValue::Map(m) => {
                            let pairs: Vec<(Vec<u8>, Vec<u8>)> = m.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect();
                            json!(map_entries(d.user_key_type.as_ref().unwrap_or(&TypeInfo::default()), Some(&d.value_type), &pairs))
                        }
                        // Only increments hold deletions; a checkpoint is shown merged.
                        KeyedValue::Deleted => Value::Null,
                    };
                    json!({ "state": d.name, "key": key_json(&e.key), "value": value })
                })
                .collect();
            let timers: Vec<Value> = g
                .timers
                .iter()
                .map(|t| {
                    let domain = if t.domain == TimeDomain::EventTime { "event-time" } else { "processing-time" };
                    json!({ "domain": domain, "timestamp": t.timestamp, "key": key_json(&t.key) })
                })
                .collect();
            json!({ "key_group": g.key_group, "entries": entries, "timers": timers })
        })
        .collect();
    json!({ "max_parallelism": k.max_parallelism, "key_groups": range_json(k.range), "states": states, "groups": groups })
}

fn header(c: &LoadedCheckpoint) -> serde_json::Map<String, Value> {
    let m = &c.metadata;
    let mut out = serde_json::Map::new();
    out.insert("path".into(), json!(c.location));
    out.insert("checkpoint_id".into(), json!(m.checkpoint_id));
    out.insert("timestamp".into(), json!(m.timestamp));
    out.insert("kind".into(), json!(m.kind));
    out.insert("job_name".into(), json!(m.job_name));
    out.insert("format_version".into(), json!(m.format_version));
    out
}

/// The checkpoint as it is stored.
pub fn describe(c: &LoadedCheckpoint) -> Value {
    let mut out = header(c);
    let mut ops = serde_json::Map::new();
    for (op, meta) in &c.metadata.operators {
        let subtasks: Vec<Value> = c.states[op]
            .iter()
            .zip(&meta.subtasks)
            .enumerate()
            .map(|(i, (s, f))| {
                let mut v = json!({ "index": i, "file": f.path, "size": f.size, "states": snapshot_states(s) });
                if let Some(k) = &s.keyed {
                    v["keyed"] = keyed_json(k);
                }
                v
            })
            .collect();
        ops.insert(op.clone(), json!({ "parallelism": meta.parallelism, "subtasks": subtasks }));
    }
    out.insert("operators".into(), Value::Object(ops));
    Value::Object(out)
}

/// What every subtask would restore with the given parallelism per operator (others unchanged),
/// computed by the same redistribution code the runtime uses.
pub fn preview(c: &LoadedCheckpoint, parallelism: &BTreeMap<String, u32>) -> Result<Value> {
    for op in parallelism.keys() {
        if !c.states.contains_key(op) {
            bail!("{}: has no operator '{op}' (it has: {})", c.location, c.states.keys().cloned().collect::<Vec<_>>().join(", "));
        }
    }
    let mut out = header(c);
    let mut ops = serde_json::Map::new();
    for (op, subtasks) in &c.states {
        let new_p = parallelism.get(op).copied().unwrap_or(c.metadata.operators[op].parallelism);
        let restored = redistribute(subtasks.iter().cloned().map(Some).collect(), new_p as usize);
        // Old subtask index and its keyed snapshot.
        let keyed: Vec<(usize, &KeyedSnapshot)> = subtasks.iter().enumerate().filter_map(|(j, s)| Some((j, s.keyed.as_ref()?))).collect();
        if let Some((_, k)) = keyed.first()
            && new_p > k.max_parallelism
        {
            bail!("operator '{op}' is keyed with max-parallelism {}: it cannot have {new_p} subtasks (one key group each at most)", k.max_parallelism);
        }
        let subtasks: Vec<Value> = restored
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut from: Vec<u32> = Vec::new();
                let states: Vec<Value> = r
                    .states
                    .iter()
                    .map(|st| {
                        let (entries, segments) = match &st.value {
                            RestoredValue::List(segs) => {
                                let items: Vec<Vec<u8>> = segs.iter().flat_map(|s| s.as_slice().iter().cloned()).collect();
                                let origin: Vec<Value> =
                                    segs.iter().map(|s| json!({ "old_subtask": s.old_subtask, "from": s.range.start, "to": s.range.end })).collect();
                                from.extend(segs.iter().map(|s| s.old_subtask));
                                (list_entries(&st.element_type, &items), origin)
                            }
                            RestoredValue::Map(m) => (map_entries(&st.element_type, st.value_type.as_ref(), m), vec![]),
                        };
                        let mut v = state_json(&st.name, st.mode, &st.element_type, st.value_type.as_ref(), entries);
                        v["segments"] = json!(segments);
                        v
                    })
                    .collect();
                from.sort();
                from.dedup();
                let mut v = json!({ "index": i, "restored_from": from, "states": states });
                if let Some(max) = keyed.first().map(|(_, k)| k.max_parallelism) {
                    // Whole key groups: the new range, and the old subtasks whose ranges overlap it.
                    let range = KeyGroupRange::for_subtask(max, new_p, i as u32);
                    let from: Vec<usize> = keyed.iter().filter(|(_, k)| k.range.start <= range.end && range.start <= k.range.end).map(|(j, _)| *j).collect();
                    v["key_groups"] = range_json(range);
                    v["keyed_from"] = json!(from);
                }
                v
            })
            .collect();
        ops.insert(op.clone(), json!({ "parallelism": new_p, "subtasks": subtasks }));
    }
    out.insert("operators".into(), Value::Object(ops));
    Ok(Value::Object(out))
}

/// A short human-readable rendering of [`describe`] or [`preview`] output.
pub fn render_text(v: &Value) -> String {
    let mut s = format!("{} {} at {} ({})\n", v["kind"].as_str().unwrap_or("checkpoint"), v["checkpoint_id"], v["timestamp"], v["path"].as_str().unwrap_or(""));
    if let Some(ops) = v["operators"].as_object() {
        for (op, o) in ops {
            s.push_str(&format!("operator {op} (parallelism {})\n", o["parallelism"]));
            for sub in o["subtasks"].as_array().into_iter().flatten() {
                s.push_str(&format!("  subtask {}\n", sub["index"]));
                let groups = if sub["key_groups"].is_object() { &sub["key_groups"] } else { &sub["keyed"]["key_groups"] };
                if groups.is_object() {
                    let from = sub.get("keyed_from").map(|f| format!(" from old subtasks {f}")).unwrap_or_default();
                    s.push_str(&format!("    key groups {}..={}{from}\n", groups["start"], groups["end"]));
                }
                for g in sub["keyed"]["groups"].as_array().into_iter().flatten() {
                    let entries: Vec<String> = g["entries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .take(5)
                        .map(|e| format!("{}[{}] = {}", e["state"].as_str().unwrap_or(""), e["key"], e["value"]))
                        .collect();
                    let timers = g["timers"].as_array().map(Vec::len).unwrap_or(0);
                    s.push_str(&format!(
                        "    key group {}: {}{}\n",
                        g["key_group"],
                        entries.join(", "),
                        if timers > 0 { format!(" ({timers} timers)") } else { String::new() }
                    ));
                }
                for st in sub["states"].as_array().into_iter().flatten() {
                    let entries = st["entries"].as_array().map(Vec::len).unwrap_or(0);
                    let shown: Vec<String> = st["entries"].as_array().into_iter().flatten().take(5).map(|e| e.to_string()).collect();
                    let more = if entries > 5 { format!(" … ({entries} entries)") } else { String::new() };
                    s.push_str(&format!(
                        "    {} [{}] {}: [{}]{more}\n",
                        st["name"].as_str().unwrap_or(""),
                        st["mode"].as_str().unwrap_or(""),
                        st["type"].as_str().unwrap_or(""),
                        shown.join(", ")
                    ));
                }
            }
        }
    }
    s
}
