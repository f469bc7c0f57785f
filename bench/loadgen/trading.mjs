// The client fleet of bench/trading.py: trading clients and market-data subscribers of rt's
// trading dialect (seed 003) on /ws/trade, checking every message.
//
//   node trading.mjs [--subscriber-workers N] [--subscriber-nice K]
//
// The main process reads one JSON command per line on stdin and answers each with one JSON
// line on stdout. It forks one worker that holds the traders and N workers (default 2) that
// hold the subscribers; the subscriber workers lower their own priority by K (default 10), so
// that on the shared load-generator core the traders' clocks read the order_response as soon
// as it arrives, not after a turn of parsing market data. Commands (op):
//
//   hello                                   -> {pids}
//   connect {url, traders:[{user, token}], subscribers:[{user, token}], instruments,
//            concurrency, timeout_s}        -> {ok, failed, elapsed_s}: subscribers first
//                                              (auth, subscribe, a snapshot per instrument),
//                                              then traders (auth)
//   start {instrument, prices, max_live, cancel_after_ms, stuck_ms, max_exposure}
//                                           every trader starts its loop (below)
//   mark                                    start the measurement window
//   stats                                   -> the window's counters and latencies
//   stop {timeout_s, quiet_ms}              traders send nothing new; -> once every request is
//                                              answered and no message has come for quiet_ms
//   verify {timeout_s}                      -> each trader's query_position against the
//                                              position it kept from its pushes; every
//                                              subscriber's last seqs against the highest seen
//   exit
//
// A trader keeps one request outstanding: it sends, waits for the order_response, sends the
// next. It alternates BUY and SELL of 1 lot on one instrument, at the prices given in turn. A
// SELL closes a long lot when it holds one that no live order closes already (a BUY a short);
// else it opens, if it holds no lot of the other side and its lots held plus its live OPEN
// orders are below max_exposure (so no account runs short of margin). It cancels instead
// (cancel_order is answered by an order_response too) the oldest of its orders known to rest
// when that one has rested cancel_after_ms, when max_live of them rest, or when it may neither
// open nor close; if then none is known to rest, it waits for its stream, and after stuck_ms
// cancels its oldest order all the same.
//
// Known to rest: the order_response comes before the order's pushes, and the book may run an
// order after the ledger has answered the next one; so an order counts as resting only once
// the user's stream (in order) has brought a fill or cancel of a later order of the user, and
// none of this one. A cancel may still cross a fill: the refusal (1009, "Order ... is
// Filled") is counted among the failures.
//
// Checks, each counted: every private push (order_status, trade, account_update) must carry
// the user's seq + 1; every orderbook delta's prev_seq must be the seq of the instrument's last
// orderbook message (a snapshot resets it); every print's seq must be the last + 1 per
// instrument. A subscriber whose index is a multiple of checksum_every parses every message
// and also rebuilds each book from the snapshot and deltas and checks its checksum (CRC32 of
// the top 10 levels); the others read the fields those checks need without JSON.parse.

import { fork } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import zlib from 'node:zlib';
import WebSocket from 'ws';
import { serveOps, settleOnce } from './control.mjs';

const WS_OPTIONS = { perMessageDeflate: false, handshakeTimeout: 15000 };
// Subscribers that read messages with lightParse (ASCII JSON) skip ws's UTF-8 check too.
const LIGHT_OPTIONS = { ...WS_OPTIONS, skipUTF8Validation: true };
const MAX_TIMEOUT_MS = 120000;
const MAX_SAMPLES = 5_000_000; // round-trip samples kept per window (beyond: counted only)
const AGE_BUCKETS = 10001; // market-data age histogram: 1 ms buckets, the last one is >= 10 s
const PRIVATE = new Set(['order_status', 'account_update', 'notification']);

const nowUs = () => performance.now() * 1000;
const timeoutMs = (s, dflt) => Math.min((s ?? dflt) * 1000, MAX_TIMEOUT_MS);
const bump = (obj, key, n = 1) => { obj[key] = (obj[key] || 0) + n; };

function newCounters() {
  return {
    // traders
    submits: 0, cancels: 0, responses: 0, fills_private: 0, pushes: 0,
    order_status: 0, account_updates: 0,
    // subscribers
    md_orderbook: 0, md_trade: 0, md_ticker: 0,
  };
}

