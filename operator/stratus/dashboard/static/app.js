// The Stratus dashboard: renders the server's JSON views, draws its SVG, and follows the
// server's event stream. No framework, no external asset; text goes in as text, never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const TOKEN = document.querySelector('meta[name="stratus-token"]').content;
const main = document.getElementById("main");
const state = { route: route(), rows: new Map(), view: null, filters: readFilters(), pending: null };

function route() {
  const parts = location.pathname.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 3 && (parts[0] === "trainingjobs" || parts[0] === "inferenceservices")) {
    return { page: parts[0], namespace: parts[1], name: parts[2] };
  }
  return { page: "list" };
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

const fmt = {
  time(t) { return t ? new Date(t * 1000).toLocaleString() : "—"; },
  clock(t) { return t ? new Date(t * 1000).toLocaleTimeString() : ""; },
  num(v, digits) { return v === null || v === undefined ? "—" : Number(v).toFixed(digits); },
  dur(s) {
    if (s === null || s === undefined) return "—";
    s = Math.round(s);
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
  },
  age(t) { return t ? fmt.dur(Date.now() / 1000 - t) : "—"; },
  pct(v) { return v === null || v === undefined ? "—" : (v * 100).toFixed(1) + "%"; },
};

function badge(phase) { return el("span", { class: "badge phase-" + phase }, phase); }

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

// -- the list page ----------------------------------------------------------------------------
function readFilters() {
  const query = new URLSearchParams(location.search);
  return { name: query.get("name") || "", namespace: query.get("namespace") || "",
           kind: query.get("kind") || "", phase: query.get("phase") || "" };
}

function matches(row, f) {
  if (f.name && !row.name.toLowerCase().includes(f.name.trim().toLowerCase())) return false;
  return ["namespace", "kind", "phase"].every((key) => !f[key] || row[key] === f[key]);
}

async function loadList() {
  const body = await getJSON("/api/resources");
  state.rows = new Map(body.items.map((r) => [key(r), r]));
  state.errors = body.errors;
  renderList();
}

function key(r) { return r.kind + "/" + r.namespace + "/" + r.name; }

function select(name, label, values) {
  const node = el("select", { name, "aria-label": label,
    onchange: (e) => { state.filters[name] = e.target.value; saveFilters(); renderRows(); } },
    el("option", { value: "" }, "all " + label));
  for (const value of values) node.append(el("option", { value, selected: state.filters[name] === value }, value));
  return node;
}

function saveFilters() {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(state.filters)) if (v) query.set(k, v);
  history.replaceState(null, "", "/" + (query.toString() ? "?" + query : ""));
}

function renderList() {
  const rows = [...state.rows.values()];
  const distinct = (k) => [...new Set(rows.map((r) => r[k]))].sort();
  const filters = el("div", { class: "filters" },
    el("input", { type: "search", name: "name", placeholder: "name", "aria-label": "name",
      value: state.filters.name,
      oninput: (e) => { state.filters.name = e.target.value; saveFilters(); renderRows(); } }),
    select("namespace", "namespaces", distinct("namespace")),
    select("kind", "kinds", ["TrainingJob", "InferenceService"]),
    select("phase", "phases", distinct("phase")),
    el("span", { id: "count", class: "muted" }));
  const errors = Object.entries(state.errors || {}).map(([kind, message]) =>
    el("p", { class: "error" }, `${kind}: ${message}`));
  const table = el("table", { id: "resources" },
    el("thead", {}, el("tr", {}, ["Kind", "Namespace", "Name", "Phase", "Team"].map((h) => el("th", {}, h)),
      el("th", { class: "num" }, "GPU-hours"),
      el("th", { class: "num" }, "Cost"),
      el("th", {}, "Detail"), el("th", { class: "num" }, "Age"))),
    el("tbody"));
  main.replaceChildren(el("h1", {}, "Workloads"), ...errors, filters, table);
  renderRows();
}

function renderRows() {
  const tbody = document.querySelector("#resources tbody");
  if (!tbody) return;
  const all = [...state.rows.values()].sort((a, b) => key(a).localeCompare(key(b)));
  const shown = all.filter((r) => matches(r, state.filters));
  tbody.replaceChildren(...shown.map((r) => el("tr", { "data-kind": r.kind, "data-name": r.name },
    el("td", {}, r.kind), el("td", {}, r.namespace),
    el("td", {}, el("a", { href: `/${r.kind === "TrainingJob" ? "trainingjobs" : "inferenceservices"}/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}` }, r.name)),
    el("td", {}, badge(r.phase)), el("td", {}, r.team || "—"),
    el("td", { class: "num" }, fmt.num(r.gpuHours, 2)),
    el("td", { class: "num" }, money(r)),
    el("td", { class: "muted" }, r.detail), el("td", { class: "num" }, fmt.age(r.created)))));
  if (!shown.length) tbody.append(el("tr", {}, el("td", { colspan: 9, class: "muted" }, "Nothing matches.")));
  document.getElementById("count").textContent = `${shown.length} of ${all.length}`;
}

