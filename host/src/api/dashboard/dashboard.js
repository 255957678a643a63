// The wasmflow dashboard: polls the job's API once a second and redraws. Hand-written, no
// dependencies (see ../dashboard.rs for why).
"use strict";

const POLL_MS = 1000;
const SVG = "http://www.w3.org/2000/svg";
// Previous totals per operator, to turn counters into rates: id -> {in, out, at}.
const previous = new Map();
const rates = new Map();

function el(tag, attrs = {}, text) {
  const e = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function bytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let i = -1;
  do { n /= 1024; i++; } while (n >= 1024 && i < units.length - 1);
  return `${n.toFixed(1)} ${units[i]}`;
}

function fixed(x, digits = 0) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

// Sums of one operator's subtasks from the metrics view.
function totals(metrics, id) {
  const op = (metrics || []).find((m) => m.operator === id);
  const t = { records_in: 0, records_out: 0, busy: 0, backpressured: 0 };
  if (!op) return t;
  for (const s of op.subtasks) {
    t.records_in += s.records_in;
    t.records_out += s.records_out;
    t.busy = Math.max(t.busy, s.busy_ms_per_second);
    t.backpressured = Math.max(t.backpressured, s.back_pressured_ms_per_second);
  }
  return t;
}

function updateRates(job) {
  const now = performance.now();
  for (const op of job.operators) {
    const t = totals(job.metrics, op.id);
    const p = previous.get(op.id);
    if (p && now > p.at) {
      const secs = (now - p.at) / 1000;
      rates.set(op.id, { in: (t.records_in - p.in) / secs, out: (t.records_out - p.out) / secs });
    }
    previous.set(op.id, { in: t.records_in, out: t.records_out, at: now });
  }
}

// Green (no back-pressure) to red (waiting on consumers 1000 ms per second).
function pressureColour(msPerSecond) {
  const f = Math.min(1, Math.max(0, msPerSecond / 1000));
  const hue = 120 * (1 - f);
  return `hsl(${hue}, 65%, 78%)`;
}

// Columns by longest path from a source; rows in order within a column.
function layout(job) {
  const depth = new Map(job.operators.map((o) => [o.id, 0]));
  for (let round = 0; round < job.operators.length; round++) {
    for (const e of job.edges) depth.set(e.to, Math.max(depth.get(e.to), depth.get(e.from) + 1));
  }
  const rows = new Map();
  const pos = new Map();
  for (const o of job.operators) {
    const d = depth.get(o.id);
    const r = rows.get(d) || 0;
    rows.set(d, r + 1);
    pos.set(o.id, { x: 20 + d * 210, y: 20 + r * 90 });
  }
  return { pos, height: 40 + Math.max(...rows.values(), 1) * 90 };
}

function drawGraph(job) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  const defs = el("svg:defs");
  const marker = el("svg:marker", { id: "arrow", viewBox: "0 0 10 10", refX: "10", refY: "5", markerWidth: "8", markerHeight: "8", orient: "auto" });
  marker.append(el("svg:path", { d: "M0,0 L10,5 L0,10 z", fill: "#4a5466" }));
  defs.append(marker);
  svg.append(defs);
  const { pos, height } = layout(job);
  const W = 160, H = 60;
  svg.setAttribute("height", height);
  job.chains.forEach((chain, i) => {
    if (chain.length < 2) return;
    const ps = chain.map((id) => pos.get(id));
    const x0 = Math.min(...ps.map((p) => p.x)) - 8, y0 = Math.min(...ps.map((p) => p.y)) - 8;
    const x1 = Math.max(...ps.map((p) => p.x)) + W + 8, y1 = Math.max(...ps.map((p) => p.y)) + H + 8;
    svg.append(el("svg:rect", { class: "chain", "data-chain": i, x: x0, y: y0, width: x1 - x0, height: y1 - y0, rx: 10 }));
  });
  for (const e of job.edges) {
    const a = pos.get(e.from), b = pos.get(e.to);
    const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2;
    svg.append(el("svg:path", { class: "edge", d: `M${x1},${y1} C${x1 + 30},${y1} ${x2 - 30},${y2} ${x2},${y2}` }));
    svg.append(el("svg:text", { class: "edge-label", x: (x1 + x2) / 2 - 20, y: (y1 + y2) / 2 - 4 }, e.partitioning));
  }
  for (const o of job.operators) {
    const p = pos.get(o.id);
    const t = totals(job.metrics, o.id);
    const r = rates.get(o.id);
    const g = el("svg:g", { class: "node", "data-operator": o.id, transform: `translate(${p.x},${p.y})` });
    g.append(el("svg:rect", { width: W, height: H, fill: pressureColour(t.backpressured), "data-backpressured-ms": fixed(t.backpressured) }));
    g.append(el("svg:text", { x: 8, y: 18 }, `${o.id} ×${o.parallelism}${o.keyed ? " (keyed)" : ""}`));
    g.append(el("svg:text", { class: "rate", x: 8, y: 36 }, `in ${r ? fixed(r.in) : "–"}/s  out ${r ? fixed(r.out) : "–"}/s`));
    g.append(el("svg:text", { class: "rate", x: 8, y: 52 }, `busy ${fixed(t.busy)} ms/s`));
    svg.append(g);
  }
}

