// Runs the seed 004 document's JavaScript example, unchanged, in Node: the browser's
// `WebSocket` is the `ws` package's (its onopen/onmessage/onclose/onerror work alike), and
// `console` is captured.
//
//   node seed004_client.mjs <seed file> <host:port>
//
// The example connects to ws://localhost:8000/api/v1/ws/my_client, subscribes to
// stock.AAPL.1m on connection_ack and logs every message; it runs until the server closes
// the socket. Then this prints one JSON line: every message received, and whether the
// close was logged.

import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [seedFile, hostPort] = process.argv.slice(2);
const seed = readFileSync(seedFile, "utf8");
const start = seed.indexOf("```javascript") + "```javascript".length;
const code = seed.slice(start, seed.indexOf("```", start)).replace("localhost:8000", hostPort);

const received = [];
let closed = false;
const log = (...args) => {
  if (args[0] === "收到消息:") received.push(args[1]);
  if (args[0] === "WebSocket 连接已关闭") closed = true;
};
const quiet = { log, error: log };

new Function("WebSocket", "console", code)(WebSocket, quiet);
process.on("exit", () => {
  process.stdout.write(JSON.stringify({ received, closed }) + "\n");
});
