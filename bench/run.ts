// Runs every benchmark in sequence and prints one table each, plus the machine they ran on.
//   npm run bench                 (builds first; about 10 minutes on 2 cores)
//   npm run bench -- forwarding   (only the benchmarks whose name contains the argument)
// Each benchmark runs in a process of its own (a fresh heap, no state left by the one before) with a
// time limit, so that one that hangs cannot hold up the rest: it gets SIGTERM (the lab benchmarks tear
// their namespaces down on it), then SIGKILL for its whole process group.
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism, loadavg, release, totalmem } from "node:os";
import { fileURLToPath } from "node:url";
import { benchColdStart } from "./cold-start.js";
import { benchForwarding } from "./forwarding.js";
import { benchForwardingBatched } from "./forwarding-batched.js";
import { benchHub } from "./hub.js";
import { benchIntro } from "./intro.js";
import { benchIntroCluster } from "./intro-cluster.js";
import { benchIperfStatic } from "./iperf-static.js";
import { benchKernelIpv6 } from "./kernel-ipv6.js";
import { benchKernelRelay } from "./kernel-relay.js";
import { benchLazyPeers } from "./lazy-peers.js";
import { benchMac1 } from "./mac1.js";
import { benchNatTraversal } from "./nat-traversal.js";
import { benchRouteRefresh } from "./route-refresh.js";
import { benchStayingConnected } from "./staying-connected.js";
import { type BenchRow, formatTable } from "./table.js";
import { benchTurnRecovery } from "./turn-recovery.js";

interface Benchmark {
  name: string;
  what: string;
  run: () => Promise<BenchRow[]>;
  /** Several times what it takes on 2 busy cores. */
  limitSeconds: number;
}

const BENCHMARKS: Benchmark[] = [
  { name: "mac1", what: "mac1 key checks and identify", run: benchMac1, limitSeconds: 60 },
  {
    name: "forwarding",
    what: "forwarding on loopback, proxy vs direct",
    run: benchForwarding,
    limitSeconds: 240,
  },
  {
    name: "forwarding-batched",
    what: "user-space forwarding on loopback, batched I/O (native addon) vs dgram",
    run: benchForwardingBatched,
    limitSeconds: 240,
  },
  {
    name: "iperf-static",
    what: "iperf3 TCP through wireguard-go, static path",
    run: benchIperfStatic,
    limitSeconds: 240,
  },
  {
    name: "kernel-relay",
    what: "iperf3 through a TURN relay in the kernel fast path vs direct WireGuard",
    run: benchKernelRelay,
    limitSeconds: 300,
  },
  {
    name: "kernel-ipv6",
    what: "iperf3 through the kernel fast path on an IPv6 static path vs direct WireGuard, two buffer sizes",
    run: benchKernelIpv6,
    limitSeconds: 300,
  },
  {
    name: "nat-traversal",
    what: "connect time and iperf3 through ICE and TURN",
    run: benchNatTraversal,
    limitSeconds: 300,
  },
  {
    name: "cold-start",
    what: "both Tunnelbores started at once, time to the first ping reply (20 runs)",
    run: benchColdStart,
    limitSeconds: 400,
  },
  {
    name: "staying-connected",
    what: "roaming and restart gaps, idle cost",
    run: benchStayingConnected,
    limitSeconds: 400,
  },
  {
    name: "lazy-peers",
    what: "lazy peers (issue 15): many ICE peers dormant, first packet to a dormant peer",
    run: benchLazyPeers,
    limitSeconds: 900,
  },
  {
    name: "turn-recovery",
    what: "relayed gaps after a coturn restart (every TURN topology) and after both NATs lose their mappings",
    run: benchTurnRecovery,
    limitSeconds: 1800,
  },
  { name: "intro", what: "introduction server", run: benchIntro, limitSeconds: 240 },
  {
    name: "intro-cluster",
    what: "4 intro-server nodes on one Redis: RSS per client, cross-node envelope latency, a node killed",
    run: benchIntroCluster,
    limitSeconds: 600,
  },
  {
    name: "route-refresh",
    what: "routing changes at a hub: one refresh of 1,000 and 10,000 kernel entries, and the CPU under a stream of /32 route changes",
    run: benchRouteRefresh,
    limitSeconds: 600,
  },
  {
    name: "hub",
    what: "a hub with 1,000, 5,000 and 10,000 static peers: start, stop, idle cost, SIGKILL + restart gap",
    run: benchHub,
    limitSeconds: 1200,
  },
];