// Cost as the status has it: absent (—) where the admin set no prices.
function money(r) {
  return r.cost == null ? "—" : `${fmt.num(r.cost, 2)} ${r.currency || ""}`.trim();
}

// -- shared detail parts ---------------------------------------------------------------------
function summary(items) {
  return el("div", { class: "card summary" },
    items.map(([label, value]) => el("div", {}, el("span", {}, label), el("b", {}, value))));
}

function eventsTable(events) {
  return [el("h2", {}, "Events"), el("table", { id: "events" },
    el("thead", {}, el("tr", {}, ["Time", "Type", "Reason", "Source", "Message"].map((h) => el("th", {}, h)))),
    el("tbody", {}, events.map((e) => el("tr", {},
      el("td", {}, fmt.time(e.time)), el("td", {}, e.type || ""), el("td", {}, e.reason || ""),
      el("td", { class: "muted" }, e.source || ""), el("td", {}, e.message || "")))))];
}

function conditionsTable(conditions) {
  if (!conditions.length) return [];
  return [el("h2", {}, "Conditions"), el("table", {},
    el("thead", {}, el("tr", {}, ["Type", "Status", "Reason", "Message"].map((h) => el("th", {}, h)))),
    el("tbody", {}, conditions.map((c) => el("tr", {},
      el("td", {}, c.type), el("td", {}, c.status), el("td", {}, c.reason || ""), el("td", {}, c.message || "")))))];
}

function header(view) {
  return [el("p", { class: "muted" }, el("a", { href: "/" }, "Workloads"), ` / ${view.kind} / ${view.namespace}`),
    el("h1", {}, view.name, " ", badge(view.phase)),
    ...(view.message ? [el("p", {}, view.message)] : []),
    ...(view.warnings || []).map((w) => el("p", { class: "warning" }, w))];
}

// -- the TrainingJob page ----------------------------------------------------------------------
function timelineSvg(t) {
  const node = svg("svg", { id: "timeline", viewBox: `0 -4 ${t.width} 110`, preserveAspectRatio: "none", role: "img",
      "aria-label": "attempt timeline" },
    svg("defs", {}, svg("pattern", { id: "hatch", width: 6, height: 6, patternUnits: "userSpaceOnUse",
      patternTransform: "rotate(45)" }, svg("rect", { width: 6, height: 6, fill: "#fff", "fill-opacity": "0.35" }),
      svg("line", { x1: 0, y1: 0, x2: 0, y2: 6, stroke: "#d64545", "stroke-width": 3 }))));
  for (const tick of t.ticks) {
    node.append(svg("line", { class: "grid", x1: tick.x, x2: tick.x, y1: 20, y2: 72 }),
      svg("text", { x: Math.min(tick.x, t.width - 4), y: 90, "text-anchor": tick.x === 0 ? "start" : tick.x >= t.width ? "end" : "middle" },
        fmt.clock(tick.time)));
  }
  for (const bar of t.bars) {
    node.append(svg("rect", { class: `bar ${bar.capacity}`, x: bar.x, y: bar.y, width: bar.width, height: bar.height,
      rx: 3, "data-attempt": bar.attempt }, svg("title", {}, `attempt ${bar.attempt} on ${bar.capacity}: ${bar.ended}`)));
  }
  for (const lost of t.lost) {
    node.append(svg("rect", { class: "lost", x: lost.x, y: lost.y, width: lost.width, height: lost.height },
      svg("title", {}, `work lost in attempt ${lost.attempt}`)));
  }
  for (const bar of t.bars) {
    if (bar.width > 40) node.append(svg("text", { class: "bar-label", x: bar.x + 5, y: bar.y + 22 }, bar.label));
  }
  for (const mark of t.marks) {
    node.append(svg("line", { class: `mark ${mark.ended}`, x1: mark.x, x2: mark.x, y1: 22, y2: 74 }),
      svg("text", { class: "mark-label", x: mark.x, y: 15, "text-anchor": mark.x > t.width - 60 ? "end" : "middle" }, mark.ended));
  }
  return node;
}

