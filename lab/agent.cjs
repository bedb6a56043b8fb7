"use strict";
// Traffic agent run inside a lab namespace: `ip netns exec NS node agent.cjs MODE JSON_ARGS`.
// Plain CommonJS without dependencies, so it starts in tens of milliseconds.
//
// Protocol: one JSON object per stdout line — {type:"ready"}, {type:"peer",peer}, then
// {type:"result",...} or {type:"error",message} just before exiting. "stop\n" on stdin, or stdin
// closing (the parent died), ends every mode; each mode also has its own time bound.
//
// Modes:
//   serve    TCP servers that first write the peer address they see, then echo each line prefixed
//            with it; UDP sockets that answer each datagram with "<peer> <payload>".
//   connect  n short TCP connections, each reading the first line (the address the server saw);
//            with protocol "udp", n UDP exchanges, each one datagram from a socket of its own.
//   longlived  count TCP connections exchanging a numbered line every intervalMs.
//   udpflow  one UDP socket (one source port) sending a numbered datagram every intervalMs.

const net = require("node:net");
const dgram = require("node:dgram");

const [mode, rawArgs = "{}"] = process.argv.slice(2);
const args = JSON.parse(rawArgs);

const emit = (event) => process.stdout.write(JSON.stringify(event) + "\n");
const exitWith = (event, code) => process.stdout.write(JSON.stringify(event) + "\n", () => process.exit(code));
const plain = (address) => String(address || "").replace(/^::ffff:/, "");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Never outlive the parent's intent, even if it forgets us.
setTimeout(() => exitWith({ type: "error", message: "agent max lifetime reached" }, 3), args.maxLifetimeMs || 600_000).unref();

let stopHandler = () => process.exit(0);
let stopping = false;
function requestStop() {
  if (stopping) return;
  stopping = true;
  stopHandler();
}
process.stdin.setEncoding("utf8");
let stdinText = "";
process.stdin.on("data", (d) => {
  stdinText += d;
  if (stdinText.includes("stop")) requestStop();
});
process.stdin.on("end", requestStop);
process.stdin.on("error", requestStop);

/** Calls onLine for each complete line; destroys sockets that send unbounded garbage. */
function lineReader(sock, onLine) {
  let buf = "";
  sock.setEncoding("utf8");
  sock.on("data", (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      onLine(line);
    }
    if (buf.length > 65536) sock.destroy();
  });
}

function serve({ addresses = ["0.0.0.0"], tcpPorts = [], udpPorts = [], reportPeers = false }) {
  let accepted = 0;
  const closers = [];
  const listening = [];
  const onError = (e) => exitWith({ type: "error", message: `${e.code || ""} ${e.message}` }, 1);
  for (const host of addresses) {
    for (const port of tcpPorts) {
      const server = net.createServer((sock) => {
        accepted++;
        const peer = plain(sock.remoteAddress);
        if (reportPeers) emit({ type: "peer", peer, port: sock.remotePort });
        sock.setNoDelay(true);
        sock.on("error", () => {});
        sock.write(peer + "\n");
        lineReader(sock, (line) => sock.write(`${peer} ${line}\n`));
      });
      server.on("error", onError);
      listening.push(new Promise((r) => server.listen({ host, port, backlog: 1024 }, r)));
      closers.push(() => server.close());
    }
    for (const port of udpPorts) {
      const sock = dgram.createSocket("udp4");
      sock.on("error", onError);
      sock.on("message", (msg, rinfo) => sock.send(`${rinfo.address} ${msg.toString("utf8", 0, 256)}`, rinfo.port, rinfo.address));
      listening.push(new Promise((r) => sock.bind({ address: host, port }, r)));
      closers.push(() => sock.close());
    }
  }
  stopHandler = () => {
    closers.forEach((c) => c());
    exitWith({ type: "result", accepted }, 0);
  };
  Promise.all(listening).then(() => emit({ type: "ready" }));
}

/**
 * One TCP connection: resolves when the first line arrived (ok) or on failure/timeout.
 * With `exchange`, also sends a line and waits for its echo.
 */
function connectOnce({ dst, port, src, connectTimeoutMs, exchange }) {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    let connected = false;
    let seenAs = null;
    let done = false;
    const sock = net.connect({ host: dst, port, localAddress: src || undefined });
    const finish = (ok, error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      const result = { ok, connected, seenAs, startedAt, ms: Date.now() - startedAt };
      if (error) result.error = error;
      if (!ok) {
        sock.destroy();
        return resolve(result);
      }
      // Close gracefully (FIN, not RST) so conntrack sees a normal teardown; bounded wait.
      const t = setTimeout(() => sock.destroy(), 1000);
      sock.once("close", () => {
        clearTimeout(t);
        resolve(result);
      });
      sock.end();
    };
    const timer = setTimeout(() => finish(false, connected ? "timeout waiting for data" : "connect timeout"), connectTimeoutMs);
    sock.setNoDelay(true);
    sock.on("connect", () => {
      connected = true;
      if (exchange) sock.write("hello\n");
    });
    lineReader(sock, (line) => {
      if (seenAs === null) {
        seenAs = line.split(" ")[0];
        if (!exchange) finish(true);
      } else if (line.endsWith(" hello")) finish(true);
    });
    sock.on("error", (e) => finish(false, e.code || e.message));
    sock.on("close", () => finish(false, "closed before data"));
  });
}

/**
 * One UDP exchange, the datagram counterpart of connectOnce: a fresh socket sends one datagram and
 * resolves on the echo (ok) or on failure/timeout. The socket is connected, so that the ICMP errors
 * Linux reports to UDP (port unreachable, prohibited; not host unreachable) fail it at once.
 */