// Violations and oddities, over the whole run (never reset).
function newChecks() {
  return {
    private_seq_gaps: 0, private_seq_back: 0, private_resyncs: 0,
    book_prev_seq_violations: 0, book_delta_before_snapshot: 0, book_resnapshots: 0,
    checksum_checked: 0, checksum_mismatches: 0,
    print_seq_gaps: 0, print_seq_back: 0, md_resyncs: 0, book_conflated: 0,
    push_before_response: 0, unexpected: 0, errors: 0, response_mismatches: 0, negative_available: 0,
    auth_failures: 0, closed_unexpectedly: 0, conn_errors: 0,
  };
}

// ----------------------------------------------------------------------------- workers

function worker(role) {
  const clients = [];
  const checks = newChecks();
  const errorSamples = {};
  const closeCodes = {};
  let W = newCounters();
  let measuring = false;
  let windowStartUs = 0;
  let lastMessageUs = nowUs();
  // Trader round trips of the window: all, submits only, cancels only.
  let samples = { all: [], submit: [], cancel: [] };
  let failures = {};
  let cancelWhy = {};
  let ageHist = new Uint32Array(AGE_BUCKETS);
  let pushAgeHist = new Uint32Array(AGE_BUCKETS);
  let plan = null;
  let running = false;

  const note = (kind, text) => {
    const t = `${kind}: ${String(text).slice(0, 160)}`;
    if (Object.keys(errorSamples).length < 10 || t in errorSamples) bump(errorSamples, t);
  };

  // -- private pushes (every signed-in connection has them; only traders should get any)

  function onPrivate(c, msg) {
    if (typeof msg.seq !== 'number') { checks.unexpected++; note('private push without seq', JSON.stringify(msg)); return; }
    if (msg.seq !== c.privSeq + 1) {
      if (msg.seq <= c.privSeq) checks.private_seq_back++; else checks.private_seq_gaps++;
      note('private seq', `user ${c.user}: ${msg.seq} after ${c.privSeq}`);
    }
    if (msg.seq > c.privSeq) c.privSeq = msg.seq;
    if (!c.trader) { checks.unexpected++; note('private push to a subscriber', msg.type); return; }
    W.pushes++;
    if (measuring && typeof msg.timestamp === 'number') {
      pushAgeHist[Math.max(0, Math.min(AGE_BUCKETS - 1, Date.now() - msg.timestamp))]++;
    }
    if (msg.type === 'order_status') {
      W.order_status++;
      const id = msg.order_id;
      const placed = c.answered.get(id);
      if (placed === undefined) {
        checks.push_before_response++;
        note('push before its order_response', `${msg.status} ${id} seq ${msg.seq}`);
      }
      if (msg.status !== 'Submitted') {
        // Only the book fills or takes off an order, and it runs a user's orders in the order
        // placed: once it has run this one, it has run every earlier one, and the stream
        // (in order) has brought their fills. So the earlier ones still here are resting.
        for (const [k, known] of c.cancellable) {
          if (c.answered.get(k) >= placed) break;
          if (!known) { c.cancellable.set(k, performance.now()); c.resting++; }
        }
      }
      if (msg.status === 'Filled' || msg.status === 'Cancelled') {
        forget(c, id);
        if (msg.status === 'Cancelled') {
          const left = msg.remaining_volume;
          if (msg.offset === 'OPEN') c.openLive -= left;
          else if (msg.direction === 'SELL') c.resLong -= left;
          else c.resShort -= left;
        }
      }
    } else if (msg.type === 'trade') {
      if (typeof msg.order_id !== 'string') { checks.unexpected++; return; }
      W.fills_private++;
      const v = msg.volume;
      if (msg.offset === 'OPEN') {
        c.openLive -= v;
        if (msg.direction === 'BUY') c.long += v; else c.short += v;
      } else if (msg.direction === 'SELL') { c.long -= v; c.resLong -= v; }
      else { c.short -= v; c.resShort -= v; }
    } else if (msg.type === 'account_update') {
      W.account_updates++;
      if (msg.available < 0) checks.negative_available++;
    } else {
      checks.unexpected++;
      note('private', msg.type);
    }
  }

  // -- traders

  function send(c, msg) { c.ws.send(JSON.stringify(msg)); }

  function forget(c, id) {
    if (c.cancellable.get(id)) c.resting--;
    c.cancellable.delete(id);
  }

  function next(c) {
    c.pending = null;
    if (!running || !c.ws) { maybeStopped(); return; }
    const p = plan;
    const now = performance.now();
    if (c.resting > 0) {
      const [id, since] = oldestResting(c);
      if (c.resting >= p.max_live) { cancelOrder(c, id, 'too many resting'); return; }
      if (now - since >= p.cancel_after_ms) { cancelOrder(c, id, 'stale'); return; }
    }
    const price = p.prices[(c.idx * 7 + c.n) % p.prices.length];
    const first = (c.n + c.idx) % 2 === 0 ? 'BUY' : 'SELL';
    // A SELL closes a long lot (a BUY a short) if one is held that no live order closes yet;
    // it opens only if no lot of the other side is held at all, and within max_exposure.
    const exposure = c.long + c.short + c.openLive;
    const choose = (d) => {
      const [against, free] = d === 'SELL' ? [c.long, c.long - c.resLong] : [c.short, c.short - c.resShort];
      if (free > 0) return 'CLOSE';
      return against === 0 && exposure < p.max_exposure ? 'OPEN' : null;
    };
    let dir = first;
    let offset = choose(dir);
    if (offset === null) {
      dir = first === 'BUY' ? 'SELL' : 'BUY';
      offset = choose(dir);
    }
    if (offset === null) {
      // Neither: every lot held is being closed already, or max_exposure is reached. Cancel
      // the oldest order known to rest; if none is known yet, wait for the stream to say, and
      // after stuck_ms cancel the oldest order all the same (it may be filling meanwhile).
      if (c.resting > 0) { cancelOrder(c, oldestResting(c)[0], 'stuck'); return; }
      c.stuckSince ??= now;
      if (c.cancellable.size > 0 && now - c.stuckSince >= p.stuck_ms) {
        cancelOrder(c, c.cancellable.keys().next().value, 'stuck, not known to rest');
        return;
      }
      c.waits++;
      setTimeout(() => next(c), 5);
      return;
    }
    c.stuckSince = null;
    c.n++;
    if (offset === 'OPEN') c.openLive += 1;
    else if (dir === 'SELL') c.resLong += 1; else c.resShort += 1;
    c.pending = { kind: 'submit', dir, offset, sentUs: nowUs() };
    if (measuring) W.submits++;
    send(c, { type: 'submit_order', instrument_id: p.instrument, direction: dir, offset, volume: 1, price, order_type: 'LIMIT' });
  }

  function oldestResting(c) {
    for (const entry of c.cancellable) if (entry[1]) return entry;
    return [undefined, 0];
  }

  function cancelOrder(c, id, why) {
    forget(c, id);
    c.stuckSince = null;
    c.pending = { kind: 'cancel', orderId: id, sentUs: nowUs(), why };
    if (measuring) { W.cancels++; bump(cancelWhy, why); }
    send(c, { type: 'cancel_order', order_id: id });
  }

  function onResponse(c, msg) {
    const now = nowUs();
    const p = c.pending;
    if (!p) { checks.response_mismatches++; note('order_response with nothing outstanding', JSON.stringify(msg)); return; }
    if (measuring && p.sentUs >= windowStartUs) {
      W.responses++;
      const rtt = (now - p.sentUs) / 1000;
      if (samples.all.length < MAX_SAMPLES) { samples.all.push(rtt); samples[p.kind].push(rtt); }
      if (!msg.success) bump(failures, `${p.kind} ${msg.error_code}`);
      if (!msg.success && p.kind === 'cancel') bump(cancelWhy, `${p.why}: refused ${msg.error_code}`);
    }
    if (p.kind === 'submit') {
      if (msg.success) {
        if (typeof msg.order_id !== 'string') checks.response_mismatches++;
        else { c.cancellable.set(msg.order_id, 0); c.answered.set(msg.order_id, c.answered.size); }
      } else {
        note('submit refused', `${msg.error_code} ${msg.error_message}`);
        if (p.offset === 'OPEN') c.openLive -= 1;
        else if (p.dir === 'SELL') c.resLong -= 1; else c.resShort -= 1;
      }
    } else {
      if (msg.order_id !== p.orderId) checks.response_mismatches++;
      if (!msg.success) {  // 1009 "Order <id> is Filled": the fill and the cancel crossed
        const why = msg.error_code === 1009 ? String(msg.error_message).replace(/O\d+/, '<id>') : msg.error_message;
        note('cancel refused', `${msg.error_code} ${why}`);
      }
    }
    next(c);
  }

  function onTraderMessage(c, msg) {
    const type = msg.type;
    if (type === 'order_response') onResponse(c, msg);
    else if (type === 'trade' || PRIVATE.has(type)) onPrivate(c, msg);
    else if (type === 'query_response' && c.onQuery) c.onQuery(msg);
    else if (type === 'resync') { checks.private_resyncs++; note('resync', JSON.stringify(msg)); c.privSeq = msg.seq - 1; }
    else if (type === 'error') {
      checks.errors++;
      note('error', `${msg.code} ${msg.message}`);
      if (c.pending) {  // an error answers the request: go on, counted as a failure
        if (measuring) bump(failures, `${c.pending.kind} error ${msg.code}`);
        next(c);
      }
    } else if (type !== 'pong') { checks.unexpected++; note('trader got', type); }
  }

  // -- subscribers

  function book(c, k) {
    let b = c.books.get(k);
    if (!b) { b = { seq: null, bids: new Map(), asks: new Map() }; c.books.set(k, b); }
    return b;
  }

  function checksum(b) {
    const bids = [...b.bids.keys()].sort((x, y) => y - x).slice(0, 10);
    const asks = [...b.asks.keys()].sort((x, y) => x - y).slice(0, 10);
    const parts = [];
    for (let i = 0; i < 10; i++) {
      if (i < bids.length) parts.push(`${bids[i]}:${b.bids.get(bids[i])}`);
      if (i < asks.length) parts.push(`${asks[i]}:${b.asks.get(asks[i])}`);
    }
    return zlib.crc32(parts.join(':')) >>> 0;
  }

  // The fields the checks need, read without JSON.parse (for the subscribers that do not
  // rebuild books, most of them; it saves a little of the load generator's time, most of
  // which is in ws). The server writes "type" first; anything else, or anything not as
  // expected, goes to JSON.parse.
  const intAfter = (s, key) => {
    const i = s.indexOf(key);
    return i < 0 ? NaN : parseInt(s.slice(i + key.length, i + key.length + 24), 10);
  };
  function lightParse(s) {
    let type;
    if (s.startsWith('{"type":"orderbook"')) type = 'orderbook';
    else if (s.startsWith('{"type":"trade"')) { if (s.includes('"order_id"')) return null; type = 'trade'; }
    else if (s.startsWith('{"type":"ticker"')) type = 'ticker';
    else return null;
    const key = '"instrument_id":"';
    const at = s.indexOf(key) + key.length;
    const msg = { type, instrument_id: s.slice(at, s.indexOf('"', at)), timestamp: intAfter(s, '"timestamp":') };
    if (at < key.length || Number.isNaN(msg.timestamp)) return null;
    if (type === 'orderbook') {
      const i = s.indexOf('"snapshot":');
      if (i < 0) return null;
      msg.snapshot = s.charCodeAt(i + 11) === 116;  // t(rue)
      msg.seq = intAfter(s, '"seq":');
      msg.prev_seq = intAfter(s, '"prev_seq":');
      if (Number.isNaN(msg.seq) || Number.isNaN(msg.prev_seq)) return null;
    } else if (type === 'trade') {
      msg.seq = intAfter(s, '"seq":');
      if (Number.isNaN(msg.seq)) return null;
    }
    return msg;
  }

  function onBook(c, msg) {
    const k = msg.instrument_id;
    const b = book(c, k);
    if (msg.snapshot) {
      if (b.seq !== null) checks.book_resnapshots++;
      b.bids.clear();
      b.asks.clear();
      if (c.needSnapshots > 0 && !c.snapshotted.has(k)) {
        c.snapshotted.add(k);
        if (--c.needSnapshots === 0 && c.onReady) c.onReady(true);
      }
    } else if (b.seq === null) {
      checks.book_delta_before_snapshot++;
    } else if (msg.prev_seq !== b.seq) {
      checks.book_prev_seq_violations++;
      note('orderbook', `${k}: prev_seq ${msg.prev_seq} after seq ${b.seq}`);
    } else if (msg.seq > msg.prev_seq + 1) {
      checks.book_conflated++;  // merged for a subscriber that fell behind: allowed, counted
    }
    b.seq = msg.seq;
    if (c.checksums) {
      for (const [side, levels] of [[b.bids, msg.bids], [b.asks, msg.asks]]) {
        for (const l of levels) { if (l.volume === 0) side.delete(l.price); else side.set(l.price, l.volume); }
      }
      checks.checksum_checked++;
      if (checksum(b) !== msg.checksum >>> 0) {
        checks.checksum_mismatches++;
        note('checksum', `${k} seq ${msg.seq}: ${msg.checksum} expected, ${checksum(b)} rebuilt`);
      }
    }
  }

  function onSubscriberMessage(c, msg) {
    const type = msg.type;
    if (type === 'orderbook') {
      onBook(c, msg);
      if (measuring) W.md_orderbook++;
    } else if (type === 'trade') {
      if (msg.order_id !== undefined) { onPrivate(c, msg); return; }
      const k = msg.instrument_id;
      const last = c.prints.get(k);
      if (last !== undefined && msg.seq !== last + 1) {
        if (msg.seq <= last) checks.print_seq_back++; else checks.print_seq_gaps++;
        note('print seq', `${k}: ${msg.seq} after ${last}`);
      }
      if (last === undefined || msg.seq > last) c.prints.set(k, msg.seq);
      if (measuring) W.md_trade++;
    } else if (type === 'ticker') {
      if (measuring) W.md_ticker++;
    } else if (type === 'resync') {
      checks.md_resyncs++;
      note('resync', JSON.stringify(msg));
      if (msg.channel === 'trade') c.prints.delete(msg.instrument_id);
      else if (msg.channel === 'private') c.privSeq = msg.seq - 1;
      return;
    } else if (PRIVATE.has(type)) { onPrivate(c, msg); return; }
    else if (type === 'error') { checks.errors++; note('error', `${msg.code} ${msg.message}`); return; }
    else if (type === 'subscribe_response') {
      if (!msg.success) { checks.errors++; note('subscribe refused', msg.message); if (c.onReady) c.onReady(false); }
      return;
    } else { if (type !== 'pong') { checks.unexpected++; note('subscriber got', type); } return; }
    if (measuring && typeof msg.timestamp === 'number') {
      const age = Date.now() - msg.timestamp;
      ageHist[Math.max(0, Math.min(AGE_BUCKETS - 1, age))]++;
    }
  }

  // -- connections

  function open(c, url, onSettled) {
    const settle = settleOnce(c, onSettled);
    const ws = new WebSocket(`${url}?user_id=${encodeURIComponent(c.user)}`, c.light ? LIGHT_OPTIONS : WS_OPTIONS);
    c.ws = ws;
    ws.on('open', () => send(c, { type: 'auth', user_id: c.user, token: c.token }));
    ws.on('message', (data) => {
      lastMessageUs = nowUs();
      let msg = c.light ? lightParse(data.toString('latin1')) : null;
      if (msg === null) {
        try { msg = JSON.parse(data); } catch { checks.errors++; note('not JSON', String(data).slice(0, 80)); return; }
      }
      if (msg.type === 'auth_response') {
        if (!msg.success) { checks.auth_failures++; note('auth', msg.message); settle(false); return; }
        if (c.trader) settle(true);
        else send(c, { type: 'subscribe', channels: ['orderbook', 'trade', 'ticker'], instruments: c.instruments });
        return;
      }
      if (c.trader) onTraderMessage(c, msg); else onSubscriberMessage(c, msg);
    });
    ws.on('error', (err) => { checks.conn_errors++; note('socket', err && err.message); });
    ws.on('close', (code) => {
      if (c.ws === ws) c.ws = null;
      if (!c.closing) { checks.closed_unexpectedly++; bump(closeCodes, code); }
      settle(false);
      if (c.trader && c.pending) { c.pending = null; maybeStopped(); }
    });
  }

  function openAll(list, url, concurrency, ms) {
    return new Promise((resolve) => {
      let next = 0, active = 0, ok = 0, failed = 0, finished = false;
      const finish = () => {
        if (finished) return;
        finished = true;
        clearTimeout(timer);
        resolve({ ok, failed, pending: list.length - ok - failed });
      };
      const timer = setTimeout(finish, ms);
      const pump = () => {
        while (active < concurrency && next < list.length) {
          active++;
          open(list[next++], url, (good) => {
            active--;
            if (good) ok++; else failed++;
            if (ok + failed === list.length) finish(); else pump();
          });
        }
      };
      if (list.length === 0) finish(); else pump();
    });
  }

  // -- stop and verify

  let stopWaiter = null;
  function maybeStopped() {
    if (stopWaiter && clients.every((c) => !c.pending)) { const w = stopWaiter; stopWaiter = null; w(); }
  }

  function quiet(quietMs, deadline) {
    return new Promise((resolve) => {
      const tick = () => {
        const now = nowUs();
        if (now - lastMessageUs >= quietMs * 1000 || performance.now() >= deadline) resolve(now - lastMessageUs >= quietMs * 1000);
        else setTimeout(tick, 20);
      };
      tick();
    });
  }

  function queryPosition(c, ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => { c.onQuery = null; resolve(null); }, ms);
      c.onQuery = (msg) => { clearTimeout(timer); c.onQuery = null; resolve(msg); };
      send(c, { type: 'query_position', instrument_id: plan.instrument });
    });
  }

  const handlers = {
    async connect(op) {
      const list = op.clients.map((spec, i) => ({
        user: spec.user, token: spec.token, trader: role === 'traders', idx: spec.idx ?? i,
        instruments: op.instruments, ws: null, closing: false, onReady: null, privSeq: 0,
        // subscribers
        books: new Map(), prints: new Map(), needSnapshots: op.instruments.length,
        snapshotted: new Set(), checksums: (spec.idx ?? i) % (op.checksum_every || 50) === 0,
        light: false,
        // traders
        pending: null, cancellable: new Map(), resting: 0, n: 0, long: 0, short: 0, resLong: 0, resShort: 0,
        openLive: 0, waits: 0, stuckSince: null, onQuery: null, answered: new Map(),
      }));
      for (const c of list) { c.light = !c.trader && !c.checksums; clients.push(c); }
      return openAll(list, op.url, op.concurrency || 50, timeoutMs(op.timeout_s, 60));
    },
    start(op) {
      plan = op;
      running = true;
      for (const c of clients) if (c.ws && !c.pending) next(c);
      return {};
    },
    mark() {
      measuring = true;
      windowStartUs = nowUs();
      W = newCounters();
      samples = { all: [], submit: [], cancel: [] };
      failures = {};
      cancelWhy = {};
      ageHist = new Uint32Array(AGE_BUCKETS);
      pushAgeHist = new Uint32Array(AGE_BUCKETS);
      return {};
    },
    stats() {
      const now = nowUs();
      const oldest = Math.max(0, ...clients.filter((c) => c.pending).map((c) => now - c.pending.sentUs));
      return {
        role, counters: W, checks, failures, cancel_why: cancelWhy, error_samples: errorSamples, close_codes: closeCodes,
        samples, age_hist: Array.from(ageHist), push_age_hist: Array.from(pushAgeHist), window_s: (now - windowStartUs) / 1e6,
        outstanding: clients.filter((c) => c.pending).length, oldest_outstanding_ms: oldest / 1000,
        open: clients.filter((c) => c.ws).length, clients: clients.length,
        waits: clients.reduce((a, c) => a + c.waits, 0), cpu_us: process.cpuUsage(),
      };
    },
    async stop(op) {
      measuring = false;
      running = false;
      const deadline = performance.now() + timeoutMs(op.timeout_s, 10);
      if (clients.some((c) => c.pending)) {
        await new Promise((resolve) => {
          stopWaiter = resolve;
          setTimeout(() => { stopWaiter = null; resolve(); }, deadline - performance.now());
        });
      }
      const settled = await quiet(op.quiet_ms ?? 500, deadline);
      return { outstanding: clients.filter((c) => c.pending).length, quiet: settled };
    },
    async verify(op) {
      const ms = timeoutMs(op.timeout_s, 10);
      const out = { checked: 0, mismatches: 0, no_answer: 0, net_lots: 0, long_lots: 0, short_lots: 0, samples: [] };
      if (role === 'traders') {
        await Promise.all(clients.filter((c) => c.ws).map(async (c) => {
          const msg = await queryPosition(c, ms);
          if (!msg || msg.type !== 'query_response') { out.no_answer++; return; }
          const held = { LONG: 0, SHORT: 0 };
          for (const p of msg.data.positions) held[p.position_side] += p.volume;
          out.checked++;
          out.long_lots += c.long;
          out.short_lots += c.short;
          out.net_lots += c.long - c.short;
          if (held.LONG !== c.long || held.SHORT !== c.short) {
            out.mismatches++;
            if (out.samples.length < 5) out.samples.push({ user: c.user, server: held, kept: { LONG: c.long, SHORT: c.short } });
          }
        }));
      } else {
        // Every subscriber must end on the same last seq of each book and each print stream.
        const last = {};
        for (const c of clients) {
          for (const [k, b] of c.books) last[`orderbook:${k}`] = Math.max(last[`orderbook:${k}`] ?? -1, b.seq ?? -1);
          for (const [k, s] of c.prints) last[`trade:${k}`] = Math.max(last[`trade:${k}`] ?? -1, s);
        }
        out.last = last;
        out.behind = 0;
        for (const c of clients) {
          out.checked++;
          const mine = {};
          for (const [k, b] of c.books) mine[`orderbook:${k}`] = b.seq ?? -1;
          for (const [k, s] of c.prints) mine[`trade:${k}`] = s;
          if (Object.entries(last).some(([k, s]) => (mine[k] ?? -1) < s)) out.behind++;
        }
      }
      return out;
    },
    close() {
      for (const c of clients) { c.closing = true; c.ws?.terminate(); }
      return {};
    },
    exit() { setTimeout(() => process.exit(0), 10); return {}; },
  };

  process.on('message', async (msg) => {
    let reply;
    try { reply = await handlers[msg.op](msg); } catch (err) { reply = { error: String(err && err.stack || err) }; }
    process.send({ type: 'reply', id: msg.id, reply });
  });
}

