// What the load generators share. The driver's control protocol for a load generator's main
// process: one JSON op per line on stdin (`{"op": name, ...}`), handled in order by
// `ops[name](op)`; one JSON reply per line on stdout (`{"error": ...}` when the op threw).
// `onClose` runs when the driver goes away. And how a client's connection reports, once,
// whether it became ready.

import { createInterface } from 'node:readline';

export function serveOps(ops, onClose) {
  let queue = Promise.resolve();
  const rl = createInterface({ input: process.stdin });
  rl.on('line', (line) => {
    queue = queue.then(async () => {
      let reply;
      try {
        const op = JSON.parse(line);
        reply = await ops[op.op](op);
      } catch (err) {
        reply = { error: String((err && err.stack) || err) };
      }
      process.stdout.write(JSON.stringify(reply) + '\n');
    });
  });
  rl.on('close', onClose);
}

// Arm `c.onReady` to report the client's first outcome (ready or not) to `onSettled`, once;
// returns the function that settles it, for the paths that fail it (a close, a refusal).
export function settleOnce(c, onSettled) {
  let settled = false;
  const settle = (ok) => {
    if (settled) return;
    settled = true;
    c.onReady = null;
    onSettled(ok);
  };
  c.onReady = settle;
  return settle;
}
