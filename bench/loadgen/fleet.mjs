// The client fleet of rt's benchmarks: many /ws/odds clients, checking every message.
//
//   node fleet.mjs [--workers N]
//
// The main process reads one JSON command per line on stdin and answers each with one JSON
// line on stdout; it forks N worker processes that hold the WebSocket clients, and sums up
// what they report. bench/fleet.py is the Python side. Commands (op):
//
//   hello                                    -> {pids}
//   connect {url, clients:[{token, markets}], concurrency, timeout_s}
//                                            -> {ok, failed, elapsed_s}  (ack + snapshots in)
//   connect {urls, clients:[{token, markets, node}]}
//                                            several nodes of one server: client c connects
//                                            to urls[c.node] (and stays there)
//   connect {url, dialect: "predictions", rules, clients:[{token, tier, subs, markets}]}
//                                            seed 002 clients (S6): each sends one subscribe
//                                            per entry of subs, ready once each is confirmed
//   disconnect                               close every client (they keep their seqs)
//   resume {url, targets:{market: seq}, timeout_s}
//                                            -> every client reconnects at once with
//                                               resume {offsets: its last seqs}; elapsed_s
//                                               until the last one has seq >= target
//   resume {urls, move: k, targets, timeout_s}
//                                            the same, each client to urls[(node + k) %
//                                               urls.length] (k = 1: the other node)
//   wait_seq {targets, timeout_s}            -> {ok, behind}: every client has seq >= target
//   mark                                     start a measurement window
//   stats                                    -> counters, and latency percentiles of the window
//   credit_start {port, market, window}      keep the server's publisher at most `window`
//   credit_stop                                publishes ahead of the slowest client
//   churn {url, tokens, market, concurrency, duration_s}
//                                            -> {cycles, failed, elapsed_s}: connect,
//                                               subscribe, get the snapshot, close, repeat
//                                               (with urls: loop i on urls[i % urls.length])
//   exit
//
// Every message is checked against the delivery contract per client and market: an
// odds_update must be seq = last + 1 (a conflated one must start there), a snapshot sets the
// position. Gaps (seq > last + 1) and steps back (seq <= last: duplicates, reorders) are
// counted and must stay 0. Latency: the bench publisher puts CLOCK_MONOTONIC microseconds in
// each payload (pt: published, st: scheduled), which this process reads too.
//
// A predictions client (S6) checks its events the same way: the bench publishes events that
// are a function of (match, n) (bench/servers/predictions_plan.py, passed as `rules`), so a
// client knows which n of each match its tier and subscriptions take: the next event of a
// match must be exactly the next such n.
//
// FLEET_CPU_PROF=<dir> writes a V8 CPU profile of each worker there (to check that the
// fleet is not what limits a run).

import { fork } from 'node:child_process';
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { serveOps, settleOnce } from './control.mjs';

const ORIGIN_US = Number(process.hrtime.bigint() / 1000n) - performance.now() * 1000;
const nowUs = () => ORIGIN_US + performance.now() * 1000;
const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 15000 };
const MAX_TIMEOUT_MS = 120000;

// Latency histogram: 10 us buckets to 10 ms, 1 ms to 1 s, 100 ms to 100 s.
const H_SIZE = 3000;
function bucket(us) {
  if (us < 0) us = 0;
  if (us < 1e4) return Math.floor(us / 10);
  if (us < 1e6) return 1000 + Math.floor((us - 1e4) / 1e3);
  if (us < 1e8) return 1990 + Math.floor((us - 1e6) / 1e5);
  return H_SIZE - 1;
}
function bucketMidUs(i) {
  if (i < 1000) return i * 10 + 5;
  if (i < 1990) return 1e4 + (i - 1000) * 1e3 + 500;
  return 1e6 + (i - 1990) * 1e5 + 5e4;
}

// A market id as the server writes it (S6's plan names matches "match:<id>").
const key = (market) => {
  const s = String(market).replace(/^match:/, '');
  return /^\d+$/.test(s) ? Number(s) : s;
};
const timeoutMs = (s, dflt) => Math.min((s ?? dflt) * 1000, MAX_TIMEOUT_MS);

