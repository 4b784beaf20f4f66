// Forwarding on loopback: a WireGuardProxy + StaticPath in a child process between a fake WireGuard
// and a fake peer (two UDP sockets in this process), against the same generator and sink talking
// directly, in one run. Also a bare Node relay (the same socket calls with no checks) in a child
// process, to show how much of the cost is Node's per-datagram dgram cost rather than the proxy's.
//   npx tsx bench/forwarding.ts
// For profiling: TBT_BENCH_CPU_PROF=DIR writes a V8 CPU profile of the proxy process (node --cpu-prof);
// TBT_BENCH_FWD_ONLY=proxy/out runs one throughput variant (route/dir); TBT_BENCH_FWD_MS sets its length.
import { type ChildProcess, spawn } from "node:child_process";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { fileURLToPath } from "node:url";
import { createLogger } from "../src/log.js";
import { decodeKey, encodeKey } from "../src/mac1/keys.js";
import { MessageType, messageType, TransportOffset, writeU32LE } from "../src/mac1/messages.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../src/mac1/noise.js";
import { SOCKET_BUFFER_BYTES } from "../src/proxy/socket-options.js";
import { StaticPath } from "../src/proxy/static-path.js";
import { WireGuardProxy } from "../src/proxy/wireguard-proxy.js";
import { median, percentile } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHILD_FLAG = "--forwarding-child";
const HOST = "127.0.0.1";

/** UDP payload size of every transport message (WireGuard's default MTU). */
const DATAGRAM_BYTES = 1420;
/** Datagrams in flight in a throughput run: enough to keep the forwarder busy, well under its buffers. */
const WINDOW = 256;
const WARMUP_MS = 300;
const THROUGHPUT_MS = Number(process.env.TBT_BENCH_FWD_MS ?? 2000);
const THROUGHPUT_REPS = 4;
const LATENCY_BLOCKS = 5;
const LATENCY_ROUNDS_PER_BLOCK = 4000;
/** With nothing received for this long, the datagrams in flight are counted lost and the window refilled. */
const STALL_MS = 50;
const WG_INDEX = 0x11223344;
const PEER_INDEX = 0x55667788;
/** Far from WireGuard's and Tunnelbore's default ports; the address part of L(P) is random anyway. */
const LOOPBACK_PORT_BASE = 47822;

interface Address {
  address: string;
  port: number;
}

interface ChildConfig {
  /** relay-sync-lookup: the relay with sockets whose lookup answers an IP literal without a nextTick. */
  mode: "proxy" | "relay" | "relay-sync-lookup";
  wgPort: number;
  peerPort: number;
  wgPublicKey: string;
  peerPublicKey: string;
}

type ToChild = { type: "stats" } | { type: "exit" };

interface ChildStats {
  /** User + system CPU of the child process so far. */
  cpuMicros: number;
  /** Datagrams forwarded WireGuard -> peer and peer -> WireGuard (the proxy's counters; the relay counts too). */
  tx: number;
  rx: number;
  dropped: number;
}

type FromChild =
  | { type: "ready"; wgSide: Address; peerSide: Address; catchAll: Address | null }
  | ({ type: "stats" } & ChildStats);

// ---------------------------------------------------------------------------------------------------
// The child: the proxy (or the bare relay) in a process of its own, so it never shares an event loop
// with the load generator.

