// A relayed path through the kernel fast path vs plain WireGuard between the same two hosts, in one run.
// One ProductLab: a and b behind EIM NATs, coturn on the public segment, Tunnelbore (--ebpf on) on both.
// UDP between a and b's public addresses is dropped on a (except the baseline's port), so ICE finds no
// direct pair and Tunnelbore relays through coturn (TURN over UDP, a bound channel: ChannelData added
// and stripped by the tc program). The baseline is a second wireguard-go pair on the same hosts with
// each other's public endpoints on that port. iperf3 TCP a -> b, the two cases alternating; the CPU of
// both Tunnelbores and of coturn from /proc/PID/stat over each run.
// With TBT_BENCH_TURN_FAMILY=6 the lab has IPv6 too, Tunnelbore reaches coturn at its IPv6 address
// (ChannelData over IPv6), UDP between a and b is dropped in both families, and every WireGuard's MTU
// is 1416 (what status asks for there: 1420 would send full-size datagrams in fragments).
//   npm run build && npx tsx bench/kernel-relay.ts
//   npm run build && TBT_BENCH_TURN_FAMILY=6 npx tsx bench/kernel-relay.ts
import { existsSync } from "node:fs";
import { loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { type IperfResult, parseIperfJson, startIperfServer } from "../test/lab/iperf.js";
import { cleanupStale, labSupported } from "../test/lab/lab-housekeeping.js";
import { generateKeyPair, nsRun, teardownAll, uniqueTag } from "../test/lab/netns.js";
import { CLI } from "../test/lab/tunnelbore.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { startWireGuard, type WireGuardInterface } from "../test/lab/wireguard.js";
import { waitFor } from "../test/support/wait-for.js";
import { startCpuProbe, tunnelboreProcesses } from "./proc-stats.js";
import { RUN_DEFAULTS } from "./run-defaults.js";
import { median, pairedRatio, pairedRatioNote } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const ROUNDS = 3;
const SECONDS = 5;
const OMIT_SECONDS = 1;
const BASE_PORT = 51830;
const BASE_PREFIX = "tbr";
// Not the lab's tunnel subnet (10.77.0.x): the baseline must not share a route with the tunnel.
const BASE_SUBNET = "10.78.0";
const TARGET_RATIO = 0.7;
const TARGET_CPU = 5;

const log = (text: string) => console.error(`[kernel-relay] ${text}`);
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

/** IPv4 (default) or 6: the family Tunnelbore reaches coturn over. */
const TURN_FAMILY = process.env.TBT_BENCH_TURN_FAMILY === "6" ? 6 : 4;
/** Relayed by our TURN server over UDP over IPv6: 1416 leaves a full-size datagram in one piece. */
const IPV6_RELAY_MTU = 1416;

/**
 * Drops UDP between a and `peer` (its public address, and `peer6`, its IPv6 one) on a's uplink, except
 * the baseline's port.
 */
function blockDirectRuleset(peer: string, peer6: string | undefined): string {
  const v6 = (direction: "daddr" | "saddr", port: "dport" | "sport") =>
    peer6
      ? `\n    ${direction === "daddr" ? "oifname" : "iifname"} "eth0" ip6 ${direction} ${peer6} udp ${port} != ${BASE_PORT} drop`
      : "";
  return `table inet tb_kernel_relay {
  chain output {
    type filter hook output priority filter; policy accept;
    oifname "eth0" ip daddr ${peer} udp dport != ${BASE_PORT} drop${v6("daddr", "dport")}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "eth0" ip saddr ${peer} udp sport != ${BASE_PORT} drop${v6("saddr", "sport")}
  }
}
`;
}

/** A second wireguard-go pair on a and b with each other's public endpoint (EIM NATs keep the port). */
async function startBaseline(lab: ProductLab): Promise<{ a: WireGuardInterface; b: WireGuardInterface }> {
  const [ka, kb] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const a = await startWireGuard(
    lab.host("a").ns,
    { privateKey: ka.privateKey, listenPort: BASE_PORT, address: `${BASE_SUBNET}.1/24` },
    `${BASE_PREFIX}${uniqueTag()}`,
  );
  const b = await startWireGuard(
    lab.host("b").ns,
    { privateKey: kb.privateKey, listenPort: BASE_PORT, address: `${BASE_SUBNET}.2/24` },
    `${BASE_PREFIX}${uniqueTag()}`,
  );
  const endpoint = (host: string) => `${lab.lab.host(host).publicAddress}:${BASE_PORT}`;
  await a.setPeer({ publicKey: kb.publicKey, allowedIps: `${BASE_SUBNET}.2/32`, endpoint: endpoint("b") });
  await b.setPeer({ publicKey: ka.publicKey, allowedIps: `${BASE_SUBNET}.1/32`, endpoint: endpoint("a") });
  const pingFrom = (ns: string, to: string) =>
    nsRun(ns, "ping", ["-n", "-c", "1", "-W", "1", to]).then(
      () => true,
      () => false,
    );
  // Both ways at once: a's first initiation opens a's NAT, b's then gets in (a WireGuard hole punch).
  await waitFor(
    async () =>
      (
        await Promise.all([
          pingFrom(lab.host("a").ns, `${BASE_SUBNET}.2`),
          pingFrom(lab.host("b").ns, `${BASE_SUBNET}.1`),
        ])
      ).every(Boolean),
    { what: "baseline WireGuard handshake", timeoutMs: 30_000, intervalMs: 200 },
  );
  return { a, b };
}

async function iperfTcp(serverNs: string, serverAddress: string, clientNs: string): Promise<IperfResult> {
  const server = await startIperfServer(serverNs);
  try {
    const args = ["-c", serverAddress, "-t", String(SECONDS), "-O", String(OMIT_SECONDS), "-J"];
    return parseIperfJson(await nsRun(clientNs, "iperf3", args), false);
  } finally {
    await server.stop();
  }
}

interface Runs {
  mbps: number[];
  retransmits: number[];
  /** % of a core per run: Tunnelbore a, Tunnelbore b, coturn, wireguard-go a, wireguard-go b. */
  cpu: number[][];
  machine: number[];
}

export async function benchKernelRelay(): Promise<BenchRow[]> {
  if (!(await labSupported()))
    throw new Error("the kernel relay benchmark builds network namespaces: run as root");
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  await cleanupStale();
  const loadBefore = fmtLoad();
  const flags = [...RUN_DEFAULTS, "--exclude-interface", `${BASE_PREFIX}*`, "--ebpf", "on"];
  let lab: ProductLab | null = null;
  try {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim", flags },
        { name: "b", nat: "eim", flags },
      ],
      startTunnelbores: false,
      ...(TURN_FAMILY === 6 ? { ipv6: true, turn: { family: 6 } } : {}),
    });
    const l = lab;
    const b = l.lab.host("b");
    await nsRun(l.host("a").ns, "nft", ["-f", "-"], blockDirectRuleset(b.publicAddress, b.address6));
    await l.startTunnelbore("a");
    await l.startTunnelbore("b");
    await l.waitForPing("a", "b", 40_000);
    await l.waitForKernelFastPath("a", "b", 20_000);
    const baseline = await startBaseline(l);
    if (TURN_FAMILY === 6) {
      for (const [ns, wg] of [
        [l.host("a").ns, l.host("a").wg.name],
        [l.host("b").ns, l.host("b").wg.name],
        [baseline.a.ns, baseline.a.name],
        [baseline.b.ns, baseline.b.name],
      ]) {
        await nsRun(ns!, "ip", ["link", "set", "dev", wg!, "mtu", String(IPV6_RELAY_MTU)]);
      }
    }
    const pid = (p: number | undefined, what: string) => {
      if (p === undefined) throw new Error(`no PID for ${what}`);
      return p;
    };
    // Parent and worker: the worker holds the sockets, so user-space forwarding would show there.
    const tbA = tunnelboreProcesses(pid(l.host("a").tunnelbore?.process.child.pid, "Tunnelbore a"));
    const tbB = tunnelboreProcesses(pid(l.host("b").tunnelbore?.process.child.pid, "Tunnelbore b"));
    const coturn = pid(l.coturn.process.child.pid, "coturn");
    const cases = [
      {
        label: "baseline",
        serverNs: baseline.b.ns,
        address: `${BASE_SUBNET}.2`,
        pids: [
          tbA,
          tbB,
          coturn,
          pid(baseline.a.process.child.pid, "wg a"),
          pid(baseline.b.process.child.pid, "wg b"),
        ],
      },
      {
        label: "relay, kernel",
        serverNs: l.host("b").ns,
        address: l.host("b").tunnelAddress,
        pids: [
          tbA,
          tbB,
          coturn,
          pid(l.host("a").wg.process.child.pid, "wg a"),
          pid(l.host("b").wg.process.child.pid, "wg b"),
        ],
      },
    ];
    const results: Runs[] = cases.map(() => ({ mbps: [], retransmits: [], cpu: [], machine: [] }));
    const before = await l.peerStatus("a", "b");
    for (let round = 0; round < ROUNDS; round++) {
      for (let k = 0; k < cases.length; k++) {
        const i = (round + k) % cases.length;
        const c = cases[i]!;
        const probe = startCpuProbe(c.pids);
        const r = await iperfTcp(c.serverNs, c.address, l.host("a").ns);
        const cpu = probe.stop();
        results[i]!.mbps.push(r.bitsPerSecond / 1e6);
        results[i]!.retransmits.push(r.retransmits ?? 0);
        results[i]!.cpu.push(cpu.processes);
        results[i]!.machine.push(cpu.machine);
        log(
          `${c.label} round ${round + 1}: ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s, CPU % tunnelbore ${cpu.processes[0]!.toFixed(1)}/${cpu.processes[1]!.toFixed(1)} coturn ${cpu.processes[2]!.toFixed(0)}, machine ${cpu.machine.toFixed(0)}`,
        );
      }
    }
    const after = await l.peerStatus("a", "b");
    if (after.pathKind !== "relay" || !after.kernelFastPath) {
      throw new Error(
        `a -> b is ${after.pathKind}, kernel ${after.kernelFastPath}: not a relayed path in the kernel`,
      );
    }
    const kernelTx = after.kernelTxDatagrams - before.kernelTxDatagrams;
    const userTx = after.txDatagrams - before.txDatagrams - kernelTx;
    const [base, relay] = results as [Runs, Runs];
    const cpuOf = (r: Runs, index: number) => r.cpu.map((c) => c[index]!);
    const runs = (values: number[], digits = 0) => values.map((v) => v.toFixed(digits)).join(", ");
    const ratio = pairedRatio(relay.mbps, base.mbps);
    return [
      {
        name: "relay: iperf3 TCP a -> b, WireGuard direct (same hosts, no Tunnelbore)",
        value: median(base.mbps),
        unit: "Mbit/s",
        note: `${ROUNDS} x ${SECONDS} s alternating, median; runs ${runs(base.mbps)}; retransmits ${base.retransmits.join(", ")}`,
      },
      {
        name: "relay: iperf3 TCP a -> b, Tunnelbore TURN relay, kernel fast path",
        value: median(relay.mbps),
        unit: "Mbit/s",
        note: `runs ${runs(relay.mbps)}; retransmits ${relay.retransmits.join(", ")}; a -> coturn -> b, ChannelData in tc; TURN over IPv${TURN_FAMILY}${TURN_FAMILY === 6 ? `, every MTU ${IPV6_RELAY_MTU}` : ""}`,
      },
      {
        name: "relay: throughput ratio relay (kernel) / direct",
        value: ratio.paired,
        unit: "x",
        note: `target >= ${TARGET_RATIO}: ${ratio.paired >= TARGET_RATIO ? "met" : "missed"}; ${pairedRatioNote(ratio)}`,
      },
      {
        name: "relay: Tunnelbore CPU during relayed iperf3, sender (a)",
        value: median(cpuOf(relay, 0)),
        unit: "% of a core",
        note: `target < ${TARGET_CPU} %; runs ${runs(cpuOf(relay, 0), 1)} (/proc/PID/stat utime+stime over the run)`,
      },
      {
        name: "relay: Tunnelbore CPU during relayed iperf3, receiver (b)",
        value: median(cpuOf(relay, 1)),
        unit: "% of a core",
        note: `runs ${runs(cpuOf(relay, 1), 1)}`,
      },
      {
        name: "relay: coturn CPU during relayed iperf3",
        value: median(cpuOf(relay, 2)),
        unit: "% of a core",
        note: `runs ${runs(cpuOf(relay, 2))}; user-space TURN relay (both directions)`,
      },
      {
        name: "relay: wireguard-go a + b CPU, relay / direct",
        value: median(relay.cpu.map((c) => c[3]! + c[4]!)),
        unit: "% of a core",
        note: `direct ${median(base.cpu.map((c) => c[3]! + c[4]!)).toFixed(0)} %; machine busy relay ${median(relay.machine).toFixed(0)} %, direct ${median(base.machine).toFixed(0)} % of 2 CPUs`,
      },
      {
        name: "relay: a's datagrams to b through user space during the runs",
        value: userTx,
        unit: "datagrams",
        note: `kernel carried ${kernelTx}; load average ${loadBefore} before, ${fmtLoad()} after`,
      },
    ];
  } finally {
    await lab?.teardown();
    await teardownAll();
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatTable(await benchKernelRelay()));
}