// -------------------------------------------------------------------------------- main

function main(subscriberWorkers, nice) {
  const spawn = (role) => fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, TRADING_ROLE: role, TRADING_NICE: String(role === 'subscribers' ? nice : 0) },
  });
  const traders = spawn('traders');
  const subs = Array.from({ length: subscriberWorkers }, () => spawn('subscribers'));
  const workers = [traders, ...subs];
  const waiting = new Map();
  let nextId = 0;
  for (const w of workers) {
    w.on('message', (msg) => { if (msg.type === 'reply') { waiting.get(msg.id)(msg.reply); waiting.delete(msg.id); } });
  }
  const call = (w, msg) => new Promise((resolve) => {
    const id = nextId++;
    waiting.set(id, resolve);
    w.send({ ...msg, id });
  });
  const check = (r) => { if (r.error) throw new Error(r.error); return r; };
  const sumInto = (into, obj) => { for (const [k, v] of Object.entries(obj)) if (typeof v === 'number') into[k] = (into[k] || 0) + v; };

  function percentiles(list) {
    if (list.length === 0) return { n: 0 };
    const a = Float64Array.from(list).sort();
    const at = (q) => a[Math.min(a.length - 1, Math.ceil(q * a.length) - 1)];
    const r = (x) => Math.round(x * 1000) / 1000;
    return { n: a.length, p50_ms: r(at(0.5)), p90_ms: r(at(0.9)), p99_ms: r(at(0.99)), p999_ms: r(at(0.999)), max_ms: r(a[a.length - 1]) };
  }
  function histPercentiles(hist) {
    const total = hist.reduce((a, b) => a + b, 0);
    if (total === 0) return { n: 0 };
    const at = (q) => {
      const rank = Math.ceil(q * total);
      let seen = 0;
      for (let i = 0; i < hist.length; i++) { seen += hist[i]; if (seen >= rank) return i; }
      return hist.length - 1;
    };
    let max = 0;
    for (let i = hist.length - 1; i >= 0; i--) if (hist[i]) { max = i; break; }
    return { n: total, p50_ms: at(0.5), p99_ms: at(0.99), p999_ms: at(0.999), max_ms: max };
  }

  const ops = {
    hello: async () => ({ pids: [process.pid, ...workers.map((w) => w.pid)] }),
    async connect(op) {
      const t0 = performance.now();
      const share = (i) => op.subscribers.map((s, j) => ({ ...s, idx: j })).filter((_, j) => j % subs.length === i);
      const per = Math.max(1, Math.ceil((op.concurrency || 50) / subs.length));
      const rs = (await Promise.all(subs.map((w, i) => call(w, { ...op, op: 'connect', clients: share(i), concurrency: per })))).map(check);
      const subscribers_s = (performance.now() - t0) / 1000;
      const rt = check(await call(traders, { ...op, op: 'connect', clients: op.traders.map((s, j) => ({ ...s, idx: j })) }));
      const all = [...rs, rt];
      return {
        ok: all.reduce((a, r) => a + r.ok, 0), failed: all.reduce((a, r) => a + r.failed, 0),
        pending: all.reduce((a, r) => a + r.pending, 0), traders_ok: rt.ok,
        subscribers_s, elapsed_s: (performance.now() - t0) / 1000,
      };
    },
    async start(op) { check(await call(traders, op)); return {}; },
    async mark() { await Promise.all(workers.map((w) => call(w, { op: 'mark' }))); return {}; },
    async stats() {
      const rs = (await Promise.all(workers.map((w) => call(w, { op: 'stats' })))).map(check);
      const t = rs[0];
      const counters = {}, checks = {}, errorSamples = {}, closeCodes = {};
      const age = new Array(AGE_BUCKETS).fill(0);
      for (const r of rs) {
        sumInto(counters, r.counters);
        sumInto(checks, r.checks);
        sumInto(errorSamples, r.error_samples);
        sumInto(closeCodes, r.close_codes);
        for (let i = 0; i < AGE_BUCKETS; i++) age[i] += r.age_hist[i];
      }
      return {
        window_s: t.window_s, counters, checks, failures: t.failures, cancels_by_rule: t.cancel_why,
        latency: { all: percentiles(t.samples.all), submit: percentiles(t.samples.submit), cancel: percentiles(t.samples.cancel) },
        md_age_ms: histPercentiles(age),
        push_age_ms: histPercentiles(t.push_age_hist),
        outstanding: t.outstanding, oldest_outstanding_ms: t.oldest_outstanding_ms, trader_waits: t.waits,
        open: { traders: t.open, subscribers: rs.slice(1).reduce((a, r) => a + r.open, 0) },
        error_samples: errorSamples, close_codes: closeCodes,
      };
    },
    async stop(op) {
      const [rt] = (await Promise.all([call(traders, op)])).map(check);
      // Then let the subscribers take in what is still on its way.
      const rs = (await Promise.all(subs.map((w) => call(w, op)))).map(check);
      return { outstanding: rt.outstanding, quiet: rt.quiet && rs.every((r) => r.quiet) };
    },
    async verify(op) {
      const rs = (await Promise.all(workers.map((w) => call(w, { ...op, op: 'verify' })))).map(check);
      const t = rs[0];
      const last = {};
      for (const r of rs.slice(1)) for (const [k, s] of Object.entries(r.last)) last[k] = Math.max(last[k] ?? -1, s);
      // A worker's subscribers behind its own highest are counted there; the workers' highest
      // must agree too.
      const workersBehind = rs.slice(1).filter((r) => Object.entries(last).some(([k, s]) => (r.last[k] ?? -1) < s)).length;
      return {
        traders: { checked: t.checked, mismatches: t.mismatches, no_answer: t.no_answer, net_lots: t.net_lots, long_lots: t.long_lots, short_lots: t.short_lots, samples: t.samples },
        subscribers: { checked: rs.slice(1).reduce((a, r) => a + r.checked, 0), behind: rs.slice(1).reduce((a, r) => a + r.behind, 0), workers_behind: workersBehind, last },
      };
    },
    async exit() {
      await Promise.race([Promise.all(workers.map((w) => call(w, { op: 'close' }))), new Promise((r) => setTimeout(r, 2000))]);
      await Promise.race([Promise.all(workers.map((w) => call(w, { op: 'exit' }))), new Promise((r) => setTimeout(r, 2000))]);
      setTimeout(() => { for (const w of workers) w.kill(); process.exit(0); }, 200);
      return {};
    },
  };

  serveOps(ops, () => { for (const w of workers) w.kill(); process.exit(0); });
}

if (process.env.TRADING_ROLE) {
  const nice = Number(process.env.TRADING_NICE || 0);
  if (nice) os.setPriority(0, nice);
  worker(process.env.TRADING_ROLE);
} else {
  const arg = (name, dflt) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
  main(Math.max(1, arg('--subscriber-workers', 2)), arg('--subscriber-nice', 10));
}