/** Answers stats requests and exits (writing a --cpu-prof profile) when asked. */
function serveParent(stats: () => ChildStats): void {
  process.on("message", (raw: ToChild) => {
    if (raw.type === "stats") process.send?.({ type: "stats", ...stats() } satisfies FromChild);
    else if (raw.type === "exit") process.exit(0);
  });
  process.on("disconnect", () => process.exit(0));
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

async function proxyChild(cfg: ChildConfig): Promise<void> {
  const logger = createLogger("bench-proxy", "silent");
  const proxy = new WireGuardProxy({
    wireguardPort: cfg.wgPort,
    catchAll: { address: HOST, port: 0 },
    loopbackPortBase: LOOPBACK_PORT_BASE,
    localPublicKey: decodeKey(cfg.wgPublicKey),
    logger,
  });
  await proxy.start();
  const peer = await proxy.addPeer(cfg.peerPublicKey, decodeKey(cfg.peerPublicKey));
  const path = new StaticPath({ host: HOST, port: cfg.peerPort }, logger);
  path.onForeignDatagram = () => proxy.drops["foreign-source"]++;
  await path.open();
  proxy.setPath(cfg.peerPublicKey, path);
  serveParent(() => ({
    cpuMicros: cpuMicros(),
    tx: peer.traffic.txDatagrams,
    rx: peer.traffic.rxDatagrams,
    dropped: Object.values(proxy.drops).reduce((a, b) => a + b, 0),
  }));
  process.send?.({
    type: "ready",
    wgSide: { address: peer.loopback.address, port: peer.loopback.port },
    // The static path's port is learned from the first datagram it sends (see handshake()).
    peerSide: { address: HOST, port: 0 },
    catchAll: proxy.catchAllAddress,
  } satisfies FromChild);
}

/** The floor: the proxy's socket calls (send with a port and an address string) and nothing else. */
async function relayChild(cfg: ChildConfig): Promise<void> {
  const syncLookup = cfg.mode === "relay-sync-lookup";
  const wgSide = await bindSocket(syncLookup);
  const peerSide = await bindSocket(syncLookup);
  let tx = 0;
  let rx = 0;
  wgSide.on("message", (msg) => {
    peerSide.send(msg, cfg.peerPort, HOST);
    tx++;
  });
  peerSide.on("message", (msg) => {
    wgSide.send(msg, cfg.wgPort, HOST);
    rx++;
  });
  serveParent(() => ({ cpuMicros: cpuMicros(), tx, rx, dropped: 0 }));
  process.send?.({
    type: "ready",
    wgSide: wgSide.address(),
    peerSide: peerSide.address(),
    catchAll: null,
  } satisfies FromChild);
}

// ---------------------------------------------------------------------------------------------------
// The parent: generator and sink.

/**
 * dgram's default lookup (dns.lookup) answers even an IP literal on the next tick, so every unconnected
 * send costs a nextTick; this one answers at once. The generator uses it, and one relay variant.
 */
function literalLookup(
  address: string,
  _family: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, address, 4);
}

