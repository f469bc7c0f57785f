// Runs the seed 001 document's own client class (section 8, `OddsWSClient`), unchanged, in
// Node, with `wx` (WeChat's mini-program API) shimmed over the `ws` package and fetch.
//
//   node seed001_client.mjs <seed file> <baseUrl> <token> <market> <updates> <dropAfter>
//
// It subscribes to <market>, cuts its socket after <dropAfter> updates (as a network
// failure would), lets the seed's own reconnect-and-resume logic run, and once update
// <updates> is applied prints one JSON line: every seq applied, errors, connects.

import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [seedFile, baseUrl, token, market, total, dropAfter] = process.argv.slice(2);

// The class, exactly as the seed document writes it.
const seed = readFileSync(seedFile, "utf8");
const section = seed.slice(seed.indexOf("## 8."));
const code = section.slice(section.indexOf("```js") + 5, section.indexOf("```", section.indexOf("```js") + 5));

let socket = null;
const handlers = {};
let connects = 0;
const wx = {
  connectSocket({ url }) {
    connects += 1;
    socket = new WebSocket(url);
    socket.on("open", () => handlers.open && handlers.open());
    socket.on("message", (data) => handlers.message && handlers.message({ data: data.toString() }));
    socket.on("close", () => handlers.close && handlers.close());
    socket.on("error", () => {}); // a close follows; the seed reconnects from onSocketClose
  },
  onSocketOpen(f) { handlers.open = f; },
  onSocketMessage(f) { handlers.message = f; },
  onSocketClose(f) { handlers.close = f; },
  onSocketError(f) { handlers.error = f; },
  sendSocketMessage({ data }) { socket.send(data); },
  request({ url, success }) {
    fetch(url.replace(/^ws/, "http")).then((r) => r.json()).then((data) => success({ data }));
  },
};

const OddsWSClient = new Function("wx", `${code}\nreturn OddsWSClient;`)(wx);
const client = new OddsWSClient(baseUrl, token);

const applied = [];
const errors = [];
let dropped = false;
client._applyUpdate = (msg) => {
  applied.push(msg.seq);
  if (!dropped && applied.length >= Number(dropAfter)) {
    dropped = true;
    socket.terminate(); // no close frame: a dropped network
  }
  if (msg.seq >= Number(total)) {
    console.log(JSON.stringify({ applied, errors, connects }));
    process.exit(0);
  }
};
const onMessage = client._onMessage.bind(client);
client._onMessage = (msg) => {
  if (msg.type === "error") errors.push(msg);
  onMessage(msg);
};
const subscribeOnFirstOpen = (open) => () => {
  open();
  if (connects === 1) client.subscribe([market]);
};
const connect = client.connect.bind(client);
client.connect = () => {
  connect();
  handlers.open = subscribeOnFirstOpen(handlers.open);
};
client.connect();
setTimeout(() => {
  console.log(JSON.stringify({ applied, errors, connects, timeout: true }));
  process.exit(1);
}, 20000);
