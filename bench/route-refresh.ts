// Routing changes at a hub: what the kernel fast path's entries cost when routes change elsewhere on
// the host (a Kubernetes node's /32 per pod, a BGP feed, Docker). A KernelForwarder over an in-memory
// program (no BPF) and the real route batcher (`ip -j -force -batch -`) in a namespace of its own: two
// veth pairs, remotes spread over three routed IPv4 prefixes and one IPv6 prefix. With 1,000 and 10,000
// installed peers: CPU and wall time of one refresh of every entry, the cost of a route change that
// covers no remote, then the CPU per second of the real AddressWatch and the forwarder while /32 routes
// (a pod CIDR no peer is in) are added and deleted at 2/s, 10/s and 100/s, and the route lookups that
// made. Results in docs/benchmarks.md, "Routing changes at a hub". TBT_RR_SIZES=1000 for one size.
//   npx tsx bench/route-refresh.ts
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import type { BatchedUdpSocket } from "../src/proxy/batched-udp.js";
import { KernelForwarder, type KernelRoute } from "../src/proxy/kernel-forwarder.js";
import { KernelRouteBatcher } from "../src/proxy/kernel-route-batch.js";
import type { PeerPath, UdpRoute } from "../src/proxy/path.js";
import { ProxyPeer } from "../src/proxy/proxy-peer.js";
import { AddressWatch } from "../src/wg/address-watch.js";
import { parseMonitorLine } from "../src/wg/monitor-line.js";
import { RemoteKeys } from "../src/wg/remote-keys.js";
import { parsePrefix } from "../src/wg/route-prefix.js";
import { RoutingChanges } from "../src/wg/routing-changes.js";
import { TunnelLoopCheck } from "../src/wg/tunnel-loop-check.js";
import { createNamespace, nsRun, run, teardownAll, uniqueTag } from "../test/lab/netns.js";
import { processTree } from "../test/lab/process-tree.js";
import { MemoryFastPath } from "../test/support/memory-fast-path.js";
import { processCpuSeconds } from "./proc-stats.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const CHILD = "--route-refresh-child";
const SIZES = (process.env.TBT_RR_SIZES ?? "1000,10000").split(",").map(Number);
const RATES = [2, 10, 100];
const STREAM_SECONDS = 10;
/** After the stream: the last debounced refresh lands in the window. */
const TAIL_MS = 1500;
const REFRESH_ROUNDS = 3;
const INDEX_QUERIES = 10_000;
const PARSED_LINES = 100_000;
const WALKS = 20;
const BUSY = "/tmp/tbt-busy";
const QUIET = "/tmp/tbt-quiet";

/** The routed prefixes of the namespace: where the peers' remotes are (i: the peer's number). */
function remoteOf(i: number): string {
  switch (i % 4) {
    case 0:
      return `198.18.${(i >> 8) & 255}.${i & 255}`;
    case 1:
      return `198.19.${(i >> 8) & 255}.${i & 255}`;
    case 2:
      return `203.0.${(i >> 8) & 63}.${i & 255}`;
    default:
      return `2001:db8:a::${i.toString(16)}`;
  }
}

function staticPath(route: UdpRoute): PeerPath {
  return {
    kind: "static",
    remote: route.remoteAddress.includes(":")
      ? `[${route.remoteAddress}]:${route.remotePort}`
      : `${route.remoteAddress}:${route.remotePort}`,
    onDatagram: null,
    send(): void {},
    close(): void {},
    udpRoute: () => ({ ...route }),
  };
}