function renderTrainingJob(view) {
  const attempts = view.attempts;
  main.replaceChildren(...header(view),
    summary([["Team", view.team || "—"], ["GPUs", view.gpus], ["GPU-hours", fmt.num(view.gpuHours, 2)], ["Cost", money(view)],
      ["Attempts", attempts.length], ["Preemptions", view.preemptions], ["Restarts", view.restarts],
      ["GPU-hours lost", fmt.num(view.lostGpuHours, 3)],
      ["Last checkpoint", view.lastCheckpoint ? `step ${view.lastCheckpoint.step ?? "?"}` : "—"]]),
    el("h2", {}, "Attempts"),
    el("div", { class: "card" }, view.timeline.bars.length ? timelineSvg(view.timeline) : el("p", { class: "muted" }, "No attempt has started."),
      el("div", { class: "legend" }, el("span", {}, el("i", { class: "spot" }), "spot"),
        el("span", {}, el("i", { class: "on-demand" }), "on-demand"),
        el("span", {}, el("i", { class: "lost" }), "work lost (redone after the attempt ended)"))),
    el("table", { id: "attempts" },
      el("thead", {}, el("tr", {}, ["#", "Capacity", "Node", "Started", "Ended", "How", "Step at start", "Step at end"].map((h) => el("th", {}, h)),
        el("th", { class: "num" }, "Time lost"), el("th", { class: "num" }, "GPU-h lost"), el("th", { class: "num" }, "Down until next"))),
      el("tbody", {}, attempts.map((a) => el("tr", { "data-attempt": a.number },
        el("td", {}, a.number), el("td", {}, a.capacity || "—"), el("td", {}, a.nodes.join(", ") || "—"),
        el("td", {}, fmt.time(a.start)), el("td", {}, fmt.time(a.end)),
        el("td", { title: a.detail }, a.ended), el("td", {}, a.resume_step ?? (a.resume_path ? "?" : "start")),
        el("td", {}, a.end_step ?? "—"), el("td", { class: "num" }, fmt.dur(a.lost_seconds)),
        el("td", { class: "num" }, fmt.num(a.lost_gpu_hours, 3)), el("td", { class: "num" }, fmt.dur(a.downtime_seconds)))))),
    ...conditionsTable(view.conditions), ...eventsTable(view.events));
}

// -- the InferenceService page -----------------------------------------------------------------
function chartSvg(c, index) {
  const node = svg("svg", { class: "chart", id: `chart-${index}`, viewBox: `0 0 ${c.width} ${c.height}`, role: "img", "aria-label": c.title });
  for (const tick of c.yTicks) {
    node.append(svg("line", { class: "grid", x1: 56, x2: c.width - 12, y1: tick.y, y2: tick.y }),
      svg("text", { x: 50, y: tick.y + 4, "text-anchor": "end" }, tick.label));
  }
  c.xTicks.forEach((tick, i) => node.append(svg("text", { x: tick.x, y: c.height - 6,
    "text-anchor": i === 0 ? "start" : i === c.xTicks.length - 1 ? "end" : "middle" }, fmt.clock(tick.time))));
  for (const bound of c.bounds) {
    node.append(svg("line", { class: "bound", x1: 56, x2: c.width - 12, y1: bound.y, y2: bound.y }),
      svg("text", { x: c.width - 14, y: bound.y - 3, "text-anchor": "end" }, bound.label));
  }
  for (const s of c.series) {
    if (s.path) node.append(svg("path", { class: `series s${s.index % 6}`, d: s.path }, svg("title", {}, s.name)));
    for (const dot of s.dots) {
      node.append(svg("circle", { class: `dot ${dot.cls}`, cx: dot.x, cy: dot.y, r: 3.5 },
        svg("title", {}, `${s.name}: ${dot.value} at ${fmt.clock(dot.time)}`)));
    }
  }
  return el("div", { class: "card" }, el("b", {}, c.title), node,
    el("div", { class: "legend" }, c.series.map((s) => el("span", {}, el("i", { class: `l${s.index % 6}` }), s.name))),
    c.empty ? el("p", { class: "muted" }, "No measurement yet.") : null);
}

const COMMANDS = [["promote", "Promote one step", ""], ["promote-full", "Promote fully", "secondary"],
  ["abort", "Abort", "danger"], ["retry", "Retry", "secondary"]];

// Built once per page and moved into each re-render, so that a click never lands on a button
// that a live update has just replaced, and a command's outcome stays on screen.
function actionBar() {
  if (state.actions) return state.actions;
  const status = el("span", { id: "command-status", class: "muted" }, "");
  const buttons = new Map(COMMANDS.map(([name, label, cls]) => {
    const button = el("button", { id: `cmd-${name}`, class: cls }, label);
    button.addEventListener("click", () => command(name, status));
    return [name, button];
  }));
  state.actions = { node: el("div", { class: "card actions" }, [...buttons.values()], status), buttons, busy: null };
  return state.actions;
}

function enableCommands() {
  const bar = actionBar();
  for (const [name, button] of bar.buttons) button.disabled = bar.busy !== null || !state.view.actions[name];
}