// ---------------------------------------------------------------------------- worker

function worker() {
  const clients = [];
  const S = {
    updates: 0, snapshots: 0, conflated: 0, resyncs: 0, gaps: 0, backward: 0,
    unexpected: 0, errors: 0, resumed: 0, resumed_lost: 0, closed_unexpectedly: 0,
    conn_errors: 0, reconnects: 0, window_updates: 0,
  };
  const closeCodes = {};
  const errorSamples = {};
  const noteError = (err) => {
    S.conn_errors++;
    const text = String(err && err.message || err).slice(0, 80);
    if (Object.keys(errorSamples).length < 5 || text in errorSamples) errorSamples[text] = (errorSamples[text] || 0) + 1;
  };
  let measuring = false;
  let histPt = new Uint32Array(H_SIZE);
  let histSt = new Uint32Array(H_SIZE);
  let creditTimer = null;

  // S6: the predictions dialect. Which events a client takes, from the rules of the plan.
  const FREE = new Set(['prediction_created', 'match_started']);
  const KIND = (t) => t.startsWith('prediction_') ? 'predictions' : t.startsWith('match_') ? 'matches'
    : t.startsWith('odds_') ? 'odds' : t.startsWith('system_') ? 'system_alerts' : 'analytics';
  let rules = null;
  function takes(c, match, n) {
    const type = rules.rotation[n % rules.rotation.length];
    if (c.tier === 'free' && !FREE.has(type)) return false;
    const league = rules.leagues[match % rules.leagues.length];
    const confidence = rules.confidences[n % rules.confidences.length];
    return c.subs.some((s) => s.subscription_type === KIND(type)
      && (!s.filters.match_ids || s.filters.match_ids.includes(match))
      && (!s.filters.leagues || s.filters.leagues.includes(league))
      && (s.filters.min_confidence == null || confidence >= s.filters.min_confidence));
  }
  // The last n <= upto of `match` that c takes (0: none).
  function lastTaken(c, match, upto) {
    for (let n = upto; n > 0 && n > upto - 200; n--) if (takes(c, match, n)) return n;
    return 0;
  }
  function nextTaken(c, match, after) {
    for (let n = after + 1; n <= after + 200; n++) if (takes(c, match, n)) return n;
    return Infinity;
  }

  function onEvent(c, msg) {
    const type = msg.event_type;
    if (type === 'user_subscription_changed') {
      if (c.needSnapshots > 0 && --c.needSnapshots === 0 && c.onReady) c.onReady(true);
      return;
    }
    if (type === 'error') { S.errors++; return; }
    if (type === 'connection_status' || type === 'heartbeat' || type === 'stats') return;
    if (type === 'data_refresh') { S.resyncs++; c.last.clear(); return; }
    const d = msg.data;
    if (!d || typeof d.n !== 'number') { S.unexpected++; return; }
    S.updates++;
    const last = c.last.get(d.match_id) ?? 0;
    if (!takes(c, d.match_id, d.n)) S.unexpected++;  // not for this client
    else if (d.n <= last) S.backward++;
    else if (d.n !== nextTaken(c, d.match_id, last)) S.gaps++;
    if (d.n > last) c.last.set(d.match_id, d.n);
    if (measuring) {
      S.window_updates++;
      const now = nowUs();
      histPt[bucket(now - d.pt)]++;
      histSt[bucket(now - d.st)]++;
    }
  }

  function onMessage(c, data) {
    let msg;
    try { msg = JSON.parse(data); } catch { S.errors++; return; }
    if (msg.event_type !== undefined) { onEvent(c, msg); return; }
    const type = msg.type;
    if (type === 'odds_update') {
      S.updates++;
      const k = msg.marketId;
      const last = c.last.get(k);
      if (last === undefined) S.unexpected++;
      else {
        const from = msg.conflated ? msg.fromSeq : msg.seq;
        if (from !== last + 1) {
          if (msg.seq <= last) S.backward++; else S.gaps++;
        }
        if (msg.seq > last) c.last.set(k, msg.seq);
      }
      if (msg.conflated) S.conflated++;
      if (measuring) {
        S.window_updates++;
        const p = msg.payload;
        if (p && p.pt) {
          const now = nowUs();
          histPt[bucket(now - p.pt)]++;
          histSt[bucket(now - p.st)]++;
        }
      }
      if (c.target) checkCaughtUp(c);
    } else if (type === 'snapshot') {
      S.snapshots++;
      const k = msg.marketId;
      const last = c.last.get(k);
      if (last !== undefined && msg.seq < last && msg.recovered !== false) S.backward++;
      c.last.set(k, msg.seq);
      if (msg.resync) S.resyncs++;
      if (c.needSnapshots > 0 && --c.needSnapshots === 0 && c.onReady) c.onReady(true);
      if (c.target) checkCaughtUp(c);
    } else if (type === 'resumed') {
      S.resumed++;
      if (!msg.recovered) S.resumed_lost++;
    } else if (type === 'error') {
      S.errors++;
    }
  }

  function checkCaughtUp(c) {
    for (const [k, seq] of c.target) if ((c.last.get(k) ?? -1) < seq) return;
    c.target = null;
    c.caughtUs = nowUs();
    if (c.onReady) c.onReady(true);
  }

  function open(c, url, first, onSettled) {
    const settle = settleOnce(c, onSettled);
    c.closing = false;
    const ws = new WebSocket((c.url || url) + encodeURIComponent(c.token || 'none'), WS_OPTIONS);
    c.ws = ws;
    ws.on('open', () => { for (const m of [].concat(first)) ws.send(JSON.stringify(m)); });
    ws.on('message', (data) => onMessage(c, data));
    ws.on('error', noteError);
    ws.on('close', (code) => {
      if (c.ws === ws) c.ws = null;
      if (!c.closing) { S.closed_unexpectedly++; closeCodes[code] = (closeCodes[code] || 0) + 1; }
      settle(false);
    });
  }

  // Open `list` with at most `concurrency` handshakes in flight; resolve when each is ready.
  // With `retries`, a client whose connection fails or drops before it is ready reconnects
  // after an exponential, jittered backoff (as real clients do: 0.2 s growing 1.5x per
  // attempt, capped at 5 s), sending firstOf(c) again.
  function openAll(list, url, concurrency, firstOf, ms, retries = 0) {
    return new Promise((resolve) => {
      let next = 0, active = 0, ok = 0, failed = 0, lastUs = nowUs(), finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve({ ok, failed, pending: list.length - ok - failed, t_done_us: lastUs });
      };
      const timer = setTimeout(finish, ms);
      const attempt = (c, left) => {
        open(c, url, firstOf(c), (good) => {
          if (finished) return;
          if (!good && left > 0) {
            S.reconnects++;
            const backoffMs = Math.min(5000, 200 * 1.5 ** (retries - left));
            setTimeout(() => attempt(c, left - 1), backoffMs * (0.5 + Math.random()));
            return;
          }
          active--;
          if (good) { ok++; lastUs = nowUs(); } else failed++;
          if (ok + failed === list.length) finish(); else pump();
        });
      };
      const pump = () => {
        while (active < concurrency && next < list.length) {
          active++;
          attempt(list[next++], retries);
        }
      };
      if (list.length === 0) finish(); else pump();
    });
  }

  function closeAll(ms) {
    return new Promise((resolve) => {
      const open = clients.filter((c) => c.ws);
      let left = open.length;
      const timer = setTimeout(() => { for (const c of open) c.ws?.terminate(); resolve({ closed: open.length - left }); }, ms);
      if (left === 0) { clearTimeout(timer); resolve({ closed: 0 }); return; }
      for (const c of open) {
        c.closing = true;
        c.ws.once('close', () => { if (--left === 0) { clearTimeout(timer); resolve({ closed: open.length }); } });
        c.ws.close(1000);
      }
    });
  }

  function churnCycle(url, token, subscribe) {
    return new Promise((resolve) => {
      let got = false;
      const ws = new WebSocket(url + encodeURIComponent(token), WS_OPTIONS);
      const timer = setTimeout(() => ws.terminate(), 10000);
      ws.on('open', () => ws.send(subscribe));
      ws.on('message', (data) => {
        if (!got && JSON.parse(data).type === 'snapshot') { got = true; ws.close(1000); }
      });
      ws.on('error', noteError);
      ws.on('close', () => { clearTimeout(timer); resolve(got); });
    });
  }

  async function churn(op) {
    const subscribe = JSON.stringify({ type: 'subscribe', markets: [op.market] });
    const end = performance.now() + timeoutMs(op.duration_s, 5);
    let cycles = 0, failed = 0;
    const t0 = nowUs();
    const urls = op.urls || [op.url];
    await Promise.all(op.tokens.map(async (token, i) => {
      const url = urls[i % urls.length];
      while (performance.now() < end) {
        if (await churnCycle(url, token, subscribe)) cycles++; else failed++;
      }
    }));
    return { cycles, failed, t_start_us: t0, t_end_us: nowUs() };
  }

  // Wait until every connected client has seq >= target; disconnected ones are counted apart.
  function waitSeq(targets, ms) {
    const want = Object.entries(targets).map(([m, s]) => [key(m), s]);
    // A predictions client need only reach the last event it takes (it may take none).
    const reach = (c, k, s) => (c.subs ? lastTaken(c, k, s) : s);
    const have = (c, k) => c.last.get(k) ?? (c.subs ? 0 : -1);
    const behindOn = (c) => want.filter(([k, s]) => c.markets.includes(k) && have(c, k) < reach(c, k, s));
    const isBehind = (c) => behindOn(c).length > 0;
    return new Promise((resolve) => {
      const end = performance.now() + ms;
      const tick = () => {
        const behind = clients.filter((c) => c.ws && isBehind(c)).length;
        if (behind === 0 || performance.now() >= end) {
          const gone = clients.filter((c) => !c.ws && isBehind(c)).length;
          // A few of the clients behind, and where: [market, target, has, must reach].
          const sample = clients.filter((c) => c.ws && isBehind(c)).slice(0, 2).map((c) => ({
            subs: c.subs, tier: c.tier,
            behind: behindOn(c).slice(0, 3).map(([k, s]) => [k, s, have(c, k), reach(c, k, s)]),
          }));
          resolve({ ok: behind === 0, behind, disconnected_behind: gone, sample });
        } else setTimeout(tick, 5);
      };
      tick();
    });
  }

  const handlers = {
    async connect(op) {
      const list = op.clients.map((spec) => ({
        token: spec.token, markets: spec.markets.map(key), last: new Map(), ws: null,
        needSnapshots: 0, target: null, onReady: null, closing: false, caughtUs: 0,
        tier: spec.tier, subs: spec.subs,
        node: spec.node || 0, url: op.urls ? op.urls[(spec.node || 0) % op.urls.length] : null,
      }));
      if (op.dialect === 'predictions') {
        rules = op.rules;
        for (const c of list) { c.needSnapshots = c.subs.length; clients.push(c); }
        return openAll(list, op.url, op.concurrency || 100,
          (c) => c.subs.map((data) => ({ type: 'subscribe', data })), timeoutMs(op.timeout_s, 60));
      }
      for (const c of list) { c.needSnapshots = c.markets.length; clients.push(c); }
      return openAll(list, op.url, op.concurrency || 100,
        (c) => ({ type: 'subscribe', markets: c.markets }), timeoutMs(op.timeout_s, 60));
    },
    disconnect: () => closeAll(10000),
    async resume(op) {
      const target = Object.entries(op.targets).map(([m, s]) => [key(m), s]);
      let moved = 0;
      for (const c of clients) {
        c.target = new Map(target.filter(([k]) => c.markets.includes(k)));
        if (op.urls) {  // to another node of the same server
          const node = (c.node + (op.move || 0)) % op.urls.length;
          if (node !== c.node) moved++;
          c.node = node;
          c.url = op.urls[node];
        }
      }
      const r = await openAll(clients, op.url, Infinity,
        (c) => ({ type: 'resume', offsets: Object.fromEntries(c.last) }), timeoutMs(op.timeout_s, 60),
        op.retries || 0);
      return { ...r, moved };
    },
    wait_seq: (op) => waitSeq(op.targets, timeoutMs(op.timeout_s, 30)),
    mark() {
      measuring = true;
      S.window_updates = 0;
      histPt = new Uint32Array(H_SIZE);
      histSt = new Uint32Array(H_SIZE);
      return {};
    },
    stats() {
      const mins = {};
      for (const c of clients) for (const [k, s] of c.last) mins[k] = Math.min(mins[k] ?? Infinity, s);
      return { counters: S, close_codes: closeCodes, error_samples: errorSamples, hist_pt: Array.from(histPt), hist_st: Array.from(histSt), mins, cpu_us: process.cpuUsage() };
    },
    credit_watch(op) {
      const k = key(op.market);
      let sent = -1;
      clearInterval(creditTimer);
      creditTimer = setInterval(() => {
        let min = Infinity;
        for (const c of clients) { const s = c.last.get(k); if (s !== undefined && s < min) min = s; }
        if (min !== Infinity && min !== sent) { sent = min; process.send({ type: 'min', min }); }
      }, 2);
      return {};
    },
    credit_unwatch() { clearInterval(creditTimer); return {}; },
    churn,
    exit() { setTimeout(() => process.exit(0), 10); return {}; },
  };

  process.on('message', async (msg) => {
    let reply;
    try { reply = await handlers[msg.op](msg); } catch (err) { reply = { error: String(err && err.stack || err) }; }
    process.send({ type: 'reply', id: msg.id, reply });
  });
}