function makePeers(n: number): ProxyPeer[] {
  const socket = {} as BatchedUdpSocket;
  const peers: ProxyPeer[] = [];
  for (let i = 0; i < n; i++) {
    const key = new Uint8Array(32);
    key[0] = i & 255;
    key[1] = i >> 8;
    const loopback = { address: `127.${1 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, port: 51822 };
    const peer = new ProxyPeer(`peer${i}`, key, loopback, socket);
    peer.path = staticPath({
      localAddress: null,
      localPort: 40000,
      remoteAddress: remoteOf(i),
      remotePort: 51820,
    });
    peers.push(peer);
  }
  return peers;
}

/** This process's CPU seconds with its reaped children (the `ip` batches) and its live ones (`ip monitor`). */
function groupCpu(): number {
  let seconds = processCpuSeconds(process.pid, true);
  for (const pid of processTree(process.pid)) {
    if (pid === process.pid) continue;
    try {
      seconds += processCpuSeconds(pid);
    } catch {
      // ended meanwhile: its time is in the reaped children's
    }
  }
  return seconds;
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** In the namespace: one forwarder with `n` installed peers; answers the parent's requests on stdin. */
async function child(n: number): Promise<void> {
  const batcher = new KernelRouteBatcher();
  let lookups = 0;
  const resolveRoute = (remote: string): Promise<KernelRoute | null> =>
    batcher.route(remote).finally(() => {
      lookups++;
    });
  const program = new MemoryFastPath();
  const logger = pino({ level: "silent" });
  const forwarder = new KernelForwarder(program, { wireguardInterface: "tbt-none0", logger, resolveRoute });
  const peers = makePeers(n);
  forwarder.setWireGuardPort(51820, []);
  await Promise.all(peers.map((p) => forwarder.update(p)));
  const carried = peers.filter((p) => forwarder.carries(p)).length;
  if (carried !== n) throw new Error(`only ${carried} of ${n} entries installed`);
  const until = async (count: number) => {
    while (lookups < count) await new Promise((r) => setImmediate(r));
  };
  const watch = new AddressWatch({ ignoreInterfaces: [], wireguardInterface: "tbt-none0", logger });
  let refreshes = 0;
  // As src/tunnelbore.ts's routing handler.
  watch.on("routing", (change) => {
    refreshes++;
    if (change.all) forwarder.refresh(peers);
    else forwarder.refreshWithin(change.prefixes);
  });
  await watch.start();
  const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
  say({ ready: true });
  for await (const line of createInterface({ input: process.stdin })) {
    const [command, arg] = line.split(" ");
    if (command === "refresh") {
      const cpu0 = groupCpu();
      const t0 = performance.now();
      const target = lookups + n;
      forwarder.refresh(peers);
      await until(target);
      await new Promise((r) => setImmediate(r));
      say({ wallMs: performance.now() - t0, cpuMs: (groupCpu() - cpu0) * 1000 });
    } else if (command === "loops") {
      // What src/tunnelbore.ts's routing handler also does at each report: TunnelLoopCheck looks every
      // peer's remote up again, whatever changed (not this benchmark's subject; measured for scale).
      const loops = new TunnelLoopCheck({ interfaceName: "tbt-none0", logger, mark: () => 0 });
      loops.update(new Map(peers.map((p) => [p.publicKey, p.path?.remote ?? null])));
      await loops.settled();
      const cpu0 = groupCpu();
      const t0 = performance.now();
      loops.invalidate();
      await loops.settled();
      say({ wallMs: performance.now() - t0, cpuMs: (groupCpu() - cpu0) * 1000 });
      loops.close();
    } else if (command === "index") {
      // A route change covering no remote: the first query sorts the index (the installs since), the
      // next ones are two binary searches per prefix.
      const none = [parsePrefix("10.244.0.0/16")!];
      const t0 = process.cpuUsage();
      forwarder.refreshWithin(none);
      const first = process.cpuUsage(t0);
      const t1 = process.cpuUsage();
      for (let i = 0; i < INDEX_QUERIES; i++) forwarder.refreshWithin(none);
      const next = process.cpuUsage(t1);
      // src/tunnelbore.ts's question for the loop check: which peers' path remotes are inside? The
      // first walk parses every remote, the next ones find them parsed.
      const remotes = new RemoteKeys();
      const pathRemotes = function* (): Generator<[string, string | undefined]> {
        for (const [i, p] of peers.entries()) yield [String(i), p.path?.remote];
      };
      const t2 = process.cpuUsage();
      remotes.peersInside(pathRemotes(), none);
      const firstWalk = process.cpuUsage(t2);
      const t3 = process.cpuUsage();
      for (let i = 0; i < WALKS; i++) remotes.peersInside(pathRemotes(), none);
      const walk = process.cpuUsage(t3);
      say({
        firstUs: first.user + first.system,
        nextUs: (next.user + next.system) / INDEX_QUERIES,
        firstWalkUs: firstWalk.user + firstWalk.system,
        walkUs: (walk.user + walk.system) / WALKS,
      });
    } else if (command === "stream") {
      const ms = Number(arg);
      const [cpu0, lookups0, refreshes0] = [groupCpu(), lookups, refreshes];
      await wait(ms + TAIL_MS);
      say({
        cpuMs: (groupCpu() - cpu0) * 1000,
        lookups: lookups - lookups0,
        refreshes: refreshes - refreshes0,
      });
    } else if (command === "exit") break;
  }
  watch.stop();
  forwarder.close();
  process.exit(0);
}

/** The namespace: a veth pair (both ends here), three routed IPv4 prefixes and an IPv6 one. */
async function makeNamespace(): Promise<string> {
  const tag = uniqueTag();
  const ns = await createNamespace(`tbt-rr-${tag}`);
  const [a, b, c, d] = ["tbt-rra", "tbt-rrb", "tbt-rrc", "tbt-rrd"];
  await nsRun(ns, "sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
  await nsRun(ns, "ip", ["link", "add", a, "type", "veth", "peer", "name", b]);
  await nsRun(ns, "ip", ["link", "add", c, "type", "veth", "peer", "name", d]);
  await nsRun(ns, "ip", ["addr", "add", "10.70.0.1/24", "dev", a]);
  await nsRun(ns, "ip", ["addr", "add", "fd70::1/64", "dev", a, "nodad"]);
  await nsRun(ns, "ip", ["addr", "add", "10.71.0.1/24", "dev", c]);
  for (const dev of [a, b, c, d]) await nsRun(ns, "ip", ["link", "set", dev, "up"]);
  const routes = [
    ["198.18.0.0/16", "via", "10.70.0.2"],
    ["198.19.0.0/16", "via", "10.71.0.2"],
    ["203.0.0.0/18", "via", "10.70.0.3"],
    ["default", "via", "10.70.0.254"],
  ];
  for (const r of routes) await nsRun(ns, "ip", ["route", "add", ...r]);
  await nsRun(ns, "ip", ["-6", "route", "add", "2001:db8:a::/48", "via", "fd70::2"]);
  return ns;
}

interface Child {
  ask(line: string): Promise<Record<string, number>>;
  stop(): Promise<void>;
}

function startChild(ns: string, n: number): Promise<Child> {
  const proc = spawn(
    "ip",
    ["netns", "exec", ns, process.execPath, "--import", "tsx", THIS_FILE, CHILD, String(n)],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  const replies: Array<(o: Record<string, number>) => void> = [];
  let ready: () => void = () => undefined;
  const started = new Promise<void>((resolve, reject) => {
    ready = resolve;
    proc.once("exit", (code) => reject(new Error(`route-refresh child exited (${code})`)));
  });
  createInterface({ input: proc.stdout }).on("line", (line) => {
    const o = JSON.parse(line) as Record<string, number> & { ready?: boolean };
    if (o.ready) ready();
    else replies.shift()?.(o);
  });
  return started.then(() => ({
    ask(line: string) {
      return new Promise((resolve) => {
        replies.push(resolve);
        proc.stdin.write(`${line}\n`);
      });
    },
    async stop() {
      proc.stdin.write("exit\n");
      if (proc.exitCode === null) await new Promise((r) => proc.once("exit", r));
    },
  }));
}

/** /32 routes in a pod CIDR no peer is in, added and deleted at `perSecond` (one `ip -batch` fed line by line). */
async function streamRoutes(ns: string, perSecond: number, seconds: number): Promise<number> {
  const ip = spawn("ip", ["netns", "exec", ns, "ip", "-force", "-batch", "-"], {
    stdio: ["pipe", "ignore", "ignore"],
  });
  const live: string[] = [];
  let made = 0;
  const total = perSecond * seconds;
  const t0 = performance.now();
  while (made < total) {
    // Half adds, half deletes of the oldest: the table stays small, every change is a route line.
    const command =
      live.length < 8 || made % 2 === 0
        ? (() => {
            const dst = `10.244.${(made >> 8) & 255}.${made & 255}`;
            live.push(dst);
            return `route add ${dst}/32 dev tbt-rrc`;
          })()
        : `route del ${live.shift()}/32 dev tbt-rrc`;
    ip.stdin.write(`${command}\n`);
    made++;
    const due = t0 + (made * 1000) / perSecond;
    const ahead = due - performance.now();
    if (ahead > 0) await wait(ahead);
  }
  ip.stdin.end();
  await new Promise((r) => ip.once("exit", r));
  for (const dst of live) await nsRun(ns, "ip", ["route", "del", `${dst}/32`]).catch(() => "");
  return made;
}

/** CPU µs per route line: parsed, and its prefix added to what is pending (taken every 100 lines). */
function parseCostUs(): number {
  const changes = new RoutingChanges();
  const lines = Array.from(
    { length: 1000 },
    (_, i) => `10.244.${i >> 8}.${i & 255} dev cali${i} scope link `,
  );
  const t0 = process.cpuUsage();
  for (let i = 0; i < PARSED_LINES; i++) {
    changes.add(parseMonitorLine(lines[i % lines.length]!));
    if (i % 100 === 99) changes.take();
  }
  const used = process.cpuUsage(t0);
  return (used.user + used.system) / PARSED_LINES;
}

async function waitForQuiet(): Promise<void> {
  while (existsSync(QUIET) || existsSync(BUSY)) {
    console.error("route-refresh: waiting for /tmp/tbt-quiet and /tmp/tbt-busy to go");
    await wait(5000);
  }
}

const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

export async function benchRouteRefresh(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  await waitForQuiet();
  const loadBefore = fmtLoad();
  const loadBefore1 = loadavg()[0] ?? 0;
  await run("touch", [BUSY]);
  try {
    const ns = await makeNamespace();
    for (const n of SIZES) {
      const c = await startChild(ns, n);
      try {
        const rounds: Array<Record<string, number>> = [];
        for (let i = 0; i < REFRESH_ROUNDS; i++) rounds.push(await c.ask("refresh"));
        const label = `${n.toLocaleString("en-US")} peers`;
        rows.push({
          name: `${label}: one refresh of every entry, CPU`,
          value: median(rounds.map((r) => r.cpuMs ?? 0)),
          unit: "ms",
          note: `median of ${REFRESH_ROUNDS}, this process and its ip children`,
        });
        rows.push({
          name: `${label}: one refresh of every entry, wall`,
          value: median(rounds.map((r) => r.wallMs ?? 0)),
          unit: "ms",
        });
        const loops = await c.ask("loops");
        rows.push({
          name: `${label}: TunnelLoopCheck after a routing report, CPU`,
          value: loops.cpuMs ?? 0,
          unit: "ms",
          note: `every remote looked up again whatever changed (${Math.round(loops.wallMs ?? 0)} ms wall)`,
        });
        const index = await c.ask("index");
        rows.push({
          name: `${label}: a route change covering no remote, first after the installs`,
          value: index.firstUs ?? 0,
          unit: "µs CPU",
          note: "refreshWithin: sorts the index of remotes",
        });
        rows.push({
          name: `${label}: a route change covering no remote, then`,
          value: index.nextUs ?? 0,
          unit: "µs CPU",
          note: `mean of ${INDEX_QUERIES.toLocaleString("en-US")}`,
        });
        rows.push({
          name: `${label}: is a path remote inside the changed prefixes (before the loop check)`,
          value: index.walkUs ?? 0,
          unit: "µs CPU",
          note: `a walk over every peer, mean of ${WALKS}; the first, which parses them: ${Math.round(index.firstWalkUs ?? 0).toLocaleString("en-US")} µs`,
        });
        for (const rate of RATES) {
          await wait(1000);
          const measured = c.ask(`stream ${STREAM_SECONDS * 1000}`);
          const made = await streamRoutes(ns, rate, STREAM_SECONDS);
          const r = await measured;
          const cpuPerSecond = (r.cpuMs ?? 0) / STREAM_SECONDS;
          rows.push({
            name: `${label}: /32 routes changing ${rate}/s, CPU`,
            value: cpuPerSecond / 10,
            unit: "% of a core",
            note: `${(r.lookups ?? 0).toLocaleString("en-US")} lookups in ${r.refreshes} refreshes for ${made} route changes in ${STREAM_SECONDS} s`,
          });
        }
      } finally {
        await c.stop();
      }
    }
  } finally {
    await teardownAll();
    await run("rm", ["-f", BUSY]);
  }
  rows.push({
    name: "one ip monitor route line parsed and collected",
    value: parseCostUs(),
    unit: "µs CPU",
    note: `mean of ${PARSED_LINES.toLocaleString("en-US")} (AddressWatch's work per line)`,
  });
  rows.push({
    name: "load average (1 min) before",
    value: loadBefore1,
    unit: "",
    note: `${loadBefore} before, ${fmtLoad()} after`,
  });
  return rows;
}

if (process.argv[2] === CHILD) {
  await child(Number(process.argv[3]));
} else if (process.argv[1] === THIS_FILE) {
  console.log(formatTable(await benchRouteRefresh()));
}
