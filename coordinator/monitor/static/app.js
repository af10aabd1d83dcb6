// The swarmnet monitor page: polls /api/swarm every second and redraws. No build step, no framework.
// Everything shown comes from peers, so every string goes through esc() before it reaches innerHTML.
"use strict";

const POLL_MS = 1000;
const charts = new Map(); // run name -> {plot, element}
let lastTime = null;

const $ = (id) => document.getElementById(id);

function esc(value) {
  return String(value ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function num(value, digits = 1) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "–";
  return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

function bytes(value) {
  if (!Number.isFinite(value) || value <= 0) return "0 B";
  const units = ["B", "kB", "MB", "GB", "TB", "PB"];
  const i = Math.min(units.length - 1, Math.floor(Math.log10(value) / 3));
  return `${(value / 1000 ** i).toFixed(i ? 1 : 0)} ${units[i]}`;
}

function ago(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "–";
  if (seconds < 60) return `${seconds.toFixed(0)} s`;
  if (seconds < 3600) return `${(seconds / 60).toFixed(0)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

function shortId(id) {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}

function renderTotals(snap) {
  const t = snap.totals;
  $("swarm-name").textContent = snap.swarm;
  $("total-peers").textContent = t.peers;
  $("total-live").textContent = t.live;
  $("total-stale").textContent = t.stale;
  $("total-samples").textContent = num(t.samples_per_s);
  $("total-bytes").textContent = bytes(t.bytes_moved);
  $("total-sent").textContent = bytes(t.bytes_sent);
  $("total-received").textContent = bytes(t.bytes_received);
  $("total-ratio").textContent = t.compression_ratio ? `${num(t.compression_ratio)}×` : "–";
  $("total-runs").textContent = t.runs_active;
  $("total-runs-inactive").textContent = t.runs - t.runs_active;
  $("total-rejected").textContent = t.rejected;
  $("updated").textContent = new Date(snap.time * 1000).toLocaleTimeString();
  $("updated").dataset.time = String(snap.time);
}

function peerRow(p, now) {
  const seen = p.age_s ?? Math.max(0, now - p.last_seen);
  const device = `${p.device.kind}:${p.device.name}`;
  return `<tr class="${p.status === "stale" ? "stale" : "live"}" data-peer-id="${esc(p.peer_id)}">` +
    `<td class="id" title="${esc(p.peer_id)}">${esc(shortId(p.peer_id))}</td>` +
    `<td>${esc(p.role)}</td><td>${esc(p.run)}</td><td>${esc(p.telemetry ? p.state : "no telemetry")}</td>` +
    `<td class="num">${num(p.step, 0)}</td><td class="num">${num(p.samples_per_s)}</td>` +
    `<td class="num">${num(p.loss, 3)}</td>` +
    `<td class="num">${p.link_mbps == null ? "–" : `${num(p.link_mbps, 0)} Mbit/s`}</td>` +
    `<td class="num">${bytes(p.bytes_sent)}</td>` +
    `<td class="num">${p.compression_ratio ? `${num(p.compression_ratio)}×` : "–"}</td>` +
    `<td title="${esc(device)}">${esc(device.slice(0, 28))}</td>` +
    `<td class="num age">${ago(seen)}</td><td>${esc(p.version)}</td></tr>`;
}

function renderPeers(snap) {
  const html = snap.peers.map((p) => peerRow(p, snap.time)).join("");
  const body = $("peers").tBodies[0];
  body.innerHTML = html || `<tr><td colspan="13" class="muted">no peers yet</td></tr>`;
}

function renderAveraging(snap) {
  const rows = snap.averaging.slice(0, 20).map((r) =>
    `<tr><td>${esc(r.run)}</td><td class="num">${r.round}</td><td class="num">${r.group_size}</td>` +
    `<td class="num">${r.contributors}</td>` +
    `<td class="failed" title="${esc(r.failed.join(" "))}">${esc(r.failed.map(shortId).join(", "))}</td>` +
    `<td class="num">${bytes(r.bytes_sent)}</td><td class="num">${num(r.seconds, 2)}</td>` +
    `<td>${esc(r.codec)}</td><td class="num">${r.at ? ago(snap.time - r.at) : "–"}</td></tr>`);
  $("averaging").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="9" class="muted">none yet</td></tr>`;
}

function renderFederated(snap) {
  const rows = snap.federated.slice(0, 20).map((r) =>
    `<tr><td class="id" title="${esc(r.coordinator)}">${esc(shortId(r.coordinator))}</td>` +
    `<td class="num">${r.round}</td>` +
    `<td class="${r.outcome === "failed" ? "failed" : ""}" title="${esc(r.reason)}">${esc(r.outcome)}</td>` +
    `<td class="num">${r.contributors}/${r.selected}</td><td class="num">${bytes(r.uplink_bytes)}</td>` +
    `<td class="num">${num(r.train_loss, 3)}</td><td>${r.secure_aggregation ? "yes" : "no"}</td>` +
    `<td class="num">${r.epsilon === null ? "∞" : num(r.epsilon, 2)}</td></tr>`);
  $("federated").tBodies[0].innerHTML = rows.join("") || `<tr><td colspan="8" class="muted">none yet</td></tr>`;
}

// Steps and rounds are whole numbers: the x axis may only tick at whole-number increments.
const WHOLE_INCREMENTS = [1, 2, 5].flatMap((m) => [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7].map((p) => m * p))
  .sort((a, b) => a - b);
const RUN_ORDER = { active: 0, idle: 1, ended: 2 };

function xRange(u, min, max) {
  if (min === null || max === null) return [0, 1];
  return min === max ? [min - 1, max + 1] : [min, max];
}

function makePlot(chart, unit) {
  chart.plot?.destroy();
  chart.plot = null;
  chart.unit = unit;
  const element = chart.element;
  element.dataset.unit = unit;
  if (typeof uPlot === "undefined") return;
  const opts = {
    width: Math.max(300, element.clientWidth - 20), height: 170,
    scales: { x: { time: false, range: xRange } },
    legend: { live: false },
    axes: [
      {
        label: unit, incrs: WHOLE_INCREMENTS,
        // The labels drawn, also kept on the element so tests and users can read what the axis shows.
        values: (u, splits) => {
          const labels = splits.map((v) => num(v, 2));
          element.dataset.xTicks = labels.join("|");
          return labels;
        },
      },
      { label: "loss" },
    ],
    series: [
      { label: unit },
      { label: "mean", stroke: "#3366cc", width: 2 },
      { label: "min", stroke: "#9ab", dash: [4, 4] },
      { label: "max", stroke: "#cab", dash: [4, 4] },
    ],
  };
  chart.plot = new uPlot(opts, [[], [], [], []], element.querySelector(".plot"));
}

function chartFor(run, container) {
  let chart = charts.get(run.run);
  if (!chart) {
    const element = document.createElement("div");
    element.innerHTML = `<h3><span class="badge"></span> <span class="title"></span></h3><div class="plot"></div>`;
    element.dataset.run = run.run;
    container.appendChild(element);
    chart = { element, plot: null, unit: null };
    charts.set(run.run, chart);
  }
  if (chart.unit !== run.curve.unit) makePlot(chart, run.curve.unit);
  return chart;
}

// What a run's chart says about its peers: a run with no live peer is marked idle or ended.
function runStatus(run, now) {
  if (run.status === "active") {
    const stale = run.peers - run.live_peers;
    return `${run.live_peers} live peer(s)${stale ? `, ${stale} stale` : ""}`;
  }
  if (run.status === "idle") return `${run.peers} peer(s), none live`;
  return run.last_live ? `no peers since ${ago(now - run.last_live)} ago` : "no peers";
}

function runTitle(run, now) {
  const unit = run.curve.unit;
  const steps = run.curve.steps;
  const last = steps.length ? steps[steps.length - 1] : null;
  const at = (unit === "round" ? run.round : run.step) ?? last;
  const loss = run.loss ?? (last === null ? null : run.curve.mean[run.curve.mean.length - 1]);
  const lossLabel = run.loss === null && loss !== null ? "last loss" : "loss";
  return `${run.run} · ${runStatus(run, now)} · ${unit} ${num(at, 0)} · ${lossLabel} ${num(loss, 3)}`;
}

function renderRuns(snap) {
  const container = $("runs");
  const runs = [...snap.runs].sort((a, b) => RUN_ORDER[a.status] - RUN_ORDER[b.status] || (a.run < b.run ? -1 : 1));
  const names = new Set(runs.map((r) => r.run));
  for (const [name, chart] of charts) {
    if (names.has(name)) continue;
    chart.plot?.destroy();
    chart.element.remove();
    charts.delete(name);
  }
  container.querySelector(".empty")?.remove();
  if (runs.length === 0) {
    container.innerHTML = `<p class="muted empty">no runs reported yet</p>`;
    return;
  }
  for (const run of runs) {
    const chart = chartFor(run, container);
    chart.element.className = `run ${run.status}`;
    chart.element.dataset.status = run.status;
    chart.element.querySelector(".badge").textContent = run.status;
    chart.element.querySelector(".title").textContent = runTitle(run, snap.time);
    container.appendChild(chart.element); // keeps the charts in order: active, idle, ended
    if (chart.plot) chart.plot.setData([run.curve.steps, run.curve.mean, run.curve.min, run.curve.max]);
  }
}

function setConnection(ok, text) {
  $("connection").className = `dot ${ok ? "ok" : "bad"}`;
  $("connection-text").textContent = text;
}

let renders = 0;

function render(snap) {
  const started = performance.now();
  renderTotals(snap);
  renderPeers(snap);
  renderRuns(snap);
  renderAveraging(snap);
  renderFederated(snap);
  renders += 1;
  document.body.dataset.renders = String(renders);
  // Marks for the browser test and for anyone profiling a big swarm in devtools.
  if (renders === 1) performance.mark("swarmnet-first-render");
  performance.measure("swarmnet-render", { start: started, end: performance.now() });
}

async function poll() {
  try {
    const response = await fetch("/api/swarm", { cache: "no-store" });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const snap = await response.json();
    if (snap.time !== lastTime) {
      lastTime = snap.time;
      render(snap);
    }
    setConnection(true, "live");
  } catch (error) {
    setConnection(false, `disconnected (${error.message})`);
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
