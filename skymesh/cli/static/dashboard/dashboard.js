// skymesh dashboard: the live map. Plain JS, no framework, no build step; everything it
// loads comes from `skymesh dashboard` itself (see skymesh/cli/dashboard.py).
"use strict";

const W = 1000, H = 500, NS = "http://www.w3.org/2000/svg";
const RTT_HI = 300;  // ms: the top of the latency colour ramp
const MAX_EVENTS = 200;
const $ = (id) => document.getElementById(id);

let state = null;          // the latest /api/state
let regionIds = "";        // the regions the selects list, joined
let lastPath = null;       // the path panel's data
let pathSeq = 0;           // answers to older path requests are dropped
let shownEvents = new Set();

const px = (lon) => (lon + 180) / 360 * W;
const py = (lat) => (90 - lat) / 180 * H;

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function html(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function rttColor(rtt) {
  if (rtt === null || rtt === undefined) return "#667788";
  const t = Math.max(0, Math.min(1, rtt / RTT_HI));
  return `hsl(${Math.round(190 + 120 * t)}, 78%, ${Math.round(58 - 4 * t)}%)`;
}

// A great-circle link drawn straight in equirectangular: the short way round, so a link
// across the antimeridian is two segments, each leaving the map at its edge.
function segments(a, b) {
  const x1 = px(a.lon), y1 = py(a.lat), y2 = py(b.lat);
  let x2 = px(b.lon);
  if (Math.abs(b.lon - a.lon) <= 180) return [[x1, y1, x2, y2]];
  const shift = b.lon > a.lon ? -W : W;
  return [[x1, y1, x2 + shift, y2], [x1 - shift, y1, x2, y2]];
}

function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }

