// iperf3 TCP through real wireguard-go over an IPv6 link, A -> B: WireGuard direct vs through
// Tunnelbore with the kernel fast path (WireGuard A on IPv6 loopback, L6(P): its datagrams rewritten
// onto the IPv6 static path in tc, not translated), alternating in one run. Two namespaces on one veth (test/lab/linked-pair.ts, "ipv6").
// Twice per round: with Debian's wireguard-go as packaged, whose 208 KiB receive buffer overflows at
// this rate (about 15 % of datagrams dropped at B, direct or not, so TCP's rate swings widely), and
// with the 7 MiB buffers wireguard-go sets itself since 2023 (set from outside, test/lab/socket-buffers.ts).
//   npm run build && npx tsx bench/kernel-ipv6.ts

import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { measureThroughput } from "../test/lab/iperf.js";
import { createLinkedPair } from "../test/lab/linked-pair.js";
import { nsRun, teardownAll } from "../test/lab/netns.js";
import {
  defaultSocketBuffer,
  setUdpSocketBuffers,
  WIREGUARD_GO_SOCKET_BUFFER,
} from "../test/lab/socket-buffers.js";
import { CLI, startTunnelbore, type TunnelboreProcess, tunnelboreDirs } from "../test/lab/tunnelbore.js";
import { waitFor } from "../test/support/wait-for.js";
import { startCpuProbe, tunnelboreProcesses } from "./proc-stats.js";
import { RUN_DEFAULTS } from "./run-defaults.js";
import { median, pairedRatio, pairedRatioNote } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const ROUNDS = 6;
const SECONDS = 5;
const TARGET_RATIO = 0.95;
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

/** The receiving sockets' buffers a round runs with: Debian's wireguard-go as packaged, or as current. */
interface Regime {
  readonly name: string;
  readonly label: string;
  readonly bytes: () => number;
}

const REGIMES: readonly Regime[] = [
  {
    name: "packaged",
    label: "Debian's wireguard-go as packaged (208 KiB socket buffers)",
    bytes: defaultSocketBuffer,
  },
  {
    name: "7 MiB",
    label: "socket buffers as wireguard-go sets them since 2023 (7 MiB)",
    bytes: () => WIREGUARD_GO_SOCKET_BUFFER,
  },
];

interface RegimeResults {
  direct: number[];
  kernel: number[];
  cpu: number[];
  /** Datagrams dropped at B's full socket / datagrams B's socket got, per run (direct, then kernel). */
  drops: string[];
}

