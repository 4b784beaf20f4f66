// iperf3 TCP through real wireguard-go over an IPv6 link, A -> B: WireGuard direct vs through
// Tunnelbore with the kernel fast path, alternating in one run, two ways: WireGuard A on IPv6 loopback
// (L6(P): its datagrams rewritten onto the IPv6 static path in tc), and, with A's lo stripped of ::1,
// on IPv4 loopback (L(P): translated 4 <-> 6 in tc, as before L6(P) and where it cannot be used). Two namespaces on one veth (test/lab/linked-pair.ts, "ipv6").
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
  /** The kernel fast path translating (A's lo without ::1). */
  translated: number[];
  cpu: number[];
  /** Datagrams dropped at B's full socket / datagrams B's socket got, per run (direct, L6(P), translated). */
  drops: string[];
}

/** How Tunnelbore's kernel path meets WireGuard A: on [::1] (L6(P)), or on 127.x, translated. */
type KernelWay = "native" | "translated";

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
      REGIMES.map((r) => [r, { direct: [], kernel: [], translated: [], cpu: [], drops: [] }]),
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
    // lo without ::1 in A: L6(P) cannot be bound, and the kernel path translates.
    const loopback6 = (on: boolean) =>
      nsRun(pair.nsA, "sysctl", ["-qw", `net.ipv6.conf.lo.disable_ipv6=${on ? 0 : 1}`]);
    // One kernel-path run: Tunnelbore started, the kernel carrying B, measured, stopped.
    const measureKernel = async (regime: Regime, r: RegimeResults, way: KernelWay) => {
      if (way === "translated") await loopback6(false);
      try {
        return await measureKernelWay(regime, r, way);
      } finally {
        if (way === "translated") await loopback6(true);
      }
    };
    const measureKernelWay = async (regime: Regime, r: RegimeResults, way: KernelWay) => {
      tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, [...RUN_DEFAULTS, "--ebpf", "on"]);
      const t = tb;
      await waitFor(async () => (await t.status()).peers[0]?.kernelFastPath === true, {
        what: "the kernel carries B",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      await pair.waitForPing();
      // WireGuard A hears B from L6(P) once a datagram of B's came that way: measured only then.
      const endpoint = await waitFor(
        async () => {
          const loopback6 = (await t.status()).peers[0]?.loopback6;
          const at = await pair.wgA.endpointOf(pair.keyB.publicKey);
          return way === "native" ? !!loopback6 && at === loopback6 && at : at.startsWith("127.") && at;
        },
        {
          what: `WireGuard A at B's ${way === "native" ? "L6(P)" : "L(P)"}`,
          timeoutMs: 10_000,
          intervalMs: 100,
        },
      );
      const pid = t.process.child.pid;
      if (pid === undefined) throw new Error("no Tunnelbore PID");
      const probe = startCpuProbe([tunnelboreProcesses(pid)]);
      const kernel = await measure(regime);
      const cpu = probe.stop().processes[0]!;
      if (way === "native") r.cpu.push(cpu);
      const peer = (await t.status()).peers[0];
      if (!peer || peer.kernelTxDatagrams === 0) throw new Error("the kernel carried nothing");
      if ((await pair.wgA.endpointOf(pair.keyB.publicKey)) !== endpoint)
        throw new Error(`WireGuard A left ${endpoint} during the run`);
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
    type Case = "direct" | KernelWay;
    for (let round = 0; round < ROUNDS; round++) {
      for (const regime of REGIMES) {
        const r = results.get(regime)!;
        // Every other round the order is reversed, so a drift in the machine's speed weighs on every
        // case alike (pairedRatio).
        const order: Case[] = ["direct", "native", "translated"];
        if (round % 2 === 1) order.reverse();
        const got = new Map<Case, { bitsPerSecond: number; drops: string }>();
        for (const c of order)
          got.set(c, c === "direct" ? await measureDirect(regime) : await measureKernel(regime, r, c));
        const [direct, native, translated] = (["direct", "native", "translated"] as const).map(
          (c) => got.get(c)!,
        );
        r.direct.push(direct!.bitsPerSecond);
        r.kernel.push(native!.bitsPerSecond);
        r.translated.push(translated!.bitsPerSecond);
        r.drops.push(`${direct!.drops}/${native!.drops}/${translated!.drops}`);
      }
    }
    const mbit = (values: number[]) => values.map((v) => (v / 1e6).toFixed(0)).join(", ");
    return REGIMES.flatMap((regime) => {
      const r = results.get(regime)!;
      const d = median(r.direct);
      const k = median(r.kernel);
      const ratio = pairedRatio(r.kernel, r.direct);
      const translatedRatio = pairedRatio(r.translated, r.direct);
      const nativeOverTranslated = pairedRatio(r.kernel, r.translated);
      return [
        {
          name: `ipv6, ${regime.name}: iperf3 TCP A -> B, WireGuard direct over IPv6`,
          value: d / 1e6,
          unit: "Mbit/s",
          note: `${regime.label}; ${ROUNDS} rounds of ${SECONDS} s alternating with the other regime (direct, L6(P), translated; odd rounds in reverse), median; runs ${mbit(r.direct)}`,
        },
        {
          name: `ipv6, ${regime.name}: iperf3 TCP A -> B, Tunnelbore kernel fast path, WireGuard on [::1] (L6(P))`,
          value: k / 1e6,
          unit: "Mbit/s",
          note: `runs ${mbit(r.kernel)}; datagrams dropped at B's socket (direct/L6(P)/translated) ${r.drops.join(", ")}`,
        },
        {
          name: `ipv6, ${regime.name}: iperf3 TCP A -> B, Tunnelbore kernel fast path, translated (A's lo without ::1)`,
          value: median(r.translated) / 1e6,
          unit: "Mbit/s",
          note: `runs ${mbit(r.translated)}`,
        },
        {
          name: `ipv6, ${regime.name}: throughput ratio translated / direct`,
          value: translatedRatio.paired,
          unit: "x",
          note: pairedRatioNote(translatedRatio),
        },
        {
          name: `ipv6, ${regime.name}: throughput ratio L6(P) / translated`,
          value: nativeOverTranslated.paired,
          unit: "x",
          note: `what not translating gains; ${pairedRatioNote(nativeOverTranslated)}`,
        },
        {
          name: `ipv6, ${regime.name}: throughput ratio kernel fast path (L6(P)) / direct`,
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