async function bindSocket(fastLookup: boolean): Promise<Socket> {
  const socket = createSocket({
    type: "udp4",
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
    ...(fastLookup ? { lookup: literalLookup } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(0, HOST, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  return socket;
}

class Child {
  private readonly pending: Array<(s: ChildStats) => void> = [];
  readonly exited: Promise<void>;

  private constructor(
    readonly process: ChildProcess,
    readonly ready: Extract<FromChild, { type: "ready" }>,
  ) {
    this.exited = new Promise((resolve) => process.once("exit", () => resolve()));
    process.on("message", (msg: FromChild) => {
      if (msg.type === "stats") this.pending.shift()?.({ ...msg });
    });
  }

  static async start(cfg: ChildConfig): Promise<Child> {
    const profileDir = process.env.TBT_BENCH_CPU_PROF;
    const child = spawn(
      process.execPath,
      [
        ...(profileDir && cfg.mode === "proxy" ? ["--cpu-prof", `--cpu-prof-dir=${profileDir}`] : []),
        "--import",
        "tsx",
        THIS_FILE,
        CHILD_FLAG,
        JSON.stringify(cfg),
      ],
      { cwd: PROJECT_ROOT, stdio: ["ignore", "inherit", "inherit", "ipc"] },
    );
    const ready = await new Promise<Extract<FromChild, { type: "ready" }>>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${cfg.mode} child did not start`)), 20_000);
      child.once("exit", (code) => reject(new Error(`${cfg.mode} child exited (${code})`)));
      child.on("message", (msg: FromChild) => {
        if (msg.type !== "ready") return;
        clearTimeout(timer);
        resolve(msg);
      });
    });
    return new Child(child, ready);
  }

  stats(): Promise<ChildStats> {
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.process.send({ type: "stats" } satisfies ToChild);
    });
  }

  async stop(): Promise<void> {
    if (this.process.exitCode !== null || this.process.signalCode !== null) return;
    this.process.send({ type: "exit" } satisfies ToChild);
    const timer = setTimeout(() => this.process.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(timer);
  }
}

/** A ring of well-formed type-4 messages to `receiver`, with increasing counters. */
function transportRing(receiver: number, count: number): Buffer[] {
  const ring: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.alloc(DATAGRAM_BYTES, 0xa5);
    b.fill(0, 0, TransportOffset.PAYLOAD);
    b[0] = MessageType.Transport;
    writeU32LE(b, TransportOffset.RECEIVER, receiver);
    writeU32LE(b, TransportOffset.COUNTER, i);
    ring.push(b);
  }
  return ring;
}

function nextMessage(socket: Socket, type: number, timeoutMs = 5000): Promise<[Buffer, RemoteInfo]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off("message", onMessage);
      reject(new Error(`no message of type ${type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (msg: Buffer, rinfo: RemoteInfo) => {
      if (messageType(msg) !== type) return;
      clearTimeout(timer);
      socket.off("message", onMessage);
      resolve([msg, rinfo]);
    };
    socket.on("message", onMessage);
  });
}

/**
 * A real handshake through the proxy, so it learns the indices and the fake WireGuard and peer learn
 * each other's proxy-side addresses: initiation W -> L(P) -> static path -> P, response back.
 */
async function handshake(
  wg: Socket,
  peer: Socket,
  toWgSide: Address,
  keys: { wg: ReturnType<typeof generateKeyPair>; peer: ReturnType<typeof generateKeyPair> },
): Promise<{ peerSide: Address }> {
  const initiation = Buffer.from(
    buildInitiation({
      initiatorPrivateKey: keys.wg.privateKey,
      responderPublicKey: keys.peer.publicKey,
      senderIndex: WG_INDEX,
    }),
  );
  const gotInitiation = nextMessage(peer, MessageType.Initiation);
  wg.send(initiation, toWgSide.port, toWgSide.address);
  const [, from] = await gotInitiation;
  const response = Buffer.from(
    buildResponse({ responderPrivateKey: keys.peer.privateKey, initiation, senderIndex: PEER_INDEX }),
  );
  const gotResponse = nextMessage(wg, MessageType.Response);
  peer.send(response, from.port, from.address);
  const [, responder] = await gotResponse;
  if (responder.address !== toWgSide.address || responder.port !== toWgSide.port) {
    throw new Error(`the response came from ${responder.address}:${responder.port}, not from L(P)`);
  }
  return { peerSide: { address: from.address, port: from.port } };
}

interface FlowResult {
  rate: number;
  sent: number;
  received: number;
  lost: number;
}

/**
 * Sends from `from` to `to` as fast as the sink takes them, keeping WINDOW datagrams in flight, for
 * WARMUP_MS + ms; the rate counts only what the sink received after the warm-up.
 */
function flow(from: Socket, to: Address, sink: Socket, ring: Buffer[], ms: number): Promise<FlowResult> {
  return new Promise((resolve) => {
    let sent = 0;
    let received = 0;
    let presumedLost = 0;
    let running = true;
    let next = 0;
    const send = () => {
      const b = ring[next]!;
      next = next + 1 === ring.length ? 0 : next + 1;
      from.send(b, to.port, to.address);
      sent++;
    };
    const refill = () => {
      while (running && sent - received - presumedLost < WINDOW) send();
    };
    const onMessage = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      received++;
      if (running) send();
    };
    sink.on("message", onMessage);
    let lastReceived = -1;
    const watchdog = setInterval(() => {
      if (received === lastReceived && running) {
        presumedLost = sent - received;
        refill();
      }
      lastReceived = received;
    }, STALL_MS);
    let startCount = 0;
    let startTime = 0;
    setTimeout(() => {
      startCount = received;
      startTime = performance.now();
    }, WARMUP_MS);
    setTimeout(() => {
      const elapsed = performance.now() - startTime;
      const count = received - startCount;
      running = false;
      clearInterval(watchdog);
      // Drain: whatever is still on its way counts as delivered, the rest as lost.
      setTimeout(() => {
        sink.off("message", onMessage);
        resolve({ rate: (count / elapsed) * 1000, sent, received, lost: sent - received });
      }, 200);
    }, WARMUP_MS + ms);
    refill();
  });
}

interface PingResult {
  /** One-way times a -> b and b -> a in microseconds (one datagram in flight; one clock). */
  ab: number[];
  ba: number[];
}

/** Ping-pong: a sends to aTo, b answers to bTo at once; each leg timed on this process's clock. */
function pingPong(a: Socket, aTo: Address, b: Socket, bTo: Address, rounds: number): Promise<PingResult> {
  const pingMsg = transportRing(PEER_INDEX, 1)[0]!;
  const pongMsg = transportRing(WG_INDEX, 1)[0]!;
  return new Promise((resolve) => {
    const ab: number[] = [];
    const ba: number[] = [];
    let sentAt = 0;
    let lastProgress = 0;
    const ping = () => {
      sentAt = performance.now();
      a.send(pingMsg, aTo.port, aTo.address);
    };
    const onB = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      const now = performance.now();
      ab.push((now - sentAt) * 1000);
      sentAt = now;
      b.send(pongMsg, bTo.port, bTo.address);
    };
    const onA = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      ba.push((performance.now() - sentAt) * 1000);
      lastProgress = ba.length;
      if (ba.length < rounds) ping();
      else finish();
    };
    // A lost datagram (rare on loopback) would stop the ping-pong: start a new round.
    let lastSeen = -1;
    const watchdog = setInterval(() => {
      if (lastProgress === lastSeen) {
        if (ab.length > ba.length) ab.pop();
        ping();
      }
      lastSeen = lastProgress;
    }, 200);
    const finish = () => {
      clearInterval(watchdog);
      a.off("message", onA);
      b.off("message", onB);
      resolve({ ab, ba });
    };
    a.on("message", onA);
    b.on("message", onB);
    ping();
  });
}

const fmtRate = (r: number) => `${Math.round(r / 1000)}k`;

export async function benchForwarding(): Promise<BenchRow[]> {
  const keys = { wg: generateKeyPair(), peer: generateKeyPair() };
  const wg = await bindSocket(true);
  const peer = await bindSocket(true);
  const cfg = {
    wgPort: wg.address().port,
    peerPort: peer.address().port,
    wgPublicKey: encodeKey(keys.wg.publicKey),
    peerPublicKey: encodeKey(keys.peer.publicKey),
  };
  const children: Child[] = [];
  try {
    const proxy = await Child.start({ ...cfg, mode: "proxy" });
    children.push(proxy);
    const relay = await Child.start({ ...cfg, mode: "relay" });
    children.push(relay);
    const relaySync = await Child.start({ ...cfg, mode: "relay-sync-lookup" });
    children.push(relaySync);
    const { peerSide } = await handshake(wg, peer, proxy.ready.wgSide, keys);

    const toPeer = transportRing(PEER_INDEX, 1024);
    const toWg = transportRing(WG_INDEX, 1024);
    const direct = { out: { address: HOST, port: cfg.peerPort }, in: { address: HOST, port: cfg.wgPort } };
    const routes = {
      direct,
      proxy: { out: proxy.ready.wgSide, in: peerSide },
      catchAll: { out: proxy.ready.catchAll!, in: peerSide },
      relay: { out: relay.ready.wgSide, in: relay.ready.peerSide },
      relaySync: { out: relaySync.ready.wgSide, in: relaySync.ready.peerSide },
    };
    type Route = keyof typeof routes;
    const childOf: Partial<Record<Route, Child>> = { proxy, catchAll: proxy, relay, relaySync };

    // Throughput, one direction at a time; every variant once per repetition, so drift hits all alike.
    const variants: Array<{ route: Route; dir: "out" | "in" }> = [
      { route: "direct", dir: "out" },
      { route: "proxy", dir: "out" },
      { route: "catchAll", dir: "out" },
      { route: "relay", dir: "out" },
      { route: "relaySync", dir: "out" },
      { route: "direct", dir: "in" },
      { route: "proxy", dir: "in" },
      { route: "relay", dir: "in" },
      { route: "relaySync", dir: "in" },
    ];
    const only = process.env.TBT_BENCH_FWD_ONLY;
    if (only) variants.splice(0, variants.length, ...variants.filter((v) => `${v.route}/${v.dir}` === only));
    const results = new Map<string, { flows: FlowResult[]; cpuPerDatagram: number[] }>();
    for (let rep = 0; rep < THROUGHPUT_REPS; rep++) {
      for (const { route, dir } of variants) {
        const child = childOf[route];
        const before = await child?.stats();
        const r =
          dir === "out"
            ? await flow(wg, routes[route].out, peer, toPeer, THROUGHPUT_MS)
            : await flow(peer, routes[route].in, wg, toWg, THROUGHPUT_MS);
        const after = await child?.stats();
        const key = `${route}/${dir}`;
        const entry = results.get(key) ?? { flows: [], cpuPerDatagram: [] };
        entry.flows.push(r);
        if (before && after) {
          const forwarded = dir === "out" ? after.tx - before.tx : after.rx - before.rx;
          entry.cpuPerDatagram.push((after.cpuMicros - before.cpuMicros) / forwarded);
          if (after.dropped !== before.dropped) {
            throw new Error(`the proxy dropped ${after.dropped - before.dropped} well-formed datagrams`);
          }
        }
        results.set(key, entry);
      }
    }

    // Latency: blocks of ping-pong alternating direct and through the proxy.
    const lat = {
      direct: { ab: [] as number[], ba: [] as number[] },
      proxy: { ab: [] as number[], ba: [] as number[] },
    };
    for (let block = 0; block < LATENCY_BLOCKS; block++) {
      for (const route of ["direct", "proxy"] as const) {
        const r = await pingPong(wg, routes[route].out, peer, routes[route].in, LATENCY_ROUNDS_PER_BLOCK);
        // The first rounds of a block warm up sockets and caches.
        lat[route].ab.push(...r.ab.slice(100));
        lat[route].ba.push(...r.ba.slice(100));
      }
    }

    const rows: BenchRow[] = [];
    const label: Record<Route, string> = {
      direct: "direct (no proxy)",
      proxy: "through the proxy",
      catchAll: "through the proxy, via catch-all",
      relay: "bare Node relay",
      relaySync: "bare Node relay, sync lookup",
    };
    const dirLabel = { out: "WireGuard -> peer", in: "peer -> WireGuard" };
    for (const { route, dir } of variants) {
      const entry = results.get(`${route}/${dir}`);
      if (!entry) continue;
      const rates = entry.flows.map((f) => f.rate);
      const sent = entry.flows.reduce((s, f) => s + f.sent, 0);
      const lost = entry.flows.reduce((s, f) => s + f.lost, 0);
      const cpu = entry.cpuPerDatagram.length ? median(entry.cpuPerDatagram) : null;
      rows.push({
        name: `fwd ${dirLabel[dir]}, ${label[route]}`,
        value: median(rates),
        unit: "datagrams/s",
        note: [
          `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")}), best ${fmtRate(Math.max(...rates))}`,
          `lost ${lost} of ${sent}`,
          // What one core could forward if the forwarder had it to itself.
          cpu === null
            ? ""
            : `forwarder CPU ${cpu.toFixed(1)} us/datagram (${fmtRate(1e6 / cpu)}/s per core)`,
        ]
          .filter(Boolean)
          .join("; "),
      });
    }
    for (const dir of ["out", "in"] as const) {
      const through = results.get(`proxy/${dir}`)?.flows.map((f) => f.rate);
      const base = results.get(`direct/${dir}`)?.flows.map((f) => f.rate);
      if (!through || !base) continue;
      // Each repetition's runs were seconds apart: their ratio is the least disturbed by other load.
      const ratios = through.map((t, i) => t / base[i]!);
      rows.push({
        name: `fwd ${dirLabel[dir]}: proxy / direct`,
        value: median(ratios),
        unit: "x",
        note: `median of per-repetition ratios (${ratios.map((r) => r.toFixed(2)).join(", ")}); target >= 200k datagrams/s through the proxy`,
      });
    }
    const legs = { ab: "WireGuard -> peer", ba: "peer -> WireGuard" } as const;
    for (const leg of ["ab", "ba"] as const) {
      const d = lat.direct[leg];
      const p = lat.proxy[leg];
      const n = `${p.length} round trips in ${LATENCY_BLOCKS} blocks alternating with direct`;
      rows.push(
        { name: `lat ${legs[leg]} one way, direct p50`, value: median(d), unit: "us" },
        { name: `lat ${legs[leg]} one way, direct p99`, value: percentile(d, 99), unit: "us" },
        { name: `lat ${legs[leg]} one way, proxy p50`, value: median(p), unit: "us", note: n },
        { name: `lat ${legs[leg]} one way, proxy p99`, value: percentile(p, 99), unit: "us" },
        {
          name: `lat ${legs[leg]}: added p50`,
          value: median(p) - median(d),
          unit: "us",
          note: "target <= 50 us",
        },
        { name: `lat ${legs[leg]}: added p99`, value: percentile(p, 99) - percentile(d, 99), unit: "us" },
      );
    }
    return rows;
  } finally {
    for (const child of children) await child.stop();
    wg.close();
    peer.close();
  }
}

if (process.argv[2] === CHILD_FLAG && process.argv[1] === THIS_FILE) {
  const cfg = JSON.parse(process.argv[3] ?? "{}") as ChildConfig;
  await (cfg.mode === "proxy" ? proxyChild(cfg) : relayChild(cfg));
} else if (process.argv[1] === THIS_FILE) {
  console.log(formatTable(await benchForwarding()));
}
