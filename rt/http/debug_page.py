"""The operator page served at GET /debug: one self-contained HTML document.

It carries no data and no secret. In the browser it asks for the admin token, keeps it in
``sessionStorage`` (this tab only), and polls ``/debug/actors`` and ``/debug/faults`` with it
as ``Authorization: Bearer``. Everything it shows is written with ``textContent``, never
parsed as HTML, because actor info can carry text that came from clients. Its inline script
and style are allowed by hash in the Content-Security-Policy sent with it, and nothing else is.
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root { color-scheme: dark;
  --bg: #0f141a; --panel: #161d26; --line: #26313d; --text: #d8e0e8; --dim: #7d8b99;
  --ok: #3fb27f; --warn: #e0a526; --bad: #ef5350; --accent: #4ea1ff;
  --warn-bg: rgba(224, 165, 38, .10); --bad-bg: rgba(239, 83, 80, .16);
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 13px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
code, .mono, td.num, .bar span, #tree td.name { font-family: ui-monospace, "SFMono-Regular",
  Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
header { display: flex; align-items: center; gap: 16px; padding: 10px 16px;
  background: var(--panel); border-bottom: 1px solid var(--line); position: sticky; top: 0;
  z-index: 2; flex-wrap: wrap; }
h1 { font-size: 16px; margin: 0; font-weight: 600; }
h1 span { color: var(--dim); font-weight: 400; }
h2 { font-size: 13px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .06em;
  color: var(--dim); display: flex; align-items: center; justify-content: space-between; }
button, select, input { font: inherit; color: var(--text); background: #0c1117;
  border: 1px solid var(--line); border-radius: 4px; padding: 4px 8px; }
button { cursor: pointer; background: #1d2733; }
button:hover { border-color: var(--accent); }
button.primary { background: #1f4f86; border-color: #2d67a8; }
button.danger { color: #ffb3b1; border-color: #6b2b2a; }
input:focus, select:focus { outline: 1px solid var(--accent); }
.status { display: flex; align-items: center; gap: 6px; color: var(--dim); }
.status::before { content: ""; width: 9px; height: 9px; border-radius: 50%;
  background: var(--dim); }
.status.ok::before { background: var(--ok); box-shadow: 0 0 6px var(--ok); }
.status.bad { color: var(--bad); }
.status.bad::before { background: var(--bad); }
.status.paused::before { background: var(--warn); }
#summary { display: flex; gap: 6px; flex-wrap: wrap; flex: 1; }
.chip { padding: 2px 8px; border-radius: 10px; background: #0c1117; border: 1px solid var(--line);
  white-space: nowrap; }
.chip b { font-weight: 600; }
.chip.warn { border-color: var(--warn); color: var(--warn); }
.chip.bad { border-color: var(--bad); color: var(--bad); }
.spacer { flex: 1; }
#login-panel { display: flex; justify-content: center; padding-top: 12vh; }
#login { width: 420px; background: var(--panel); border: 1px solid var(--line);
  border-radius: 8px; padding: 20px 24px; }
#login h2 { font-size: 15px; text-transform: none; letter-spacing: 0; color: var(--text); }
#login p { color: var(--dim); }
#login input { width: 100%; margin: 6px 0 12px; }
.error { color: var(--bad); margin: 8px 0 0; }
.note { color: var(--ok); margin: 8px 0 0; }
main { display: grid; grid-template-columns: minmax(0, 1fr) 360px; gap: 12px; padding: 12px; }
/* A laptop's window (1280 px and up to 1500): the fault form goes below the tree, so every
   column of the tree, last error and info included, fits without scrolling. */
@media (max-width: 1500px) { main { grid-template-columns: minmax(0, 1fr); } }
section, aside { background: var(--panel); border: 1px solid var(--line); border-radius: 8px;
  padding: 10px 12px; min-width: 0; }
section { overflow-x: auto; }
.toolbar { display: flex; gap: 8px; align-items: center; margin-bottom: 8px; flex-wrap: wrap; }
.toolbar input[type=search] { width: 240px; }
.toolbar label { color: var(--dim); display: flex; gap: 4px; align-items: center; }
#shown { color: var(--dim); margin-left: auto; }
table { width: 100%; border-collapse: collapse; }
th { text-align: left; color: var(--dim); font-weight: 500; padding: 4px 6px;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
td { padding: 3px 6px; border-bottom: 1px solid #1c252f; vertical-align: middle; }
td.num { text-align: right; white-space: nowrap; }
#tree td.name { white-space: nowrap; }
#tree tr.node:hover { background: #1a2430; }
#tree tr.ctx td { opacity: .45; }
#tree tr.warn { background: var(--warn-bg); }
#tree tr.bad { background: var(--bad-bg); }
#tree tr.bad td.name { box-shadow: inset 3px 0 var(--bad); }
#tree tr.warn td.name { box-shadow: inset 3px 0 var(--warn); }
#tree tr.flash { animation: flash 1.5s ease-out; }
@keyframes flash { from { background: rgba(239, 83, 80, .55); } }
.toggle { display: inline-block; width: 14px; color: var(--dim); cursor: pointer;
  user-select: none; }
.pick { cursor: pointer; }
.pick:hover { color: var(--accent); text-decoration: underline; }
.kind { color: #9fb3c8; }
.state { padding: 0 6px; border-radius: 3px; font-size: 12px; }
.state.running { color: var(--ok); opacity: .8; }
.state.restarting { color: #fff; background: var(--bad); }
.state.starting, .state.stopping { color: var(--warn); }
.state.stopped { color: var(--dim); }
.bar { position: relative; width: 110px; height: 16px; background: #0c1117;
  border: 1px solid var(--line); border-radius: 3px; overflow: hidden; }
.bar + .bar { margin-top: 2px; }
.bar div { height: 100%; background: var(--ok); opacity: .55; }
.bar div.warn { background: var(--warn); opacity: .8; }
.bar div.bad { background: var(--bad); opacity: .9; }
.bar span { position: absolute; inset: 0; padding: 0 4px; line-height: 14px; font-size: 11px;
  white-space: nowrap; }
td.err div:not(:empty) { min-width: 220px; }
td.err div { color: #ff8a80; max-width: 250px; overflow-wrap: anywhere;
  display: -webkit-box; -webkit-line-clamp: 2; -webkit-box-orient: vertical; overflow: hidden; }
/* The info column takes the width left, and clips at two lines (its title has it all). */
td.info { color: var(--dim); font-size: 12px; width: 30%; max-width: 0; }
td.info div { overflow: hidden; overflow-wrap: anywhere; display: -webkit-box;
  -webkit-line-clamp: 2; -webkit-box-orient: vertical; }
.info b { color: #aab7c4; font-weight: 500; }
.zap { color: #ffd54f; margin-left: 6px; font-size: 11px; }
tr.more td { color: var(--dim); font-style: italic; }
#fault-form { display: grid; grid-template-columns: 64px minmax(0, 1fr); gap: 6px 8px;
  align-items: center; margin-bottom: 16px; }
#fault-form label { color: var(--dim); }
#fault-form .row2 { display: flex; gap: 6px; }
#fault-form .row2 > * { min-width: 0; flex: 1; }
#fault-form input, #fault-form select { width: 100%; min-width: 0; }
#fault-form .row2 select { flex: 0 0 80px; }
#fault-form .full { grid-column: 1 / -1; }
#fault-form input:disabled { opacity: .4; }
#faults td { font-size: 12px; }
#faults td { overflow-wrap: anywhere; }
#faults .target { font-family: ui-monospace, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
#faults td:last-child { text-align: right; }
#faults .muted { color: var(--dim); }
.empty { color: var(--dim); padding: 8px 0; }
[hidden] { display: none !important; }
"""