export async function benchKernelIpv6(): Promise<BenchRow[]> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dirs = tunnelboreDirs();
  const loadBefore = fmtLoad();
  let tb: TunnelboreProcess | null = null;
  try {
    const pair = await createLinkedPair("bk6", "ipv6");
    await pair.waitForPing();
    const wireguardPids = [pair.wgA, pair.wgB].map((wg) => {
      const pid = wg.process.child.pid;
      if (pid === undefined) throw new Error(`no PID for ${wg.name}`);
      return pid;
    });
    const results = new Map<Regime, RegimeResults>(
      REGIMES.map((r) => [r, { direct: [], kernel: [], cpu: [], drops: [] }]),
    );
    const realEndpoint = `[${pair.linkB}]:51820`;
    // One iperf3 run with both wireguard-go's sockets at the regime's size; B's UDP drops counted.
    const measure = async (regime: Regime): Promise<{ bitsPerSecond: number; drops: string }> => {
      for (const pid of wireguardPids) {
        if ((await setUdpSocketBuffers(pid, regime.bytes())) === 0)
          throw new Error(`no UDP socket in ${pid}`);
      }
      const before = await udp6Counters(pair.nsB);
      const { bitsPerSecond } = await measureThroughput(pair.nsB, pair.tunB, pair.nsA, { duration: SECONDS });
      const after = await udp6Counters(pair.nsB);
      const dropped = after.rcvbufErrors - before.rcvbufErrors;
      const received = after.inDatagrams - before.inDatagrams + dropped;
      return { bitsPerSecond, drops: `${((100 * dropped) / Math.max(received, 1)).toFixed(1)} %` };
    };
    // One kernel-path run: Tunnelbore started, the kernel carrying B, measured, stopped.
    const measureKernel = async (regime: Regime, r: RegimeResults) => {
      tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, [...RUN_DEFAULTS, "--ebpf", "on"]);
      const t = tb;
      await waitFor(async () => (await t.status()).peers[0]?.kernelFastPath === true, {
        what: "the kernel carries B",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      await pair.waitForPing();
      // WireGuard A hears B from L6(P) once a datagram of B's came that way: measured only then.
      await waitFor(
        async () => {
          const loopback6 = (await t.status()).peers[0]?.loopback6;
          return !!loopback6 && (await pair.wgA.endpointOf(pair.keyB.publicKey)) === loopback6;
        },
        { what: "WireGuard A at B's L6(P)", timeoutMs: 10_000, intervalMs: 100 },
      );
      const pid = t.process.child.pid;
      if (pid === undefined) throw new Error("no Tunnelbore PID");
      const probe = startCpuProbe([tunnelboreProcesses(pid)]);
      const kernel = await measure(regime);
      r.cpu.push(probe.stop().processes[0]!);
      const peer = (await t.status()).peers[0];
      if (!peer || peer.kernelTxDatagrams === 0) throw new Error("the kernel carried nothing");
      // SIGTERM gives WireGuard its real endpoint back for the next direct run.
      if ((await t.stop("SIGTERM")) !== 0) throw new Error("tunnelbore did not exit cleanly");
      tb = null;
      return kernel;
    };
    const measureDirect = async (regime: Regime) => {
      if ((await pair.wgA.endpointOf(pair.keyB.publicKey)) !== realEndpoint) {
        throw new Error("WireGuard A does not point at B's real endpoint");
      }
      await pair.waitForPing();
      return measure(regime);
    };
    for (let round = 0; round < ROUNDS; round++) {
      for (const regime of REGIMES) {
        const r = results.get(regime)!;
        // Every other round the kernel path goes first, so a drift in the machine's speed weighs on
        // both cases alike (pairedRatio).
        const directFirst = round % 2 === 0 ? await measureDirect(regime) : null;
        const kernel = await measureKernel(regime, r);
        const direct = directFirst ?? (await measureDirect(regime));
        r.direct.push(direct.bitsPerSecond);
        r.kernel.push(kernel.bitsPerSecond);
        r.drops.push(`${direct.drops}/${kernel.drops}`);
      }
    }
    const mbit = (values: number[]) => values.map((v) => (v / 1e6).toFixed(0)).join(", ");
    return REGIMES.flatMap((regime) => {
      const r = results.get(regime)!;
      const d = median(r.direct);
      const k = median(r.kernel);
      const ratio = pairedRatio(r.kernel, r.direct);
      return [
        {
          name: `ipv6, ${regime.name}: iperf3 TCP A -> B, WireGuard direct over IPv6`,
          value: d / 1e6,
          unit: "Mbit/s",
          note: `${regime.label}; ${ROUNDS} rounds of ${SECONDS} s alternating with the other regime (odd rounds kernel first), median; runs ${mbit(r.direct)}`,
        },
        {
          name: `ipv6, ${regime.name}: iperf3 TCP A -> B, Tunnelbore kernel fast path (IPv6 static path)`,
          value: k / 1e6,
          unit: "Mbit/s",
          note: `runs ${mbit(r.kernel)}; datagrams dropped at B's socket (direct/kernel) ${r.drops.join(", ")}`,
        },
        {
          name: `ipv6, ${regime.name}: throughput ratio kernel fast path / direct`,
          value: ratio.paired,
          unit: "x",
          note: `target >= ${TARGET_RATIO}: ${ratio.paired >= TARGET_RATIO ? "met" : "missed"}; ${pairedRatioNote(ratio)}`,
        },
        {
          name: `ipv6, ${regime.name}: Tunnelbore CPU during iperf3`,
          value: median(r.cpu),
          unit: "% of a core",
          note: `parent + worker; runs ${r.cpu.map((c) => c.toFixed(1)).join(", ")}; load average ${loadBefore} before, ${fmtLoad()} after`,
        },
      ];
    });
  } finally {
    await (tb as TunnelboreProcess | null)?.stop("SIGKILL");
    await teardownAll();
    dirs.cleanup();
  }
}

/** B's UDP-over-IPv6 counters (nstat): datagrams delivered, and dropped at a full socket buffer. */
async function udp6Counters(ns: string): Promise<{ inDatagrams: number; rcvbufErrors: number }> {
  const out = await nsRun(ns, "nstat", ["-az", "Udp6InDatagrams", "Udp6RcvbufErrors"]);
  const value = (name: string) => Number(new RegExp(`^${name}\\s+(\\d+)`, "m").exec(out)?.[1] ?? Number.NaN);
  return { inDatagrams: value("Udp6InDatagrams"), rcvbufErrors: value("Udp6RcvbufErrors") };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatTable(await benchKernelIpv6()));
}
