// iperf3 TCP through real wireguard-go over an IPv6 link, A -> B: WireGuard direct vs through
// Tunnelbore with the kernel fast path (WireGuard's IPv4 loopback datagrams translated to the IPv6
// static path in tc), alternating in one run. Two namespaces on one veth (test/lab/linked-pair.ts, "ipv6").
//   npm run build && npx tsx bench/kernel-ipv6.ts

import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { measureThroughput } from "../test/lab/iperf.js";
import { createLinkedPair } from "../test/lab/linked-pair.js";
import { teardownAll } from "../test/lab/netns.js";
import { CLI, startTunnelbore, type TunnelboreProcess, tunnelboreDirs } from "../test/lab/tunnelbore.js";
import { waitFor } from "../test/support/wait-for.js";
import { startCpuProbe, tunnelboreProcesses } from "./proc-stats.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const ROUNDS = 5;
const SECONDS = 5;
const TARGET_RATIO = 0.95;
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

export async function benchKernelIpv6(): Promise<BenchRow[]> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dirs = tunnelboreDirs();
  const loadBefore = fmtLoad();
  let tb: TunnelboreProcess | null = null;
  try {
    const pair = await createLinkedPair("bk6", "ipv6");
    await pair.waitForPing();
    const direct: number[] = [];
    const kernel: number[] = [];
    const cpu: number[] = [];
    const realEndpoint = `[${pair.linkB}]:51820`;
    for (let round = 0; round < ROUNDS; round++) {
      if ((await pair.wgA.endpointOf(pair.keyB.publicKey)) !== realEndpoint) {
        throw new Error("WireGuard A does not point at B's real endpoint");
      }
      await pair.waitForPing();
      direct.push(
        (await measureThroughput(pair.nsB, pair.tunB, pair.nsA, { duration: SECONDS })).bitsPerSecond,
      );

      tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, ["--log-level", "info", "--ebpf", "on"]);
      const t = tb;
      await waitFor(async () => (await t.status()).peers[0]?.kernelFastPath === true, {
        what: "the kernel carries B",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      await pair.waitForPing();
      const pid = t.process.child.pid;
      if (pid === undefined) throw new Error("no Tunnelbore PID");
      const probe = startCpuProbe([tunnelboreProcesses(pid)]);
      kernel.push(
        (await measureThroughput(pair.nsB, pair.tunB, pair.nsA, { duration: SECONDS })).bitsPerSecond,
      );
      cpu.push(probe.stop().processes[0]!);
      const peer = (await t.status()).peers[0];
      if (!peer || peer.kernelTxDatagrams === 0) throw new Error("the kernel carried nothing");
      // SIGTERM gives WireGuard its real endpoint back for the next direct run.
      if ((await t.stop("SIGTERM")) !== 0) throw new Error("tunnelbore did not exit cleanly");
      tb = null;
    }
    const d = median(direct);
    const k = median(kernel);
    const mbit = (values: number[]) => values.map((v) => (v / 1e6).toFixed(0)).join(", ");
    return [
      {
        name: "ipv6: iperf3 TCP A -> B, WireGuard direct over IPv6",
        value: d / 1e6,
        unit: "Mbit/s",
        note: `${ROUNDS} alternating runs of ${SECONDS} s, median; runs ${mbit(direct)}`,
      },
      {
        name: "ipv6: iperf3 TCP A -> B, Tunnelbore kernel fast path (IPv6 static path)",
        value: k / 1e6,
        unit: "Mbit/s",
        note: `runs ${mbit(kernel)}; 4<->6 translation in tc`,
      },
      {
        name: "ipv6: throughput ratio kernel fast path / direct",
        value: k / d,
        unit: "x",
        note: `target >= ${TARGET_RATIO}: ${k / d >= TARGET_RATIO ? "met" : "missed"}; per pair ${kernel.map((x, i) => (x / direct[i]!).toFixed(2)).join(", ")}`,
      },
      {
        name: "ipv6: Tunnelbore CPU during iperf3",
        value: median(cpu),
        unit: "% of a core",
        note: `parent + worker; runs ${cpu.map((c) => c.toFixed(1)).join(", ")}; load average ${loadBefore} before, ${fmtLoad()} after`,
      },
    ];
  } finally {
    await (tb as TunnelboreProcess | null)?.stop("SIGKILL");
    await teardownAll();
    dirs.cleanup();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatTable(await benchKernelIpv6()));
}