SCRIPT = r"""
"use strict";
(() => {
  const KEY = "rt.http.debug.adminToken";
  const POLL_MS = 1500;
  const STALE_MS = 5000;
  const MAX_CHILDREN = 200;
  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(KEY);
  let timer = null;
  let paused = false;
  let data = null;
  let faults = [];
  let lastOk = 0;
  const collapsed = new Set();
  let restartsSeen = new Map();

  class Unauthorized extends Error {}

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }

  async function api(method, path, body) {
    const init = { method, cache: "no-store", credentials: "omit",
                   headers: { "Authorization": "Bearer " + token } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let payload = null;
    try { payload = await response.json(); } catch (e) { payload = null; }
    const message = payload && payload.message ? payload.message : "HTTP " + response.status;
    if (response.status === 401) throw new Unauthorized(message);
    if (!response.ok) throw new Error(message);
    return payload;
  }

  // -- signing in and out --------------------------------------------------------------

  function showLogin(message) {
    $("app").hidden = true;
    $("controls").hidden = true;
    $("login-panel").hidden = false;
    const error = $("login-error");
    error.hidden = !message;
    error.textContent = message || "";
    setStatus("signed out", "");
    $("token").focus();
  }

  function showApp() {
    $("login-panel").hidden = true;
    $("app").hidden = false;
    $("controls").hidden = false;
  }

  function signOut(message) {
    clearTimeout(timer);
    token = null;
    data = null;
    sessionStorage.removeItem(KEY);
    showLogin(message);
  }

  $("login").addEventListener("submit", async (event) => {
    event.preventDefault();
    const given = $("token").value.trim();
    if (!given) { showLogin("Enter the admin token."); return; }
    token = given;
    $("login-submit").disabled = true;
    try {
      await refresh();
      sessionStorage.setItem(KEY, token);
      $("token").value = "";
      showApp();
      setStatus("live", "ok");
      schedule();
    } catch (e) {
      token = null;
      showLogin(e instanceof Unauthorized
        ? "Wrong admin token: the server refused it (401)."
        : "Could not reach the server: " + e.message);
    } finally {
      $("login-submit").disabled = false;
    }
  });

  $("logout").addEventListener("click", () => signOut(""));
  $("pause").addEventListener("click", () => {
    paused = !paused;
    $("pause").textContent = paused ? "Resume" : "Pause";
    setStatus(paused ? "paused" : "live", paused ? "paused" : "ok");
    if (!paused) tick();
  });

  // -- polling -------------------------------------------------------------------------

  async function refresh() {
    const [actors, armed] = await Promise.all([
      api("GET", "/debug/actors"), api("GET", "/debug/faults")]);
    data = actors;
    faults = armed.faults;
    lastOk = Date.now();
    render();
  }

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(tick, POLL_MS);
  }

  async function tick() {
    if (!token) return;
    if (!paused) {
      try {
        await refresh();
        setStatus("live · " + new Date(lastOk).toLocaleTimeString(), "ok");
      } catch (e) {
        if (e instanceof Unauthorized) {
          signOut("The server no longer accepts this token; sign in again.");
          return;
        }
        const age = lastOk ? Math.round((Date.now() - lastOk) / 1000) + " s old" : "no data";
        setStatus("server unreachable (" + e.message + "), data " + age, "bad");
      }
    }
    if (token) schedule();
  }

  function setStatus(text, cls) {
    const status = $("status");
    status.textContent = text;
    status.className = "status " + (cls || "");
  }

  // -- the tree ------------------------------------------------------------------------

  function ratio(depth, capacity) {
    return typeof depth === "number" && capacity ? depth / capacity : 0;
  }

  function outbox(node) {
    const info = node.info || {};
    return typeof info.outbox_depth === "number" && typeof info.outbox_capacity === "number"
      ? [info.outbox_depth, info.outbox_capacity] : null;
  }

  function fullness(node) {
    const m = node.mailbox;
    const o = outbox(node);
    return Math.max(m ? ratio(m.depth, m.capacity) : 0, o ? ratio(o[0], o[1]) : 0);
  }

  // "bad": crashed and not back yet, crashed in the last minute, or a mailbox 80% full;
  // "warn": restarted before, starting or stopping, or a mailbox half full.
  function level(node) {
    const full = fullness(node);
    if (node.state === "restarting" || full >= 0.8) return "bad";
    if (node.restarts > 0 && node.uptime_s < 60) return "bad";
    if (node.restarts > 0 || node.last_error || full >= 0.5) return "warn";
    if (node.state === "starting" || node.state === "stopping") return "warn";
    return "";
  }

  function filters() {
    return { kind: $("kind-filter").value, text: $("name-filter").value.trim().toLowerCase(),
             problems: $("problems-only").checked };
  }

  function selfMatches(node, f) {
    if (f.kind && node.kind !== f.kind) return false;
    if (f.text && !(String(node.name).toLowerCase().includes(f.text)
                    || String(node.path).toLowerCase().includes(f.text))) return false;
    if (f.problems && !level(node)) return false;
    return true;
  }

  // Marks which nodes to show: those that match, and their ancestors (as context).
  function mark(node, f, shown) {
    let any = false;
    for (const child of node.children || []) any = mark(child, f, shown) || any;
    const self = selfMatches(node, f);
    if (self || any) shown.set(node.path, self);
    return self || any;
  }

  function uptime(s) {
    if (typeof s !== "number") return "";
    if (s < 60) return s.toFixed(s < 10 ? 1 : 0) + "s";
    const two = (n) => String(Math.floor(n)).padStart(2, "0");
    if (s < 3600) return Math.floor(s / 60) + "m " + two(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + two(s % 3600 / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }

  // Rows are kept per path and updated in place, so a poll never replaces an element that
  // the operator is about to click (or that a test holds).
  function setText(e, text) {
    const t = text === undefined || text === null ? "" : String(text);
    if (e.textContent !== t) e.textContent = t;
  }

  function setClass(e, cls) {
    if (e.className !== cls) e.className = cls;
  }

  function makeBar() {
    const wrap = el("div", "bar");
    wrap.append(el("div"), el("span"));
    return wrap;
  }

  function setBar(wrap, depth, capacity, label) {
    const r = Math.min(1, ratio(depth, capacity));
    const [fill, text] = wrap.children;
    setClass(fill, r >= 0.8 ? "bad" : r >= 0.5 ? "warn" : "");
    fill.style.width = (depth > 0 ? Math.max(2, r * 100) : 0) + "%";
    setText(text, (label ? label + " " : "") + depth + "/" + capacity);
    wrap.title = (label || "mailbox") + ": " + depth + " queued of " + capacity;
  }

  function short(value) {
    if (Array.isArray(value)) {
      const head = value.slice(0, 6).map((v) => typeof v === "object" ? JSON.stringify(v) : v);
      return "[" + head.join(", ") + (value.length > 6 ? ", +" + (value.length - 6) : "") + "]";
    }
    if (value !== null && typeof value === "object") return JSON.stringify(value);
    return String(value);
  }

  function setInfo(td, info) {
    const json = JSON.stringify(info || {});
    if (td.dataset.json === json) return;
    td.dataset.json = json;
    const parts = [];
    for (const [k, v] of Object.entries(info || {})) {
      if (k === "outbox_depth" || k === "outbox_capacity") continue;
      if (parts.length) parts.push(" ");
      parts.push(el("b", "", k + "="), short(v));
    }
    const clip = el("div");
    clip.append(...parts);
    td.replaceChildren(clip);
    td.title = JSON.stringify(info || {}, null, 1);
  }

  function faultsByPath() {
    const by = new Map();
    for (const f of faults) {
      for (const path of f.matches || []) {
        if (!by.has(path)) by.set(path, []);
        by.get(path).push(f);
      }
    }
    return by;
  }

  const rowCache = new Map();

  function makeRow(path) {
    const r = { tr: el("tr", "node") };
    r.tr.dataset.path = path;
    const name = el("td", "name");
    r.name = name;
    r.toggle = el("span", "toggle");
    r.toggle.addEventListener("click", () => {
      if (!r.toggle.textContent) return;
      if (collapsed.has(path)) collapsed.delete(path); else collapsed.add(path);
      render();
    });
    r.label = el("span", "pick");
    r.label.title = "path: " + path + " (click to target it with a fault)";
    r.label.addEventListener("click", () => target("actor", path));
    r.folded = el("span", "kind");
    r.zaps = el("span");
    name.append(r.toggle, r.label, r.folded, r.zaps);
    const kind = el("td");
    r.kind = el("span", "kind pick");
    r.kind.addEventListener("click", () => {
      if (r.tr.dataset.kind) target("kind", r.tr.dataset.kind);
    });
    kind.append(r.kind);
    const state = el("td");
    r.state = el("span");
    state.append(r.state);
    r.mailbox = el("td");
    r.mbar = makeBar();
    r.obar = makeBar();
    r.dropped = el("td", "num");
    r.processed = el("td", "num");
    r.restarts = el("td", "num");
    r.uptime = el("td", "num");
    r.err = el("td", "err");
    r.errText = el("div");
    r.err.append(r.errText);
    r.info = el("td", "info");
    r.tr.append(name, kind, state, r.mailbox, r.dropped, r.processed, r.restarts, r.uptime,
      r.err, r.info);
    return r;
  }

  function updateRow(r, node, depth, self, zaps) {
    const prev = restartsSeen.get(node.path);
    const flash = prev !== undefined && node.restarts > prev ? " flash" : "";
    setClass(r.tr, "node " + level(node) + (self ? "" : " ctx") + flash);
    r.tr.dataset.kind = node.kind === null ? "" : node.kind;
    r.tr.dataset.state = node.state;
    r.name.style.paddingLeft = (6 + depth * 16) + "px";
    const kids = (node.children || []).length;
    const folded = kids > 0 && collapsed.has(node.path);
    setText(r.toggle, kids ? (folded ? "▸" : "▾") : "");
    setText(r.label, node.name);
    setText(r.folded, folded ? " (" + kids + ")" : "");
    const marks = (zaps.get(node.path) || []).map((f) => "⚡#" + f.id + " " + f.action + "@"
      + f.point);
    if (r.zaps.dataset.marks !== marks.join("|")) {
      r.zaps.dataset.marks = marks.join("|");
      r.zaps.replaceChildren(...marks.map((m) => el("span", "zap", m)));
    }
    setText(r.kind, node.kind);
    r.kind.title = node.kind === null ? "" : "click to target every " + node.kind + " with a fault";
    setText(r.state, node.state);
    setClass(r.state, "state " + node.state);
    const bars = [];
    if (node.mailbox) {
      setBar(r.mbar, node.mailbox.depth, node.mailbox.capacity, "");
      bars.push(r.mbar);
    }
    const o = outbox(node);
    if (o) {
      setBar(r.obar, o[0], o[1], "outbox");
      bars.push(r.obar);
    }
    if (r.mailbox.children.length !== bars.length) r.mailbox.replaceChildren(...bars);
    const m = node.mailbox || {};
    setText(r.dropped, m.dropped);
    setText(r.processed, m.processed);
    setText(r.restarts, node.restarts);
    setText(r.uptime, uptime(node.uptime_s));
    setText(r.errText, node.last_error);
    r.err.title = node.last_error || "";
    setInfo(r.info, node.info);
  }

  function note(text, depth) {
    const tr = el("tr", "more");
    const td = el("td", depth === undefined ? "empty" : "", text);
    td.colSpan = 10;
    if (depth !== undefined) td.style.paddingLeft = (22 + depth * 16) + "px";
    tr.append(td);
    return tr;
  }

  function render() {
    if (!data) return;
    const tree = data.tree;
    const f = filters();
    const shown = new Map();
    mark(tree, f, shown);
    const zaps = faultsByPath();
    const rows = [];
    const live = new Set();
    let matched = 0;
    const walk = (node, depth) => {
      live.add(node.path);
      (node.children || []).forEach((c) => walk(c, depth + 1));
    };
    walk(tree, 0);
    const place = (node, depth) => {
      if (!shown.has(node.path)) return;
      const self = shown.get(node.path);
      if (self) matched += 1;
      let r = rowCache.get(node.path);
      if (!r) {
        r = makeRow(node.path);
        rowCache.set(node.path, r);
      }
      updateRow(r, node, depth, self, zaps);
      rows.push(r.tr);
      if (collapsed.has(node.path)) return;
      const kids = (node.children || []).filter((c) => shown.has(c.path));
      kids.slice(0, MAX_CHILDREN).forEach((c) => place(c, depth + 1));
      if (kids.length > MAX_CHILDREN) {
        rows.push(note("… " + (kids.length - MAX_CHILDREN) + " more under " + node.path
          + ": narrow the filter to see them", depth + 1));
      }
    };
    place(tree, 0);
    for (const path of rowCache.keys()) if (!live.has(path)) rowCache.delete(path);
    if (!rows.length) rows.push(note("No actor matches these filters."));
    const body = $("tree-body");
    const current = body.children;
    if (current.length !== rows.length || rows.some((tr, i) => current[i] !== tr)) {
      body.replaceChildren(...rows);
    }
    setText($("shown"), matched + " of " + data.summary.actors + " actors");
    const seen = new Map();
    const all = [tree];
    while (all.length) {
      const n = all.pop();
      seen.set(n.path, n.restarts);
      all.push(...(n.children || []));
    }
    restartsSeen = seen;
    renderSummary();
    renderKinds();
    renderTargets(tree);
    renderFaults();
  }

  function chip(label, value, cls) {
    const c = el("span", "chip " + (cls || ""));
    c.append(el("b", "", value), " " + label);
    return c;
  }

  function renderSummary() {
    const s = data.summary;
    const chips = [chip("actors", s.actors)];
    for (const [state, n] of Object.entries(s.states).sort()) {
      const cls = state === "restarting" ? "bad" : state === "running" ? "" : "warn";
      chips.push(chip(state, n, cls));
    }
    chips.push(chip("restarts", s.restarts, s.restarts ? "warn" : ""));
    chips.push(chip("with errors", s.with_errors, s.with_errors ? "warn" : ""));
    chips.push(chip("connections", s.kinds.connection || 0));
    chips.push(chip("faults armed", s.faults, s.faults ? "bad" : ""));
    $("summary").replaceChildren(...chips);
  }

  function renderKinds() {
    const select = $("kind-filter");
    const kinds = Object.keys(data.summary.kinds).sort();
    const have = Array.from(select.options).slice(1).map((o) => o.value);
    if (have.join("\n") === kinds.join("\n")) return;
    const current = select.value;
    const options = [el("option", "", "all kinds")];
    options[0].value = "";
    for (const k of kinds.concat(current && !kinds.includes(current) ? [current] : [])) {
      const o = el("option", "", k);
      o.value = k;
      options.push(o);
    }
    select.replaceChildren(...options);
    select.value = current;
  }

  function renderTargets(tree) {
    const list = $("targets");
    const values = [];
    if ($("fault-target-type").value === "kind") {
      values.push(...Object.keys(data.summary.kinds).sort());
    } else {
      const all = [tree];
      while (all.length && values.length < 500) {
        const n = all.shift();
        if (n.path !== "/") values.push(n.path);
        all.push(...(n.children || []));
      }
    }
    list.replaceChildren(...values.map((v) => { const o = el("option"); o.value = v; return o; }));
  }

  const faultRows = new Map();
  const nothingArmed = note("Nothing armed.");

  function faultRow(f) {
    let r = faultRows.get(f.id);
    if (!r) {
      r = { tr: el("tr", "fault"), what: el("td"), target: el("div"), count: el("div", "muted"),
            how: el("td", "muted"), button: el("button", "danger disarm", "Disarm") };
      r.tr.dataset.id = f.id;
      r.button.addEventListener("click", () => disarm(f.id));
      r.target.className = "target";
      r.what.append(el("b", "", "#" + f.id + " " + f.action), " @ " + f.point, r.target, r.count);
      const cell = el("td");
      cell.append(r.button);
      r.tr.append(r.what, r.how, cell);
      faultRows.set(f.id, r);
    }
    setText(r.target, f.actor !== null ? f.actor : "kind " + f.kind);
    const matches = f.matches || [];
    setText(r.count, plural(matches.length, "live match"));
    r.what.title = matches.join("\n") || "no live actor matches now";
    const terms = ["fired " + f.fired + (f.count !== null ? "/" + f.count : "")];
    if (f.after) terms.push("after " + f.after);
    if (f.action === "delay") terms.push(f.delay_s + " s");
    setText(r.how, terms.join(", "));
    return r.tr;
  }

  function renderFaults() {
    const body = $("faults-body");
    $("disarm-all").disabled = !faults.length;
    const ids = new Set(faults.map((f) => f.id));
    for (const id of faultRows.keys()) if (!ids.has(id)) faultRows.delete(id);
    const rows = faults.length ? faults.map(faultRow) : [nothingArmed];
    const current = body.children;
    if (current.length !== rows.length || rows.some((tr, i) => current[i] !== tr)) {
      body.replaceChildren(...rows);
    }
  }

  // -- faults --------------------------------------------------------------------------

  function target(type, value) {
    $("fault-target-type").value = type;
    $("fault-target").value = value;
    if (data) renderTargets(data.tree);
  }

  function syncForm() {
    const action = $("fault-action").value;
    const point = $("fault-point");
    if (action === "cut") { point.value = "upstream"; point.disabled = true; }
    else {
      if (point.disabled) point.value = "message";
      point.disabled = false;
    }
    $("fault-delay").disabled = action !== "delay";
    $("fault-delay").required = action === "delay";
  }
  $("fault-action").addEventListener("change", syncForm);
  $("fault-target-type").addEventListener("change", () => { if (data) renderTargets(data.tree); });

  function faultMessage(text, ok) {
    const m = $("fault-message");
    m.className = ok ? "note full" : "error full";
    m.textContent = text;
    m.hidden = !text;
  }

  $("fault-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { action: $("fault-action").value };
    body[$("fault-target-type").value] = $("fault-target").value.trim();
    if (body.action !== "cut") body.point = $("fault-point").value.trim() || "message";
    const count = $("fault-count").value.trim();
    const after = $("fault-after").value.trim();
    const delay = $("fault-delay").value.trim();
    if (count) body.count = Number(count);
    if (after) body.after = Number(after);
    if (body.action === "delay" && delay) body.delay_s = Number(delay);
    try {
      const fault = await api("POST", "/debug/faults", body);
      const n = fault.matches.length;
      faultMessage("Armed fault #" + fault.id + " (" + plural(n, "live match") + ").", true);
    } catch (e) {
      failed(e);
    }
    if (token) refresh().catch(() => { /* the next tick reports it */ });
  });

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : word.endsWith("ch") ? "es" : "s");
  }

  function failed(e) {
    if (e instanceof Unauthorized) signOut("The server no longer accepts this token.");
    else faultMessage(e.message, false);
  }

  async function disarm(id) {
    try {
      await api("DELETE", "/debug/faults/" + encodeURIComponent(id));
      faultMessage("Disarmed fault #" + id + ".", true);
    } catch (e) {
      failed(e);
    }
    if (token) refresh().catch(() => { /* the next tick reports it */ });
  }

  $("disarm-all").addEventListener("click", async () => {
    try {
      const r = await api("DELETE", "/debug/faults");
      faultMessage("Disarmed " + plural(r.disarmed, "fault") + ".", true);
    } catch (e) {
      failed(e);
    }
    if (token) refresh().catch(() => { /* the next tick reports it */ });
  });

  for (const id of ["kind-filter", "name-filter", "problems-only"]) {
    $(id).addEventListener("input", render);
    $(id).addEventListener("change", render);
  }

  // -- start ---------------------------------------------------------------------------

  syncForm();
  if (token) {
    refresh().then(() => { showApp(); setStatus("live", "ok"); schedule(); }, (e) => {
      if (e instanceof Unauthorized) signOut("The saved token was refused; sign in again.");
      else { showApp(); setStatus("server unreachable (" + e.message + ")", "bad"); schedule(); }
    });
  } else {
    showLogin("");
  }
})();
"""

