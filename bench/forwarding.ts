// Forwarding on loopback: a WireGuardProxy + StaticPath in a child process between a fake WireGuard
// and a fake peer (two UDP sockets in this process), against the same generator and sink talking
// directly, in one run. Also a bare Node relay (the same socket calls with no checks) in a child
// process, to show how much of the cost is Node's per-datagram dgram cost rather than the proxy's.
//   npx tsx bench/forwarding.ts
// For profiling: TBT_BENCH_CPU_PROF=DIR writes a V8 CPU profile of the proxy process (node --cpu-prof);
// TBT_BENCH_FWD_ONLY=proxy/out runs one throughput variant (route/dir); TBT_BENCH_FWD_MS sets its length.
// With the kernel fast path (--ebpf) too, as extra rows: as root and after `npm run build` (which builds
// dist/ebpf/fast-path.bpf.o), the benchmark re-runs itself inside a network namespace of its own
// (tbt-fwd-*, deleted at the end), because the program attaches to lo; there it measures direct and the
// proxy with the fast path (TBT_BENCH_FWD_ONLY=ebpf/out runs only that variant and its baseline), with
// Node's generator and then with bench/udp-flood.c (compiled with cc), which is fast enough to find its limit.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { FastPathProgram } from "../ebpf/loader.js";
import { createLogger } from "../src/log.js";
import type { KernelForwarder } from "../src/proxy/kernel-forwarder.js";
import { SOCKET_BUFFER_BYTES } from "../src/proxy/socket-options.js";
import { StaticPath } from "../src/proxy/static-path.js";
import { WireGuardProxy } from "../src/proxy/wireguard-proxy.js";
import { decodeKey, encodeKey } from "../src/wireguard/keys.js";
import { MessageType, messageType, TransportOffset, writeU32LE } from "../src/wireguard/messages.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../test/support/noise.js";
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

const execFileAsync = promisify(execFile);
/** Set (to 1) in the environment of the re-run inside the namespace: it measures --ebpf and prints JSON rows. */
const EBPF_ENV = "TBT_BENCH_FWD_EBPF";
/** The line of the re-run's stdout that carries its rows. */
const EBPF_ROWS_MARKER = "TBT_FWD_EBPF_ROWS ";
const NAMESPACE_PREFIX = "tbt-fwd-";
/** Names only the program's pin directory and its tc priority; no such interface exists. */
const EBPF_INTERFACE = "tbfwd0";
const EBPF_OBJECT = join(PROJECT_ROOT, "dist", "ebpf", "fast-path.bpf.o");
/** The whole re-run (about 50 s): past this it is stopped and the namespace deleted. */
const EBPF_RUN_LIMIT_MS = 240_000;
/** The C generator (bench/udp-flood.c), compiled by the outer run and named to the re-run by this variable. */
const UDP_FLOOD_ENV = "TBT_BENCH_UDP_FLOOD";
const UDP_FLOOD_SOURCE = join(PROJECT_ROOT, "bench", "udp-flood.c");
/** The kernel forwarder folds the kernel's counters into the peer's once per second. */
const KERNEL_POLL_WAIT_MS = 1500;

interface Address {
  address: string;
  port: number;
}

interface ChildConfig {
  /** relay-sync-lookup: the relay with sockets whose lookup answers an IP literal without a nextTick. */
  /** proxy-ebpf: the proxy with the kernel fast path (only inside a tbt-fwd-* namespace). */
  mode: "proxy" | "proxy-ebpf" | "relay" | "relay-sync-lookup";
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
  /** The part of tx / rx the kernel fast path carried (folded in once per second; 0 without it). */
  kernelTx: number;
  kernelRx: number;
}

type FromChild =
  | { type: "ready"; wgSide: Address; peerSide: Address; catchAll: Address | null }
  | ({ type: "stats" } & ChildStats);

// ---------------------------------------------------------------------------------------------------
// The child: the proxy (or the bare relay) in a process of its own, so it never shares an event loop
// with the load generator.