const THIS_FILE = fileURLToPath(import.meta.url);
const ONE = "--one";
const GRACE_MS = 20_000;

/** CPU count and model, memory, kernel, Node version and load, as docs/benchmarks.md records them. */
export function machineLine(): string {
  const model = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"))?.[1] ?? "unknown CPU";
  const load = loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");
  return `machine: ${availableParallelism()} CPUs (${model}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB, Linux ${release()}, Node ${process.version}, load average ${load}`;
}

/** In the child: one benchmark, its table on stdout. */
async function runOne(name: string): Promise<void> {
  const bench = BENCHMARKS.find((b) => b.name === name);
  if (!bench) throw new Error(`unknown benchmark ${name}`);
  console.log(formatTable(await bench.run()));
}

/** In the parent: one benchmark in its own process group; resolves with its exit status. */
function runIsolated(bench: Benchmark): Promise<string | number> {
  // detached: a group of its own, so a timeout can end the benchmark's helpers (servers, iperf3) too.
  const child = spawn(process.execPath, [...process.execArgv, THIS_FILE, ONE, bench.name], {
    stdio: "inherit",
    detached: true,
  });
  const group = -child.pid!;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      process.kill(group, signal);
    } catch {
      // already gone
    }
  };
  const onInterrupt = () => signalGroup("SIGTERM");
  process.on("SIGINT", onInterrupt);
  process.on("SIGTERM", onInterrupt);
  let timedOut = false;
  const limit = setTimeout(() => {
    timedOut = true;
    console.error(`${bench.name}: no result after ${bench.limitSeconds} s; stopping it`);
    signalGroup("SIGTERM");
    setTimeout(() => signalGroup("SIGKILL"), GRACE_MS).unref();
  }, bench.limitSeconds * 1000);
  return new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      clearTimeout(limit);
      process.off("SIGINT", onInterrupt);
      process.off("SIGTERM", onInterrupt);
      // Whatever the benchmark left in its group (a helper it did not stop) goes with it.
      signalGroup("SIGKILL");
      resolve(timedOut ? "timeout" : (code ?? signal ?? "unknown"));
    });
  });
}

if (process.argv[2] === ONE) {
  await runOne(process.argv[3] ?? "");
  // Some benchmarks leave timers of libraries behind (werift, ws reconnects): the table is out.
  process.exit(0);
}

const filter = process.argv[2];
const selected = BENCHMARKS.filter((b) => !filter || b.name.includes(filter));
if (selected.length === 0) {
  console.error(`no benchmark matches "${filter}"; known: ${BENCHMARKS.map((b) => b.name).join(", ")}`);
  process.exit(2);
}
console.log(machineLine());
const failed: string[] = [];
for (const bench of selected) {
  const started = performance.now();
  console.log(`\n== ${bench.name}: ${bench.what}`);
  const status = await runIsolated(bench);
  const seconds = ((performance.now() - started) / 1000).toFixed(0);
  if (status === 0) console.log(`(${seconds} s)`);
  else {
    failed.push(bench.name);
    console.log(`(${bench.name} failed after ${seconds} s: ${status})`);
  }
}
console.log(`\n${machineLine()}`);
if (failed.length) console.log(`failed: ${failed.join(", ")}`);
process.exit(failed.length ? 1 : 0);
