// Runs the seed 003 document's JavaScript in Node, unchanged but for the address and the
// token: the "认证示例" (authentication example) block connects and authenticates, and once it
// logs "认证成功" (authenticated) the "提交买单" (submit a buy order) block's submitOrder() is
// called. The browser's `WebSocket` is the `ws` package's; every message the page's socket
// receives is recorded.
//
//   node seed003_client.mjs <seed file> <host:port> <token> <messages to wait for>
//
// Prints one JSON line when that many messages have arrived (or after 10 s): every message
// received, and what the example logged.

import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [seedFile, hostPort, token, wanted] = process.argv.slice(2);
const seed = readFileSync(seedFile, "utf8");

function blockAfter(marker) {
  const at = seed.indexOf(marker);
  const start = seed.indexOf("```javascript", at) + "```javascript".length;
  return seed.slice(start, seed.indexOf("```", start));
}

const auth = blockAfter("### 认证示例")
  .replace("localhost:8081", hostPort)
  .replace("your_token_here", token);
const submit = seed.slice(seed.indexOf("// 提交买单"), seed.indexOf("```", seed.indexOf("// 提交买单")));

const received = [];
const logged = [];
let done = false;
const finish = () => {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify({ received, logged }) + "\n");
  process.exit(0);
};

class RecordingWebSocket extends WebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (event) => {
      received.push(JSON.parse(event.data));
      if (received.length >= Number(wanted)) finish();
    });
  }
}

let submitOrder;
const log = (...args) => {
  logged.push(args.join(" "));
  if (args[0] === "认证成功") submitOrder();
};
const page = { log, error: log };
// One scope for both blocks, as one page's script: submitOrder uses the example's `ws`.
submitOrder = new Function("WebSocket", "console", `${auth}\n${submit}\nreturn submitOrder;`)(
  RecordingWebSocket,
  page,
);
setTimeout(finish, 10_000);