async function command(name, status) {
  const bar = actionBar();
  bar.busy = name;
  enableCommands();
  status.className = "muted";
  status.textContent = `${name}…`;
  try {
    const response = await fetch(`/api/inferenceservices/${encodeURIComponent(state.view.namespace)}/${encodeURIComponent(state.view.name)}/${name}`,
      { method: "POST", headers: { "Content-Type": "application/json", "X-Stratus-Token": TOKEN }, body: "{}" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.error || response.statusText);
    status.className = body.event ? "done" : "warning";
    status.textContent = body.message + (body.warning ? ` (Event not recorded: ${body.warning})` : "");
  } catch (error) {
    status.className = "error";
    status.textContent = `${name} failed: ${error.message}`;
  } finally {
    bar.busy = null;
    enableCommands();
  }
}

function resultsTable(title, id, head, rows) {
  if (!rows.length) return [];
  return [el("h2", {}, title), el("table", { id }, el("thead", {}, el("tr", {}, head.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows.map((cells) => el("tr", {}, cells.map((c) => el("td", {}, c))))))];
}

function renderInferenceService(view) {
  state.view = view;
  enableCommands();
  const analysis = (view.lastAnalysis && view.lastAnalysis.results) || [];
  const validation = view.validation || {};
  main.replaceChildren(...header(view),
    summary([["Strategy", view.strategy], ["Stable", view.stableRevision || "—"], ["Canary", view.canaryRevision || "—"],
      ["Weight asked", view.canaryWeight + "%"], ["Weight achieved", view.canaryWeightAchieved + "%"],
      ["Rolled back", view.abortedRevision || "—"]]),
    actionBar().node,
    el("h2", {}, "Steps"),
    el("div", { class: "steps", id: "steps" }, view.steps.map((s) => el("div", { class: `step ${s.state}` },
      el("div", { class: "muted" }, `step ${s.index + 1}`), el("b", {}, `${s.weight}%`),
      s.achieved !== null && s.achieved !== undefined ? el("div", {}, `achieved ${s.achieved}%`) : null,
      el("div", { class: "muted" }, `hold ${s.hold}`)))),
    el("h2", {}, "Over time"),
    el("div", { class: "charts" }, view.charts.map(chartSvg)),
    ...resultsTable(`Latest analysis ${view.lastAnalysis && view.lastAnalysis.time ? "(" + view.lastAnalysis.time + ")" : ""}`, "analysis",
      ["Metric", "Value", "Verdict"], analysis.map((r) => [r.name, r.value ?? "no data", r.verdict])),
    ...resultsTable(`Validation ${validation.revision || ""} ${validation.phase || ""}`, "validation",
      ["Comparator", "Source", "Samples", "Agreement", "Noise floor", "Adjusted", "Verdict"],
      (validation.results || []).map((r) => [r.name, r.source, r.samples, fmt.pct(r.agreement), fmt.pct(r.noiseFloor), fmt.pct(r.adjusted), r.verdict])),
    ...conditionsTable(view.conditions), ...eventsTable(view.events));
}

// -- loading and live updates ------------------------------------------------------------------
async function loadDetail() {
  const r = state.route;
  try {
    const view = await getJSON(`/api/${r.page}/${encodeURIComponent(r.namespace)}/${encodeURIComponent(r.name)}`);
    document.title = `${view.name} · Stratus`;
    (r.page === "trainingjobs" ? renderTrainingJob : renderInferenceService)(view);
  } catch (error) {
    main.replaceChildren(el("p", { class: "error" }, error.message));
  }
}

function load() { return state.route.page === "list" ? loadList().catch(showError) : loadDetail(); }

function showError(error) { main.replaceChildren(el("p", { class: "error" }, error.message)); }

// Many changes in a burst cost one reload.
function reloadSoon() {
  if (state.pending) return;
  state.pending = setTimeout(() => { state.pending = null; load(); }, 300);
}

function onMessage(message) {
  const r = state.route;
  if (message.type === "resync") { reloadSoon(); return; }
  if (r.page === "list") {
    if (message.type === "changed") { state.rows.set(key(message.row), message.row); renderRows(); }
    else if (message.type === "deleted") { state.rows.delete(`${message.kind}/${message.namespace}/${message.name}`); renderRows(); }
    return;
  }
  const kind = r.page === "trainingjobs" ? "TrainingJob" : "InferenceService";
  if (message.kind === kind && message.namespace === r.namespace && message.name === r.name) reloadSoon();
}

function follow() {
  const indicator = document.getElementById("live");
  const stream = new EventSource("/api/stream");
  stream.onopen = () => { indicator.textContent = "live"; indicator.className = "live on"; };
  stream.onerror = () => { indicator.textContent = "reconnecting"; indicator.className = "live off"; };
  stream.onmessage = (e) => onMessage(JSON.parse(e.data));
}

// The mark times the first full render from navigation start (the page-load benchmark reads it).
load().then(() => { performance.mark("stratus-loaded"); document.body.dataset.loaded = "true"; });
follow();