/**
 * Answers stats requests and exits (writing a --cpu-prof profile) when asked, or when the parent is
 * gone, after `cleanup` (which also runs on SIGINT and SIGTERM when given).
 */
function serveParent(stats: () => ChildStats, cleanup?: () => Promise<void>): void {
  let exiting = false;
  const exit = (code: number) => {
    if (exiting) return;
    exiting = true;
    void (cleanup?.() ?? Promise.resolve())
      .catch((err: unknown) => console.error("forwarding bench child: cleanup failed:", err))
      .finally(() => process.exit(code));
  };
  process.on("message", (raw: ToChild) => {
    if (raw.type === "stats") process.send?.({ type: "stats", ...stats() } satisfies FromChild);
    else if (raw.type === "exit") exit(0);
  });
  process.on("disconnect", () => exit(0));
  if (cleanup) {
    process.once("SIGINT", () => exit(130));
    process.once("SIGTERM", () => exit(143));
  }
}

function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Refuses to go on unless this process is in a namespace this benchmark made (never the host's lo). */
async function assertInBenchNamespace(): Promise<void> {
  const { stdout } = await execFileAsync("ip", ["netns", "identify"], { timeout: 5000 });
  const ns = stdout.trim();
  if (!ns.startsWith(NAMESPACE_PREFIX)) {
    throw new Error(`the eBPF variant runs only inside a ${NAMESPACE_PREFIX}* namespace, not in "${ns}"`);
  }
}

/** The kernel fast path for the proxy child: loaded and attached to lo (of the bench's namespace). */
async function loadKernelForwarder(
  logger: ReturnType<typeof createLogger>,
): Promise<{ program: FastPathProgram; kernel: KernelForwarder }> {
  await assertInBenchNamespace();
  // Imported here: the other variants (and bench/run.ts) never load the bpf package.
  const loader = await import("../ebpf/loader.js");
  const forwarder = await import("../src/proxy/kernel-forwarder.js");
  const program = await loader.FastPathProgram.load(EBPF_INTERFACE);
  const kernel = new forwarder.KernelForwarder(program, { wireguardInterface: EBPF_INTERFACE, logger });
  return { program, kernel };
}

async function proxyChild(cfg: ChildConfig): Promise<void> {
  const logger = createLogger("bench-proxy", "silent");
  const fastPath = cfg.mode === "proxy-ebpf" ? await loadKernelForwarder(logger) : null;
  const proxy = new WireGuardProxy({
    wireguardPort: cfg.wgPort,
    catchAll: { address: HOST, port: 0 },
    loopbackPortBase: LOOPBACK_PORT_BASE,
    localPublicKey: decodeKey(cfg.wgPublicKey),
    logger,
    kernel: fastPath?.kernel ?? null,
  });
  const cleanup = fastPath
    ? async () => {
        await proxy.close();
        await fastPath.program.close();
      }
    : undefined;
  let peer: Awaited<ReturnType<WireGuardProxy["addPeer"]>>;
  try {
    await proxy.start();
    peer = await proxy.addPeer(cfg.peerPublicKey, decodeKey(cfg.peerPublicKey));
    const path = new StaticPath({ host: HOST, port: cfg.peerPort }, logger);
    path.onForeignDatagram = () => proxy.drops["foreign-source"]++;
    await path.open();
    proxy.setPath(cfg.peerPublicKey, path);
    if (fastPath) {
      // setPath installs the kernel's entries asynchronously (after `ip route get`).
      const deadline = Date.now() + 10_000;
      while (!fastPath.kernel.carries(peer)) {
        if (Date.now() > deadline) throw new Error("the kernel fast path did not take the static path");
        await new Promise((r) => setTimeout(r, 20));
      }
    }
  } catch (err) {
    await cleanup?.().catch(() => undefined);
    throw err;
  }
  serveParent(
    () => ({
      cpuMicros: cpuMicros(),
      tx: peer.traffic.txDatagrams,
      rx: peer.traffic.rxDatagrams,
      dropped: Object.values(proxy.drops).reduce((a, b) => a + b, 0),
      kernelTx: peer.kernelTraffic.txDatagrams,
      kernelRx: peer.kernelTraffic.rxDatagrams,
    }),
    cleanup,
  );
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
  serveParent(() => ({ cpuMicros: cpuMicros(), tx, rx, dropped: 0, kernelTx: 0, kernelRx: 0 }));
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

/** User space (the existing rows), then the --ebpf rows measured in a namespace of their own. */
interface LatencySamples {
  direct: PingResult;
  through: PingResult;
}

/** Blocks of ping-pong alternating direct and `through`; the first rounds of a block warm up sockets and caches. */
async function alternatingLatency(
  wg: Socket,
  peer: Socket,
  direct: { out: Address; in: Address },
  through: { out: Address; in: Address },
): Promise<LatencySamples> {
  const lat: LatencySamples = { direct: { ab: [], ba: [] }, through: { ab: [], ba: [] } };
  for (let block = 0; block < LATENCY_BLOCKS; block++) {
    for (const [key, route] of [
      ["direct", direct],
      ["through", through],
    ] as const) {
      const r = await pingPong(wg, route.out, peer, route.in, LATENCY_ROUNDS_PER_BLOCK);
      lat[key].ab.push(...r.ab.slice(100));
      lat[key].ba.push(...r.ba.slice(100));
    }
  }
  return lat;
}

/** One-way p50/p99 per leg, direct and through, and what `through` adds. */
function latencyRows(
  lat: LatencySamples,
  names: { directSuffix: string; through: string; added: string; addedNote: string },
): BenchRow[] {
  const legs = { ab: "WireGuard -> peer", ba: "peer -> WireGuard" } as const;
  return (["ab", "ba"] as const).flatMap((leg): BenchRow[] => {
    const d = lat.direct[leg];
    const p = lat.through[leg];
    const n = `${p.length} round trips in ${LATENCY_BLOCKS} blocks alternating with direct`;
    return [
      { name: `lat ${legs[leg]} one way, direct p50${names.directSuffix}`, value: median(d), unit: "us" },
      {
        name: `lat ${legs[leg]} one way, direct p99${names.directSuffix}`,
        value: percentile(d, 99),
        unit: "us",
      },
      { name: `lat ${legs[leg]} one way, ${names.through} p50`, value: median(p), unit: "us", note: n },
      { name: `lat ${legs[leg]} one way, ${names.through} p99`, value: percentile(p, 99), unit: "us" },
      {
        name: `lat ${legs[leg]}: ${names.added} p50`,
        value: median(p) - median(d),
        unit: "us",
        note: names.addedNote,
      },
      {
        name: `lat ${legs[leg]}: ${names.added} p99`,
        value: percentile(p, 99) - percentile(d, 99),
        unit: "us",
      },
    ];
  });
}

export async function benchForwarding(): Promise<BenchRow[]> {
  const buildDir = await mkdtemp(join(tmpdir(), "tbt-udp-flood-"));
  try {
    const floodBinary = await buildUdpFlood(buildDir);
    // The eBPF run first: if the fast path fails, it fails loudly within seconds, not after the rest.
    const ebpfRows = await benchForwardingEbpf(floodBinary);
    const rows = await benchForwardingUserSpace(floodBinary);
    return [...rows, ...ebpfRows];
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

async function benchForwardingUserSpace(floodBinary: string | null): Promise<BenchRow[]> {
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
  let socketsClosed = false;
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
    const runs = await measureVariants(variants, childOf, (route, dir) =>
      dir === "out"
        ? flow(wg, routes[route].out, peer, toPeer, THROUGHPUT_MS)
        : flow(peer, routes[route].in, wg, toWg, THROUGHPUT_MS),
    );
    const results = new Map(
      [...runs].map(([key, r]) => [
        key,
        {
          flows: r.map((x) => x.result),
          cpuPerDatagram: r.map(forwarderCpu).filter((c): c is number => c !== null),
        },
      ]),
    );

    const lat = await alternatingLatency(wg, peer, routes.direct, routes.proxy);

    // Direct and the proxy again with the C generator, which leaves the proxy more of the CPU.
    let floods = new Map<string, FloodRun[]>();
    if (floodBinary && !only) {
      wg.close();
      peer.close();
      socketsClosed = true;
      const floodOf = variants.filter((v) => v.route === "direct" || v.route === "proxy");
      floods = await floodVariants(
        floodBinary,
        floodOf,
        routes,
        { wg: cfg.wgPort, peer: cfg.peerPort },
        { proxy },
      );
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
    rows.push(
      ...floodRows(floods, variants, label, "proxy", (route, runs) => {
        const cpu = runs.map(forwarderCpu).filter((c): c is number => c !== null);
        return route === "proxy" && cpu.length
          ? `forwarder CPU ${median(cpu).toFixed(1)} us/datagram (${fmtRate(1e6 / median(cpu))}/s per core)`
          : "";
      }),
    );
    rows.push(
      ...latencyRows(lat, {
        directSuffix: "",
        through: "proxy",
        added: "added",
        addedNote: "target <= 50 us",
      }),
    );
    return rows;
  } finally {
    for (const child of children) await child.stop();
    if (!socketsClosed) {
      wg.close();
      peer.close();
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// The kernel fast path (--ebpf). Its program attaches to lo, so all of it (generator, sink, proxy
// child) runs in a namespace made for it: the outer benchmark re-runs this file there with EBPF_ENV
// set, and that run measures direct and --ebpf alternately and prints its rows as JSON.

interface FloodResult {
  rate: number;
  sent: number;
  received: number;
  lost: number;
  /** The generator's and sink's CPU (both threads, including the kernel's work done on their behalf). */
  cpuUsPerDatagram: number;
}

/** One run of bench/udp-flood: type-4 datagrams from `from` to `to`, counted at `sink`. */
async function flood(
  binary: string,
  from: Address,
  to: Address,
  sink: Address,
  ms: number,
): Promise<FloodResult> {
  const args = [from, to, sink].flatMap((a) => [a.address, String(a.port)]);
  const { stdout } = await execFileAsync(
    binary,
    [...args, String(DATAGRAM_BYTES), String(WARMUP_MS), String(ms)],
    {
      timeout: WARMUP_MS + ms + 10_000,
    },
  );
  const r = JSON.parse(stdout) as Partial<FloodResult>;
  if (typeof r.rate !== "number" || typeof r.sent !== "number" || typeof r.received !== "number") {
    throw new Error(`udp-flood printed no result: ${stdout}`);
  }
  return {
    rate: r.rate,
    sent: r.sent,
    received: r.received,
    lost: r.lost ?? 0,
    cpuUsPerDatagram: r.cpuUsPerDatagram ?? 0,
  };
}

interface VariantRun<R> {
  dir: "out" | "in";
  result: R;
  /** The proxy child's counters around the run (absent for direct). */
  before?: ChildStats;
  after?: ChildStats;
}

type FloodRun = VariantRun<FloodResult>;

/**
 * Every variant once per repetition, so drift hits all alike; the child's counters are read around each
 * run, and a child that dropped well-formed datagrams fails the benchmark.
 */
async function measureVariants<Route extends string, R>(
  variants: Array<{ route: Route; dir: "out" | "in" }>,
  childOf: Partial<Record<Route, Child>>,
  run: (route: Route, dir: "out" | "in") => Promise<R>,
): Promise<Map<string, Array<VariantRun<R>>>> {
  const runs = new Map<string, Array<VariantRun<R>>>();
  for (let rep = 0; rep < THROUGHPUT_REPS; rep++) {
    for (const { route, dir } of variants) {
      const child = childOf[route];
      const before = await child?.stats();
      const result = await run(route, dir);
      const after = await child?.stats();
      if (before && after && after.dropped !== before.dropped) {
        throw new Error(`the proxy dropped ${after.dropped - before.dropped} well-formed datagrams`);
      }
      const key = `${route}/${dir}`;
      runs.set(key, [...(runs.get(key) ?? []), { dir, result, before, after }]);
    }
  }
  return runs;
}

/** The proxy child's CPU per datagram it forwarded during a run (us); null for direct. */
function forwarderCpu({ dir, before, after }: VariantRun<unknown>): number | null {
  if (!before || !after) return null;
  const forwarded = dir === "out" ? after.tx - before.tx : after.rx - before.rx;
  return (after.cpuMicros - before.cpuMicros) / forwarded;
}

/** Datagrams the proxy forwarded in user space during a run: traffic minus the kernel's part, exact at any moment. */
function userSpaceForwarded({ dir, before, after }: VariantRun<unknown>): number {
  const userSpace = (st: ChildStats | undefined) =>
    st ? (dir === "out" ? st.tx - st.kernelTx : st.rx - st.kernelRx) : 0;
  return userSpace(after) - userSpace(before);
}

/** The C generator's runs (it binds the fake WireGuard's and peer's ports itself; callers close theirs first). */
function floodVariants<Route extends string>(
  binary: string,
  variants: Array<{ route: Route; dir: "out" | "in" }>,
  routes: Record<Route, { out: Address; in: Address }>,
  ports: { wg: number; peer: number },
  childOf: Partial<Record<Route, Child>>,
): Promise<Map<string, FloodRun[]>> {
  const wg = { address: HOST, port: ports.wg };
  const peer = { address: HOST, port: ports.peer };
  return measureVariants(variants, childOf, (route, dir) =>
    dir === "out"
      ? flood(binary, wg, routes[route].out, peer, THROUGHPUT_MS)
      : flood(binary, peer, routes[route].in, wg, THROUGHPUT_MS),
  );
}

/** A row per variant and a ratio row per direction (`through` / direct) for the C generator's runs. */
function floodRows<Route extends string>(
  runs: Map<string, FloodRun[]>,
  variants: Array<{ route: Route; dir: "out" | "in" }>,
  label: Record<Route, string>,
  through: Route,
  note: (route: Route, runs: FloodRun[]) => string,
): BenchRow[] {
  const dirLabel = { out: "WireGuard -> peer", in: "peer -> WireGuard" };
  const rows: BenchRow[] = [];
  for (const { route, dir } of variants) {
    const r = runs.get(`${route}/${dir}`);
    if (!r) continue;
    const rates = r.map((f) => f.result.rate);
    rows.push({
      name: `fwd ${dirLabel[dir]}, ${label[route]}, C generator`,
      value: median(rates),
      unit: "datagrams/s",
      note: [
        `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")})`,
        `lost ${r.reduce((a, f) => a + f.result.lost, 0)} of ${r.reduce((a, f) => a + f.result.sent, 0)}`,
        `generator+sink CPU ${median(r.map((f) => f.result.cpuUsPerDatagram)).toFixed(1)} us/datagram`,
        note(route, r),
      ]
        .filter(Boolean)
        .join("; "),
    });
  }
  for (const dir of ["out", "in"] as const) {
    const t = runs.get(`${through}/${dir}`)?.map((f) => f.result.rate);
    const base = runs.get(`direct/${dir}`)?.map((f) => f.result.rate);
    if (!t || !base) continue;
    const ratios = t.map((x, i) => x / base[i]!);
    rows.push({
      name: `fwd ${dirLabel[dir]}: ${label[through]} / direct, C generator`,
      value: median(ratios),
      unit: "x",
      note: `median of per-repetition ratios (${ratios.map((x) => x.toFixed(2)).join(", ")}); target >= 200k datagrams/s through the proxy`,
    });
  }
  return rows;
}

/** Inside the namespace: direct vs the proxy with the kernel fast path, same generator and sink. */
async function benchEbpfInNamespace(): Promise<BenchRow[]> {
  await assertInBenchNamespace();
  const keys = { wg: generateKeyPair(), peer: generateKeyPair() };
  const wg = await bindSocket(true);
  const peer = await bindSocket(true);
  // The program forwards only datagrams from WireGuard's port: the proxy is told the fake's.
  const cfg = {
    wgPort: wg.address().port,
    peerPort: peer.address().port,
    wgPublicKey: encodeKey(keys.wg.publicKey),
    peerPublicKey: encodeKey(keys.peer.publicKey),
  };
  let child: Child | null = null;
  let socketsClosed = false;
  const onSignal = () => void (child?.stop() ?? Promise.resolve()).finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    child = await Child.start({ ...cfg, mode: "proxy-ebpf" });
    const proxy = child;
    const { peerSide } = await handshake(wg, peer, proxy.ready.wgSide, keys);
    const toPeer = transportRing(PEER_INDEX, 1024);
    const toWg = transportRing(WG_INDEX, 1024);
    const routes = {
      direct: { out: { address: HOST, port: cfg.peerPort }, in: { address: HOST, port: cfg.wgPort } },
      ebpf: { out: proxy.ready.wgSide, in: peerSide },
    };
    type Route = keyof typeof routes;
    let variants: Array<{ route: Route; dir: "out" | "in" }> = [
      { route: "direct", dir: "out" },
      { route: "ebpf", dir: "out" },
      { route: "direct", dir: "in" },
      { route: "ebpf", dir: "in" },
    ];
    const only = process.env.TBT_BENCH_FWD_ONLY;
    if (only) variants = variants.filter((v) => `ebpf/${v.dir}` === only);
    // The proxy's counters around direct runs too: its CPU there is the baseline of doing nothing.
    const runs = await measureVariants(variants, { direct: proxy, ebpf: proxy }, async (route, dir) => {
      const localBefore = cpuMicros();
      const r =
        dir === "out"
          ? await flow(wg, routes[route].out, peer, toPeer, THROUGHPUT_MS)
          : await flow(peer, routes[route].in, wg, toWg, THROUGHPUT_MS);
      return { flow: r, localCpu: cpuMicros() - localBefore };
    });
    const results = new Map(
      [...runs].map(([key, r]) => [
        key,
        {
          flows: r.map((x) => x.result.flow),
          /** This process's (generator and sink) CPU per datagram received. */
          localCpu: r.map((x) => x.result.localCpu / x.result.flow.received),
          proxyCpu: r.map(
            (x) => ((x.after?.cpuMicros ?? 0) - (x.before?.cpuMicros ?? 0)) / x.result.flow.received,
          ),
          /** Datagrams the proxy forwarded in user space during the runs (handshakes only, if all is well). */
          userSpace: r.reduce((a, x) => a + userSpaceForwarded(x), 0),
        },
      ]),
    );

    const lat = await alternatingLatency(wg, peer, routes.direct, routes.ebpf);

    // The same routes at the C generator's pace (Node's generator is the limit above). It binds the
    // fake WireGuard's and peer's ports itself: the program forwards only from WireGuard's port.
    const floodBinary = process.env[UDP_FLOOD_ENV];
    let floods = new Map<string, FloodRun[]>();
    if (floodBinary && !only) {
      wg.close();
      peer.close();
      socketsClosed = true;
      const ports = { wg: cfg.wgPort, peer: cfg.peerPort };
      floods = await floodVariants(floodBinary, variants, routes, ports, { ebpf: proxy });
    }

    // Proof that the kernel carried the traffic: its counters, folded into the peer once per second.
    await new Promise((r) => setTimeout(r, KERNEL_POLL_WAIT_MS));
    const final = await proxy.stats();
    if (final.kernelTx === 0 || final.kernelRx === 0) {
      throw new Error(
        `the kernel fast path carried nothing (kernel tx ${final.kernelTx}, rx ${final.kernelRx}; ` +
          `user space tx ${final.tx - final.kernelTx}, rx ${final.rx - final.kernelRx}): the --ebpf rows would measure user space`,
      );
    }

    const rows: BenchRow[] = [];
    const label: Record<Route, string> = {
      direct: "direct (no proxy), in netns",
      ebpf: "through the proxy --ebpf, in netns",
    };
    const dirLabel = { out: "WireGuard -> peer", in: "peer -> WireGuard" };
    for (const { route, dir } of variants) {
      const entry = results.get(`${route}/${dir}`);
      if (!entry) continue;
      const rates = entry.flows.map((f) => f.rate);
      const sent = entry.flows.reduce((s, f) => s + f.sent, 0);
      const lost = entry.flows.reduce((s, f) => s + f.lost, 0);
      rows.push({
        name: `fwd ${dirLabel[dir]}, ${label[route]}`,
        value: median(rates),
        unit: "datagrams/s",
        note: [
          `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")}), best ${fmtRate(Math.max(...rates))}`,
          `lost ${lost} of ${sent}`,
          `generator+sink CPU ${median(entry.localCpu).toFixed(1)} us/datagram`,
          route === "ebpf"
            ? `proxy process CPU ${median(entry.proxyCpu).toFixed(2)} us/datagram; user space forwarded ${entry.userSpace}`
            : "",
        ]
          .filter(Boolean)
          .join("; "),
      });
    }
    for (const dir of ["out", "in"] as const) {
      const through = results.get(`ebpf/${dir}`)?.flows.map((f) => f.rate);
      const base = results.get(`direct/${dir}`)?.flows.map((f) => f.rate);
      if (!through || !base) continue;
      const ratios = through.map((t, i) => t / base[i]!);
      const kernel = dir === "out" ? final.kernelTx : final.kernelRx;
      const total = dir === "out" ? final.tx : final.rx;
      rows.push({
        name: `fwd ${dirLabel[dir]}: proxy --ebpf / direct (in netns)`,
        value: median(ratios),
        unit: "x",
        note: `median of per-repetition ratios (${ratios.map((r) => r.toFixed(2)).join(", ")}); the kernel carried ${kernel} of the proxy's ${total} datagrams`,
      });
    }
    rows.push(
      ...floodRows(floods, variants, label, "ebpf", (route, runs) =>
        route === "ebpf" ? `user space forwarded ${runs.reduce((a, f) => a + userSpaceForwarded(f), 0)}` : "",
      ),
    );
    rows.push(
      ...latencyRows(lat, {
        directSuffix: " (in netns)",
        through: "proxy --ebpf",
        added: "--ebpf added",
        addedNote: "vs direct in the same namespace",
      }),
    );
    return rows;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await child?.stop();
    if (!socketsClosed) {
      wg.close();
      peer.close();
    }
  }
}

/** Compiles bench/udp-flood.c into `dir`; null (with a note) when there is no C compiler. */
async function buildUdpFlood(dir: string): Promise<string | null> {
  const binary = join(dir, "udp-flood");
  try {
    await execFileAsync("cc", ["-O2", "-Wall", "-pthread", "-o", binary, UDP_FLOOD_SOURCE], {
      timeout: 60_000,
    });
    return binary;
  } catch (err) {
    console.log(
      `note: forwarding with the C generator skipped: cc could not build ${UDP_FLOOD_SOURCE}: ${String(err)}`,
    );
    return null;
  }
}

/** The rows printed by the run inside the namespace (JSON writes NaN as null). */
function parseEbpfRows(stdout: string): BenchRow[] {
  const line = stdout.split("\n").find((l) => l.startsWith(EBPF_ROWS_MARKER));
  if (!line) throw new Error("the eBPF forwarding run printed no rows");
  const parsed: unknown = JSON.parse(line.slice(EBPF_ROWS_MARKER.length));
  if (!Array.isArray(parsed)) throw new Error("the eBPF forwarding run printed no array of rows");
  return parsed.map((raw: unknown): BenchRow => {
    const r = raw as Partial<Record<keyof BenchRow, unknown>>;
    if (typeof r.name !== "string" || typeof r.unit !== "string") {
      throw new Error(`not a benchmark row: ${JSON.stringify(raw)}`);
    }
    const row: BenchRow = {
      name: r.name,
      value: typeof r.value === "number" ? r.value : Number.NaN,
      unit: r.unit,
    };
    if (typeof r.note === "string") row.note = r.note;
    return row;
  });
}

/**
 * The --ebpf rows: this file again, inside a namespace made for it (deleted afterwards, also on errors,
 * SIGINT and SIGTERM). Without root or the compiled program they are skipped with a note.
 */
async function benchForwardingEbpf(floodBinary: string | null): Promise<BenchRow[]> {
  const only = process.env.TBT_BENCH_FWD_ONLY;
  if (only && !only.startsWith("ebpf/")) return [];
  if (process.getuid?.() !== 0) {
    console.log("note: forwarding with --ebpf skipped: it needs root (it makes a network namespace)");
    return [];
  }
  if (!existsSync(EBPF_OBJECT)) {
    console.log(`note: forwarding with --ebpf skipped: ${EBPF_OBJECT} is missing (run npm run build)`);
    return [];
  }
  const ns = `${NAMESPACE_PREFIX}${randomBytes(4).toString("hex")}`;
  let child: ChildProcess | null = null;
  let exited: Promise<number | string> = Promise.resolve(0);
  const stopChild = async () => {
    const c = child;
    if (!c || c.exitCode !== null || c.signalCode !== null) return;
    // `ip netns exec` execs in place: this PID is the node process inside the namespace.
    c.kill("SIGTERM");
    const timer = setTimeout(() => c.kill("SIGKILL"), 10_000);
    await exited;
    clearTimeout(timer);
  };
  let cleaned: Promise<void> | null = null;
  const cleanup = () =>
    (cleaned ??= (async () => {
      await stopChild();
      await execFileAsync("ip", ["netns", "del", ns]).catch((err: unknown) =>
        console.error(`could not delete namespace ${ns}:`, err),
      );
    })());
  const onSignal = () => void cleanup().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    await execFileAsync("ip", ["netns", "add", ns]);
    await execFileAsync("ip", ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
    const c = spawn("ip", ["netns", "exec", ns, process.execPath, "--import", "tsx", THIS_FILE], {
      cwd: PROJECT_ROOT,
      env: { ...process.env, [EBPF_ENV]: "1", ...(floodBinary ? { [UDP_FLOOD_ENV]: floodBinary } : {}) },
      stdio: ["ignore", "pipe", "inherit"],
    });
    child = c;
    exited = new Promise((resolve) => c.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
    let stdout = "";
    c.stdout?.on("data", (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    const limit = setTimeout(() => {
      console.error(`forwarding with --ebpf: no result after ${EBPF_RUN_LIMIT_MS / 1000} s; stopping it`);
      void stopChild();
    }, EBPF_RUN_LIMIT_MS);
    const status = await exited;
    clearTimeout(limit);
    // Anything else it printed (there should be nothing) goes to stderr, away from the table.
    const other = stdout
      .split("\n")
      .filter((l) => l.trim() && !l.startsWith(EBPF_ROWS_MARKER))
      .join("\n");
    if (other) console.error(other);
    if (status !== 0) throw new Error(`forwarding with --ebpf in namespace ${ns} failed (exit ${status})`);
    return parseEbpfRows(stdout);
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await cleanup();
  }
}

if (process.argv[2] === CHILD_FLAG && process.argv[1] === THIS_FILE) {
  const cfg = JSON.parse(process.argv[3] ?? "{}") as ChildConfig;
  await (cfg.mode === "proxy" || cfg.mode === "proxy-ebpf" ? proxyChild(cfg) : relayChild(cfg));
} else if (process.argv[1] === THIS_FILE && process.env[EBPF_ENV] === "1") {
  console.log(`${EBPF_ROWS_MARKER}${JSON.stringify(await benchEbpfInNamespace())}`);
} else if (process.argv[1] === THIS_FILE) {
  console.log(formatTable(await benchForwarding()));
}
