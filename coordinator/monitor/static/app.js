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
  $("total-runs").textContent = t.runs;
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

function chartFor(run, container) {
  let chart = charts.get(run.run);
  if (chart) return chart;
  const element = document.createElement("div");
  element.className = "run";
  element.innerHTML = `<h3></h3><div class="plot"></div>`;
  container.appendChild(element);
  chart = { element, plot: null };
  if (typeof uPlot !== "undefined") {
    const opts = {
      width: Math.max(300, element.clientWidth - 20), height: 170,
      scales: { x: { time: false } },
      legend: { live: false },
      axes: [{ label: "step" }, { label: "loss" }],
      series: [
        { label: "step" },
        { label: "mean", stroke: "#3366cc", width: 2 },
        { label: "min", stroke: "#9ab", dash: [4, 4] },
        { label: "max", stroke: "#cab", dash: [4, 4] },
      ],
    };
    chart.plot = new uPlot(opts, [[], [], [], []], element.querySelector(".plot"));
  }
  charts.set(run.run, chart);
  return chart;
}

function renderRuns(snap) {
  const container = $("runs");
  const runs = snap.runs.filter((r) => r.curve.steps.length > 0 || r.loss !== null);
  container.querySelector(".empty")?.remove();
  if (runs.length === 0 && charts.size === 0) {
    container.innerHTML = `<p class="muted empty">no loss reported yet</p>`;
    return;
  }
  for (const run of runs) {
    const chart = chartFor(run, container);
    chart.element.querySelector("h3").textContent =
      `${run.run} · ${run.peers} peer(s) · step ${num(run.step, 0)} · loss ${num(run.loss, 3)}`;
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
