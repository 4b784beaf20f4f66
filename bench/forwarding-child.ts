// The forwarder under test for bench/forwarding.ts, in a process of its own so it never shares an event
// loop with the load generator: the proxy (a WireGuardProxy and a StaticPath, optionally with the kernel
// fast path) or a bare relay. This file is both ends: `Child` starts and talks to it (the parent), and
// run as a script it is the child.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { FastPathProgram } from "../ebpf/loader.js";
import { createLogger } from "../src/log.js";
import type { KernelForwarder } from "../src/proxy/kernel-forwarder.js";
import { StaticPath } from "../src/proxy/static-path.js";
import { StaticSockets } from "../src/proxy/static-sockets.js";
import { bindUdpSocket } from "../src/proxy/udp-socket.js";
import { WireGuardProxy } from "../src/proxy/wireguard-proxy.js";
import { decodeKey } from "../src/wireguard/keys.js";
import { type Address, HOST } from "./forwarding-traffic.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));
const CHILD_FLAG = "--forwarding-child";
/** Far from WireGuard's and Tunnelbore's default ports; the address part of L(P) is random anyway. */
const LOOPBACK_PORT_BASE = 47822;
/** The --ebpf variant runs only in a namespace whose name starts with this (made by forwarding-ebpf.ts). */
export const NAMESPACE_PREFIX = "tbt-fwd-";
/** Names only the program's pin directory and its tc priority; no such interface exists. */
const EBPF_INTERFACE = "tbfwd0";

const execFileAsync = promisify(execFile);

export interface ChildConfig {
  /** relay-sync-lookup: the relay with sockets whose lookup answers an IP literal without a nextTick. */
  /** proxy-ebpf: the proxy with the kernel fast path (only inside a tbt-fwd-* namespace). */
  /** proxy-native / proxy-dgram: the proxy with its sockets' I/O forced (batched-udp.ts); proxy: the default. */
  mode: "proxy" | "proxy-ebpf" | "proxy-native" | "proxy-dgram" | "relay" | "relay-sync-lookup";
  wgPort: number;
  peerPort: number;
  wgPublicKey: string;
  peerPublicKey: string;
}

type ToChild = { type: "stats" } | { type: "exit" };

export interface ChildStats {
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

export function cpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** Refuses to go on unless this process is in a namespace this benchmark made (never the host's lo). */
export async function assertInBenchNamespace(): Promise<void> {
  const { stdout } = await execFileAsync("ip", ["netns", "identify"], { timeout: 5000 });
  const ns = stdout.trim();
  if (!ns.startsWith(NAMESPACE_PREFIX)) {
    throw new Error(`the eBPF variant runs only inside a ${NAMESPACE_PREFIX}* namespace, not in "${ns}"`);
  }
}

// ---------------------------------------------------------------------------------------------------
// The child.

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
  const udpIo = cfg.mode === "proxy-native" ? "native" : cfg.mode === "proxy-dgram" ? "dgram" : "auto";
  const fastPath = cfg.mode === "proxy-ebpf" ? await loadKernelForwarder(logger) : null;
  const proxy = new WireGuardProxy({
    wireguardPort: cfg.wgPort,
    catchAll: { address: HOST, port: 0 },
    loopbackPortBase: LOOPBACK_PORT_BASE,
    localPublicKey: decodeKey(cfg.wgPublicKey),
    logger,
    kernel: fastPath?.kernel ?? null,
    udpIo,
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
    const sockets = new StaticSockets(logger, udpIo);
    sockets.onForeignDatagram = () => proxy.drops["foreign-source"]++;
    const path = new StaticPath({ host: HOST, port: cfg.peerPort }, logger, sockets);
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
  // dgram's default lookup answers even an IP literal on the next tick; the sync-lookup variant's does not.
  const fastLookup = cfg.mode === "relay-sync-lookup";
  const wgSide = await bindUdpSocket({ address: HOST, port: 0, role: "relay WireGuard side", fastLookup });
  const peerSide = await bindUdpSocket({ address: HOST, port: 0, role: "relay peer side", fastLookup });
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
// The parent's handle on a child.

export class Child {
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

if (process.argv[2] === CHILD_FLAG && process.argv[1] === THIS_FILE) {
  const cfg = JSON.parse(process.argv[3] ?? "{}") as ChildConfig;
  await (cfg.mode.startsWith("proxy") ? proxyChild(cfg) : relayChild(cfg));
}