BODY = """
<header>
  <h1>rt <span>actors</span></h1>
  <div id="status" class="status">signed out</div>
  <div id="summary"></div>
  <div id="controls" hidden>
    <button id="pause" type="button">Pause</button>
    <button id="logout" type="button">Sign out</button>
  </div>
</header>
<div id="login-panel">
  <form id="login" autocomplete="off">
    <h2>Sign in</h2>
    <p>Enter the server's admin token (<code>RT_ADMIN_TOKEN</code>). It stays in this tab
    (sessionStorage) and is sent only as an <code>Authorization: Bearer</code> header.</p>
    <input id="token" type="password" placeholder="admin token" aria-label="admin token">
    <button id="login-submit" class="primary" type="submit">Sign in</button>
    <p id="login-error" class="error" role="alert" hidden></p>
  </form>
</div>
<main id="app" hidden>
  <section>
    <div class="toolbar">
      <select id="kind-filter" aria-label="filter by kind">
        <option value="">all kinds</option>
      </select>
      <input id="name-filter" type="search" placeholder="filter by name or path"
        aria-label="filter by name">
      <label><input id="problems-only" type="checkbox"> problems only</label>
      <span id="shown"></span>
    </div>
    <table id="tree">
      <thead><tr>
        <th>actor</th><th>kind</th><th>state</th><th>mailbox</th><th>dropped</th>
        <th>processed</th><th>restarts</th><th>uptime</th><th>last error</th><th>info</th>
      </tr></thead>
      <tbody id="tree-body"></tbody>
    </table>
  </section>
  <aside>
    <h2>Inject a fault</h2>
    <form id="fault-form" autocomplete="off">
      <label for="fault-target">target</label>
      <div class="row2">
        <select id="fault-target-type" aria-label="target type">
          <option value="actor">actor</option><option value="kind">kind</option>
        </select>
        <input id="fault-target" list="targets" required placeholder="rooms/market:1001">
      </div>
      <datalist id="targets"></datalist>
      <label for="fault-action">action</label>
      <select id="fault-action">
        <option value="crash">crash</option><option value="delay">delay</option>
        <option value="drop">drop</option><option value="stall">stall</option>
        <option value="cut">cut (feed upstream)</option>
      </select>
      <label for="fault-point">point</label>
      <input id="fault-point" value="message">
      <label for="fault-count">count</label>
      <input id="fault-count" type="number" min="1" placeholder="times per actor (crash, drop: 1)">
      <label for="fault-after">after</label>
      <input id="fault-after" type="number" min="0" placeholder="hits to let pass first (0)">
      <label for="fault-delay">delay_s</label>
      <input id="fault-delay" type="number" min="0" step="any" placeholder="seconds (delay only)">
      <button id="fault-arm" class="primary full" type="submit">Arm fault</button>
      <p id="fault-message" class="error full" role="alert" hidden></p>
    </form>
    <h2>Armed faults <button id="disarm-all" class="danger" type="button">Disarm all</button></h2>
    <table id="faults"><tbody id="faults-body"></tbody></table>
  </aside>
</main>
"""


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


PAGE = (
    '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
    '<meta name="referrer" content="no-referrer">\n'
    "<title>rt · actors</title>\n"
    '<link rel="icon" href="data:,">\n'
    f"<style>{STYLE}</style>\n</head>\n<body>{BODY}<script>{SCRIPT}</script>\n</body>\n</html>\n"
)

#: Only this page's own script and style run; it talks to its own origin and nothing else.
CONTENT_SECURITY_POLICY = (
    f"default-src 'none'; script-src {_sha256(SCRIPT)}; style-src {_sha256(STYLE)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