function udpOnce({ dst, port, src, connectTimeoutMs }) {
  return new Promise((resolve) => {
    const startedAt = Date.now();
    const sock = dgram.createSocket("udp4");
    let done = false;
    const finish = (seenAs, error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      const result = { ok: !error, connected: !error, seenAs, startedAt, ms: Date.now() - startedAt };
      if (error) result.error = error;
      resolve(result);
    };
    const timer = setTimeout(() => finish(null, "timeout waiting for the echo"), connectTimeoutMs);
    const failed = (e) => e && finish(null, e.code || e.message);
    sock.on("error", failed);
    sock.on("message", (msg) => finish(msg.toString().split(" ")[0]));
    sock.bind({ address: src || "0.0.0.0", port: 0 }, () => sock.connect(port, dst, (e) => (e ? failed(e) : sock.send("hello", failed))));
  });
}

async function connectMany(o) {
  const { n, concurrency = 20, ratePerSec, durationLimitMs = 60_000 } = o;
  const results = new Array(n);
  const t0 = Date.now();
  const deadline = t0 + durationLimitMs;
  let next = 0;
  stopHandler = () => {}; // a stop request only makes the workers give up starting connections
  const worker = async () => {
    while (next < n && !stopping) {
      const i = next++;
      const src = (o.sources ? o.sources[i % o.sources.length] : o.src) || null;
      if (ratePerSec) await sleep(Math.min(t0 + (i * 1000) / ratePerSec, deadline) - Date.now());
      if (Date.now() >= deadline || stopping) {
        results[i] = { ok: false, connected: false, seenAs: null, src, startedAt: Date.now(), ms: 0, error: "not started: duration limit" };
        continue;
      }
      results[i] = { ...(await (o.protocol === "udp" ? udpOnce : connectOnce)({ ...o, src })), src };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, n)) }, worker));
  exitWith({ type: "result", results }, 0);
}

async function longLived({ count, dst, port, src, intervalMs = 200, durationMs = 30_000, connectTimeoutMs = 2000 }) {
  const conns = [];
  const opened = [];
  stopHandler = () => {}; // honoured below, once every connection has settled
  for (let i = 0; i < count; i++) {
    const c = { seen: [], sent: 0, answered: 0, closedByPeer: false, error: undefined, sock: null, timer: null };
    conns.push(c);
    opened.push(
      new Promise((ready) => {
        const sock = net.connect({ host: dst, port, localAddress: src || undefined });
        c.sock = sock;
        const giveUp = setTimeout(() => {
          c.error = c.error || "connect timeout";
          sock.destroy();
          ready();
        }, connectTimeoutMs);
        sock.setNoDelay(true);
        lineReader(sock, (line) => {
          const [addr, seq] = line.split(" ");
          c.seen.push(addr);
          if (seq === undefined) {
            clearTimeout(giveUp);
            ready();
          } else c.answered++;
        });
        sock.on("error", (e) => (c.error = c.error || e.code || e.message));
        sock.on("close", () => {
          if (!stopping) c.closedByPeer = true;
          clearTimeout(giveUp);
          ready();
        });
      }),
    );
  }
  await Promise.all(opened);

  const stop = async () => {
    for (const c of conns) clearInterval(c.timer);
    // Give replies still in flight a short, bounded chance to arrive.
    for (let i = 0; i < 10 && conns.some((c) => c.answered < c.sent && !c.sock.destroyed); i++) await sleep(50);
    for (const c of conns) c.sock.end();
    const connections = conns.map(({ seen, sent, answered, closedByPeer, error }) => ({ seen, sent, answered, closedByPeer, ...(error ? { error } : {}) }));
    exitWith({ type: "result", connections }, 0);
  };
  stopHandler = stop;
  if (stopping) return stop();
  for (const c of conns) {
    c.timer = setInterval(() => {
      if (c.sock.destroyed || !c.sock.writable) return;
      c.sock.write(`${c.sent++}\n`);
    }, intervalMs);
  }
  setTimeout(requestStop, durationMs);
  emit({ type: "ready", established: conns.filter((c) => c.seen.length > 0).length });
}

function udpFlow({ dst, port, src, intervalMs = 200, durationMs = 30_000 }) {
  const sock = dgram.createSocket("udp4");
  const replies = [];
  let sent = 0;
  let timer = null;
  sock.on("error", () => {}); // ICMP errors and the like: missing replies tell the story
  sock.on("message", (msg) => {
    const [seenAs, seq] = msg.toString().split(" ");
    replies.push({ at: Date.now(), seq: Number(seq), seenAs });
  });
  stopHandler = () => {
    clearInterval(timer);
    // A last reply may be in flight: wait one bounded moment.
    setTimeout(() => {
      let localPort = null;
      try {
        localPort = sock.address().port;
        sock.close();
      } catch {} // stopped before the socket was bound
      exitWith({ type: "result", localPort, sent, replies }, 0);
    }, Math.min(intervalMs, 200));
  };
  sock.bind({ address: src || "0.0.0.0", port: 0 }, () => {
    if (stopping) return;
    const send = () => sock.send(String(sent++), port, dst);
    send();
    timer = setInterval(send, intervalMs);
    setTimeout(requestStop, durationMs);
    emit({ type: "ready", localPort: sock.address().port });
  });
}

const modes = { serve, connect: connectMany, longlived: longLived, udpflow: udpFlow };
if (!modes[mode]) exitWith({ type: "error", message: `unknown mode ${mode}` }, 2);
else
  Promise.resolve(modes[mode](args)).catch((e) => exitWith({ type: "error", message: String((e && e.stack) || e) }, 1));