// ------------------------------------------------------------------------------ main

function main(workerCount) {
  const workers = [];
  const waiting = new Map();
  let nextId = 0;
  const mins = new Array(workerCount).fill(undefined);
  let credit = null;

  for (let i = 0; i < workerCount; i++) {
    const execArgv = process.env.FLEET_CPU_PROF ? ['--cpu-prof', '--cpu-prof-dir=' + process.env.FLEET_CPU_PROF] : [];
    const w = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, FLEET_WORKER: '1' }, execArgv });
    w.on('message', (msg) => {
      if (msg.type === 'reply') { waiting.get(msg.id)(msg.reply); waiting.delete(msg.id); }
      else if (msg.type === 'min') { mins[i] = msg.min; onMin(); }
    });
    workers.push(w);
  }
  const call = (w, msg) => new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    w.send({ ...msg, id });
  });
  const all = (msgOf) => Promise.all(workers.map((w, i) => call(w, msgOf(i))));
  const share = (list, i) => list.filter((_, j) => j % workerCount === i);

  function onMin() {
    if (!credit) return;
    const known = mins.filter((m) => m !== undefined);
    if (known.length === 0) return;
    const upto = Math.min(...known) + credit.window;
    if (upto > credit.upto) {
      credit.upto = upto;
      credit.sock.write(JSON.stringify({ cmd: 'credit', market: credit.market, upto, duration_s: 120 }) + '\n');
    }
  }

  function percentiles(hist) {
    const total = hist.reduce((a, b) => a + b, 0);
    const at = (q) => {
      if (total === 0) return null;
      const rank = Math.ceil(q * total);
      let seen = 0;
      for (let i = 0; i < hist.length; i++) { seen += hist[i]; if (seen >= rank) return bucketMidUs(i) / 1000; }
      return null;
    };
    let max = null;
    for (let i = hist.length - 1; i >= 0; i--) if (hist[i]) { max = bucketMidUs(i) / 1000; break; }
    return { n: total, p50_ms: at(0.5), p90_ms: at(0.9), p99_ms: at(0.99), p999_ms: at(0.999), max_ms: max };
  }

  const sum = (replies, field) => replies.reduce((a, r) => a + (r[field] || 0), 0);

  const ops = {
    hello: async () => ({ pids: [process.pid, ...workers.map((w) => w.pid)] }),
    async connect(op) {
      const t0 = nowUs();
      const per = Math.max(1, Math.ceil((op.concurrency || 100) / workerCount));
      const rs = await all((i) => ({ ...op, clients: share(op.clients, i), concurrency: per }));
      return { ok: sum(rs, 'ok'), failed: sum(rs, 'failed'), pending: sum(rs, 'pending'), elapsed_s: (Math.max(...rs.map((r) => r.t_done_us)) - t0) / 1e6 };
    },
    async disconnect() { const rs = await all(() => ({ op: 'disconnect' })); return { closed: sum(rs, 'closed') }; },
    async resume(op) {
      const t0 = nowUs();
      const rs = await all(() => op);
      return { ok: sum(rs, 'ok'), failed: sum(rs, 'failed'), pending: sum(rs, 'pending'), moved: sum(rs, 'moved'), elapsed_s: (Math.max(...rs.map((r) => r.t_done_us)) - t0) / 1e6 };
    },
    async wait_seq(op) {
      const rs = await all(() => op);
      return { ok: rs.every((r) => r.ok), behind: sum(rs, 'behind'), disconnected_behind: sum(rs, 'disconnected_behind'), sample: rs.flatMap((r) => r.sample || []) };
    },
    async mark() { await all(() => ({ op: 'mark' })); return {}; },
    async stats() {
      const rs = await all(() => ({ op: 'stats' }));
      const counters = {};
      for (const r of rs) for (const [k, v] of Object.entries(r.counters)) counters[k] = (counters[k] || 0) + v;
      const add = (field) => rs.reduce((acc, r) => acc.map((v, i) => v + r[field][i]), new Array(H_SIZE).fill(0));
      const mins = {};
      for (const r of rs) for (const [k, s] of Object.entries(r.mins)) mins[k] = Math.min(mins[k] ?? Infinity, s);
      const closeCodes = {}, errorSamples = {};
      for (const r of rs) {
        for (const [k, v] of Object.entries(r.close_codes)) closeCodes[k] = (closeCodes[k] || 0) + v;
        for (const [k, v] of Object.entries(r.error_samples)) errorSamples[k] = (errorSamples[k] || 0) + v;
      }
      return { counters, close_codes: closeCodes, error_samples: errorSamples, latency_pt: percentiles(add('hist_pt')), latency_st: percentiles(add('hist_st')), mins };
    },
    async credit_start(op) {
      const sock = net.connect(op.port, '127.0.0.1');
      sock.setNoDelay(true);
      sock.on('data', () => {});
      await new Promise((resolve, reject) => { sock.once('connect', resolve); sock.once('error', reject); });
      credit = { sock, market: String(op.market), window: op.window, upto: 0 };
      mins.fill(undefined);
      await all(() => ({ op: 'credit_watch', market: op.market }));
      return {};
    },
    async credit_stop() {
      await all(() => ({ op: 'credit_unwatch' }));
      if (credit) { credit.sock.end(JSON.stringify({ cmd: 'stop' }) + '\n'); credit = null; }
      return {};
    },
    async churn(op) {
      const rs = await all((i) => ({ ...op, tokens: share(op.tokens, i) }));
      const start = Math.min(...rs.map((r) => r.t_start_us));
      const end = Math.max(...rs.map((r) => r.t_end_us));
      return { cycles: sum(rs, 'cycles'), failed: sum(rs, 'failed'), elapsed_s: (end - start) / 1e6 };
    },
    async exit() {
      await Promise.race([all(() => ({ op: 'exit' })), new Promise((r) => setTimeout(r, 2000))]);
      setTimeout(() => { for (const w of workers) w.kill(); process.exit(0); }, 200);
      return {};
    },
  };

  serveOps(ops, () => { for (const w of workers) w.kill(); process.exit(0); });
}

if (process.env.FLEET_WORKER === '1') worker();
else {
  const i = process.argv.indexOf('--workers');
  main(i > 0 ? Math.max(1, Number(process.argv[i + 1])) : 1);
}