function drawOperators(job) {
  const body = document.querySelector("#operators tbody");
  body.replaceChildren();
  for (const o of job.operators) {
    const t = totals(job.metrics, o.id);
    const r = rates.get(o.id);
    const row = el("tr", { "data-operator": o.id });
    for (const v of [o.id, o.parallelism, t.records_in, t.records_out, r ? fixed(r.in) : "–", r ? fixed(r.out) : "–", fixed(t.busy), fixed(t.backpressured)]) {
      row.append(el("td", {}, String(v)));
    }
    body.append(row);
  }
}

function drawJob(job) {
  document.getElementById("job-name").textContent = job.name ? `— ${job.name}` : "";
  const state = document.getElementById("job-state");
  state.textContent = job.state;
  state.dataset.state = job.state;
  document.getElementById("job-attempt").textContent = job.attempt;
  document.getElementById("job-restarts").textContent = job.restarts;
  document.getElementById("job-last-checkpoint").textContent = job.last_checkpoint ?? "none";
  drawGraph(job);
  drawOperators(job);
  const lag = job.kafka_lag || [];
  const body = document.querySelector("#kafka-lag tbody");
  body.replaceChildren();
  for (const l of lag) {
    const row = el("tr", { "data-topic": l.topic, "data-partition": l.partition });
    for (const v of [l.operator, l.subtask, l.topic, l.partition, l.lag]) row.append(el("td", {}, String(v)));
    body.append(row);
  }
  document.getElementById("kafka-none").hidden = lag.length > 0;
}

function drawCheckpoints(c) {
  document.getElementById("checkpoint-counts").textContent = `${c.completed} completed, ${c.failed} failed, ${c.in_progress} in progress`;
  const body = document.querySelector("#checkpoints tbody");
  body.replaceChildren();
  for (const cp of c.history) {
    const row = el("tr", { "data-checkpoint": cp.id, class: `status-${cp.status}` });
    const when = new Date(cp.triggered_at_ms).toLocaleTimeString();
    for (const v of [cp.id, cp.kind, cp.failure ? `${cp.status}: ${cp.failure}` : cp.status, when, fixed(cp.duration_ms, 1), fixed(cp.max_sync_ms, 1), bytes(cp.state_bytes), bytes(cp.total_bytes), cp.acks.length]) {
      row.append(el("td", {}, String(v)));
    }
    body.append(row);
  }
}

function drawExceptions(x) {
  const box = document.getElementById("exceptions");
  box.replaceChildren();
  for (const e of x.exceptions) {
    const div = el("div", { class: "exception" });
    const where = e.operator !== null && e.operator !== undefined ? ` in ${e.operator}/${e.subtask}` : "";
    div.append(el("div", {}, `${new Date(e.timestamp_ms).toLocaleString()} — attempt ${e.attempt}${where}${e.restarted ? ", restarted" : ", job failed"}`));
    div.append(el("pre", { class: "message" }, e.message));
    if (e.backtrace.length > 0) {
      const d = el("details");
      d.append(el("summary", {}, `guest backtrace (${e.backtrace.length} frames)`));
      d.append(el("pre", { class: "backtrace" }, e.backtrace.join("\n")));
      div.append(d);
    }
    box.append(div);
  }
  document.getElementById("exceptions-none").hidden = x.exceptions.length > 0;
}

async function getJson(path) {
  const r = await fetch(path, { cache: "no-store" });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

async function poll() {
  try {
    const [job, checkpoints, exceptions] = await Promise.all([getJson("/v1/job"), getJson("/v1/checkpoints"), getJson("/v1/exceptions")]);
    updateRates(job);
    drawJob(job);
    drawCheckpoints(checkpoints);
    drawExceptions(exceptions);
    document.getElementById("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "true";
  } catch (e) {
    document.getElementById("updated").textContent = `cannot reach the job: ${e.message}`;
  }
  setTimeout(poll, POLL_MS);
}

poll();