function fmtTime(at) {
  const d = new Date(at * 1000);
  const p = (n, w) => String(n).padStart(w || 2, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

function fmtMs(ms) {
  if (ms === null || ms === undefined) return "–";
  return ms >= 10000 ? `${(ms / 1000).toFixed(1)} s` : `${Math.round(ms)} ms`;
}

// -- the world ---------------------------------------------------------------------------------

function drawGraticule() {
  const g = $("graticule");
  let d = "";
  for (let lon = -150; lon <= 150; lon += 30) d += `M${px(lon)},0V${H}`;
  for (let lat = -60; lat <= 60; lat += 30) d += `M0,${py(lat)}H${W}`;
  el("path", { d }, g);
}

// Natural Earth cuts land at the antimeridian, so a ring may step from 180 to -180: each
// ring is unwrapped (every step the short way), drawn again 360 degrees over where it leaves
// the map, and Antarctica (a ring all the way round) is closed through the pole.
function ringPath(ring, shift) {
  let d = "";
  for (let i = 0; i < ring.length; i += 2) {
    d += (i ? "L" : "M") + px(ring[i] + shift).toFixed(1) + "," + py(ring[i + 1]).toFixed(1);
  }
  return d + "Z";
}

function unwrap(flat) {
  const out = flat.slice();
  for (let i = 2; i < out.length; i += 2) {
    while (out[i] - out[i - 2] > 180) out[i] -= 360;
    while (out[i] - out[i - 2] < -180) out[i] += 360;
  }
  return out;
}

async function drawWorld() {
  const r = await fetch("/static/world.json");
  const world = await r.json();
  let d = "";
  for (const raw of world.rings) {
    let ring = unwrap(raw);
    const lons = ring.filter((_, i) => i % 2 === 0);
    const lo = Math.min(...lons), hi = Math.max(...lons);
    if (hi - lo >= 350 && Math.abs(ring[0] - ring[ring.length - 2]) >= 350) {
      const pole = ring[1] < 0 ? -90 : 90;
      ring = ring.concat([ring[ring.length - 2], pole, ring[0], pole]);
    }
    d += ringPath(ring, 0);
    if (lo < -180) d += ringPath(ring, 360);
    if (hi > 180) d += ringPath(ring, -360);
  }
  el("path", { d }, $("land"));
}

// -- the mesh ----------------------------------------------------------------------------------

function byId() {
  const m = new Map();
  for (const r of (state ? state.regions : [])) m.set(r.id, r);
  return m;
}

function render() {
  const s = state.status || {};
  const c = state.region_counts || {}, l = state.link_counts || {};
  $("status").textContent = [
    `${state.regions.length} regions: ${c.connected || 0} connected, ${c.drained || 0} drained, ` +
      `${c.unreachable || 0} unreachable`,
    `links ${l.up || 0} up, ${l.degraded || 0} degraded, ${l.down || 0} down`,
    s.route_version !== undefined ? `routes v${s.route_version}` : "",
    s.converged === undefined ? "" : (s.converged ? "converged" : "converging"),
  ].filter(Boolean).join(" · ");
  drawLinks();
  drawRegions();
  fillSelects();
}

function drawLinks() {
  const regions = byId();
  const g = $("links");
  clear(g);
  for (const link of state.links) {
    const a = regions.get(link.a), b = regions.get(link.b);
    if (!a || !b) continue;
    const title = `${link.a} – ${link.b}: ${link.state}` +
      (link.rtt_ms !== null ? `, RTT ${link.rtt_ms} ms` : "") +
      (link.loss ? `, loss ${(link.loss * 100).toFixed(1)}%` : "") +
      (link.listed ? "" : " (no longer measured: a region's relay is gone)");
    for (const [x1, y1, x2, y2] of segments(a, b)) {
      const line = el("line", {
        x1, y1, x2, y2, class: `link ${link.state}`, stroke: rttColor(link.rtt_ms),
        "data-link": `${link.a}|${link.b}`, "data-state": link.state,
      }, g);
      el("title", {}, line).textContent = title;
    }
  }
}

function drawRegions() {
  const g = $("regions");
  clear(g);
  const src = $("src").value, dst = $("dst").value;
  const placed = [];
  for (const r of state.regions) {
    const picked = r.id === src || r.id === dst;
    const node = el("g", {
      class: `region ${r.state}${picked ? " picked" : ""}`, "data-region": r.id,
      "data-state": r.state, transform: `translate(${px(r.lon).toFixed(1)},${py(r.lat).toFixed(1)})`,
    }, g);
    el("circle", { r: 7.5, class: "halo" }, node);
    el("circle", { r: 4 + Math.min(3, r.relays > 1 ? r.relays - 1 : 0) }, node);
    const text = `${r.id} (${r.relays})`;
    const [lx, ly, anchor] = placeLabel(placed, px(r.lon), py(r.lat), text.length * 5.2);
    const label = el("text", { x: lx, y: ly, "text-anchor": anchor }, node);
    label.textContent = text;
    el("title", {}, node).textContent =
      `${r.name} (${r.id}, ${r.country}): ${r.state}` + (r.reason ? ` (${r.reason})` : "") +
      `\nrelays: ${r.relays}, client sessions: ${r.sessions}` +
      (r.drained ? "\ndrained: new sessions refused, transit moved off it" : "") +
      (r.edge_addr ? `\nedge: ${r.edge_addr}` : "");
    node.addEventListener("click", () => pick(r.id));
  }
}

// A label beside its dot where it overlaps no label placed before (right, above or below;
// else left), so that close regions (London, Frankfurt) stay readable.
function placeLabel(placed, x, y, width) {
  const options = [[7, -5, "start"], [7, 12, "start"], [-7, -5, "end"], [-7, 12, "end"]];
  const box = ([dx, dy, anchor]) => {
    const left = anchor === "start" ? x + dx : x + dx - width;
    return [left, y + dy - 8, left + width, y + dy + 2];
  };
  const free = (b) => placed.every((p) => b[2] < p[0] || b[0] > p[2] || b[3] < p[1] || b[1] > p[3]);
  const choice = options.find((o) => free(box(o))) || options[0];
  placed.push(box(choice));
  return choice;
}

function fillSelects() {
  const ids = state.regions.map((r) => r.id);
  if (ids.join(",") === regionIds) return;
  regionIds = ids.join(",");
  for (const sel of [$("src"), $("dst")]) {
    const keep = sel.value;
    clear(sel);
    sel.appendChild(new Option("—", ""));
    for (const id of ids) sel.appendChild(new Option(id, id));
    sel.value = ids.includes(keep) ? keep : "";
  }
}

async function loadZones() {
  try {
    const r = await fetch("/api/zones");
    if (!r.ok) return;
    const z = await r.json();
    const sel = $("zone");
    const keep = sel.value;
    clear(sel);
    for (const zone of z.zones) {
      if (!zone.regions.length) continue;  // a zone of the policy with no region here
      sel.appendChild(new Option(`${zone.name} (${zone.regions.length})`, zone.name));
    }
    sel.value = z.zones.some((x) => x.name === keep) ? keep : "global";
  } catch (e) {
    showProblem("zones: " + e);
  }
}

// -- the path ----------------------------------------------------------------------------------

function pick(id) {
  const src = $("src"), dst = $("dst");
  if (!src.value || (src.value && dst.value)) { src.value = id; dst.value = ""; }
  else if (id !== src.value) dst.value = id;
  onPick();
}

function onPick() {
  if (state) drawRegions();
  showPath();
}

async function showPath() {
  const src = $("src").value, dst = $("dst").value, zone = $("zone").value || "global";
  const info = $("path-info");
  const seq = ++pathSeq;
  if (!src || !dst || src === dst) {
    lastPath = null;
    clear(info);
    delete info.dataset.path;
    clear($("route"));
    $("links").classList.remove("dim");
    return;
  }
  const q = new URLSearchParams({ src, dst, zone });
  const r = await fetch(`/api/path?${q}`);
  const data = await r.json();
  if (seq !== pathSeq) return;
  lastPath = r.ok ? data : null;
  clear(info);
  if (!r.ok) {
    info.appendChild(html("div", data.error || `error ${r.status}`, "unreachable"));
    info.dataset.path = "";
    drawRoute();
    return;
  }
  info.dataset.path = data.path.join(",");
  info.dataset.reachable = String(data.reachable);
  if (!data.reachable) {
    info.appendChild(html("div", `${src} → ${dst} in ${zone}: unreachable` +
      (data.reason ? ` (${data.reason})` : ""), "unreachable"));
  } else {
    info.appendChild(html("div", data.path.join(" › "), "hops"));
    info.appendChild(html("div", `cost ${data.cost_ms} ms one way · zone ${data.zone} · ` +
      `routes v${data.version}`, "cost"));
    let backup = "backup: none (no loop-free alternate)";
    if (data.backup_next_hop) {
      backup = `backup: via ${data.backup_next_hop}` +
        (data.backup_kind ? ` (${data.backup_kind})` : "") +
        (data.backup_path ? `: ${data.backup_path.join(" › ")}` : "") +
        (data.backup_cost_ms !== null ? `, ${data.backup_cost_ms} ms` : "");
    }
    const b = html("div", backup, "backup");
    b.id = "path-backup";
    info.appendChild(b);
  }
  drawRoute();
}

function drawRoute() {
  const g = $("route");
  clear(g);
  const regions = byId();
  const p = lastPath;
  $("links").classList.toggle("dim", !!(p && p.reachable));
  if (!p || !p.reachable) return;
  const hops = (path, cls) => {
    for (let i = 0; i + 1 < (path || []).length; i++) {
      const a = regions.get(path[i]), b = regions.get(path[i + 1]);
      if (!a || !b) continue;
      for (const [x1, y1, x2, y2] of segments(a, b)) {
        el("line", { x1, y1, x2, y2, class: cls, "data-hop": `${path[i]}|${path[i + 1]}` }, g);
      }
    }
  };
  hops(p.backup_path, "backup");
  hops(p.path, "route");
}

// -- events and drills ---------------------------------------------------------------------------

function addEvent(e, prepend) {
  const key = `${e.at}|${e.region}|${e.kind}|${e.peer}|${e.detail}`;
  if (shownEvents.has(key)) return;
  shownEvents.add(key);
  const list = $("events");
  const li = html("li");
  li.dataset.kind = e.kind;
  li.appendChild(html("time", fmtTime(e.at)));
  li.appendChild(html("span", e.kind, `k ${e.kind}`));
  const who = e.region === "controller" ? e.peer : (e.peer ? `${e.region} → ${e.peer}` : e.region);
  li.appendChild(html("span", who + (e.detail ? `: ${e.detail}` : "") +
    (e.routes ? ` (${e.routes} routes)` : "")));
  if (prepend) list.insertBefore(li, list.firstChild); else list.appendChild(li);
  while (list.children.length > MAX_EVENTS) list.removeChild(list.lastChild);
}

const MARK_COLOURS = {
  "link-down": "#ff4d5e", "relay-disconnected": "#ff4d5e", "region-unreachable": "#ff4d5e",
  "reroute": "#c9a7ff", "chaos": "#ff9f1c", "link-degraded": "#ff9f1c",
  "link-up": "#3ddc84", "restore": "#3ddc84", "relay-connected": "#3ddc84",
  "region-reachable": "#3ddc84",
};

function renderDrill(d) {
  const panel = $("drill-panel");
  if (!d) { panel.hidden = true; return; }
  panel.hidden = false;
  panel.dataset.phase = d.phase;
  $("drill-phase").textContent = `${d.targets.join(", ")}: ${d.phase}`;
  $("drill-summary").textContent = [
    `began ${fmtTime(d.started_at)}`, `link down after ${fmtMs(d.detect_ms)}`,
    `fast reroute after ${fmtMs(d.reroute_ms)}`,
    d.unreachable_ms !== null ? `unreachable after ${fmtMs(d.unreachable_ms)}` : "",
    d.recovered_ms !== null ? `lifted after ${fmtMs(d.recovered_ms)}` : "",
  ].filter(Boolean).join(" · ");
  const svg = $("drill-timeline");
  clear(svg);
  const end = Math.max(1000, ...d.events.map((e) => e.offset_ms)) * 1.05;
  const x = (ms) => 10 + Math.max(0, ms) / end * 380;
  el("line", { x1: 10, y1: 40, x2: 390, y2: 40, class: "axis" }, svg);
  for (const e of d.events) {
    const colour = MARK_COLOURS[e.kind];
    if (!colour) continue;
    const m = el("line", { x1: x(e.offset_ms), x2: x(e.offset_ms), y1: 18, y2: 46,
      stroke: colour, class: "mark" }, svg);
    el("title", {}, m).textContent = `+${fmtMs(e.offset_ms)} ${e.kind} ${e.region} ${e.peer}`;
  }
  const tick = el("text", { x: 10, y: 57 }, svg);
  tick.textContent = "0";
  const last = el("text", { x: 390, y: 57, "text-anchor": "end" }, svg);
  last.textContent = fmtMs(end);
  const list = $("drill-events");
  clear(list);
  for (const e of d.events.slice(0, 100)) {  // the beginning is what a drill is about
    const li = html("li");
    li.appendChild(html("span", `+${fmtMs(e.offset_ms)}`, "off"));
    li.appendChild(html("span", e.kind, `k ${e.kind}`));
    li.appendChild(html("span", e.region === "controller" ? e.peer :
      (e.peer ? `${e.region} → ${e.peer}` : e.region)));
    list.appendChild(li);
  }
}

// -- live updates ----------------------------------------------------------------------------------

function showProblem(text) {
  const p = $("problem");
  p.textContent = text || "";
  p.hidden = !text;
}

function onState(s) {
  const before = state;
  state = s;
  render();
  // the path follows the routes: asked again when they or a region's state change
  if (lastPath && before && (
    (before.status || {}).route_version !== (s.status || {}).route_version ||
    JSON.stringify(before.regions.map((r) => r.state)) !==
      JSON.stringify(s.regions.map((r) => r.state)))) {
    showPath();
  } else {
    drawRoute();
  }
}

function listen() {
  const es = new EventSource("/events");
  es.onopen = () => $("live").classList.remove("off");
  es.onerror = () => $("live").classList.add("off");
  es.addEventListener("hello", (m) => {
    const h = JSON.parse(m.data);
    onState(h.state);
    clear($("events"));
    shownEvents = new Set();
    for (const e of h.events.slice().reverse()) addEvent(e, false);
    renderDrill(h.drill);
    showProblem(h.error ? `controller: ${h.error}` : "");
  });
  es.addEventListener("state", (m) => onState(JSON.parse(m.data)));
  es.addEventListener("event", (m) => addEvent(JSON.parse(m.data), true));
  es.addEventListener("drill", (m) => renderDrill(JSON.parse(m.data)));
  es.addEventListener("problem", (m) => {
    const p = JSON.parse(m.data);
    showProblem(p.error ? `controller: ${p.error}` : "");
  });
}

async function start() {
  drawGraticule();
  for (const id of ["src", "dst", "zone"]) $(id).addEventListener("change", onPick);
  $("clear").addEventListener("click", () => { $("src").value = ""; $("dst").value = ""; onPick(); });
  $("ramp-hi").textContent = `${RTT_HI}+`;
  await drawWorld();
  try {
    const r = await fetch("/api/state");
    const s = await r.json();
    if (r.ok) onState(s); else showProblem(`controller: ${s.error}`);
  } catch (e) {
    showProblem(String(e));
  }
  await loadZones();
  listen();
  document.body.dataset.ready = "true";
}

start();
