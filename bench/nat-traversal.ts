// NAT traversal benchmarks in one ProductLab (network namespaces, nftables NAT routers, an introduction
// server and coturn on the public segment, real wireguard-go and the built Tunnelbore on every host):
//
//   a (EIM NAT) <-> b (EIM NAT)              Tunnelbore --ebpf off: direct ICE path in user space
//   c (symmetric NAT) <-> d (symmetric NAT)  Tunnelbore, default mode: TURN relay (coturn)
//   e (EIM NAT) <-> f (EIM NAT)              Tunnelbore, default mode: direct ICE path (the kernel fast path)
//   a <-> b on a second wireguard-go pair     no Tunnelbore, each with the other's public endpoint
//                                             (the baseline: the very same hosts, NATs and links)
//
// Connect time (bench/nat-traversal-connect.ts): both Tunnelbores up and idle, WireGuard never
// handshaken; from the first ping sent to the first reply, on a fresh lab and after WireGuard resets.
// Throughput: iperf3 TCP (a -> b, c -> d) through each WireGuard: 5 rounds of the three cases, order
// rotating, 5 s each after 1 s left out; CPU of Tunnelbore and wireguard-go from /proc meanwhile.
//   npm run build && npx tsx bench/nat-traversal.ts
import { readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { fileURLToPath } from "node:url";
import { type IperfResult, parseIperfJson, startIperfServer } from "../test/lab/iperf.js";
import { generateKeyPair, nsRun, teardownAll, uniqueTag } from "../test/lab/netns.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { startWireGuard, type WireGuardInterface } from "../test/lab/wireguard.js";
import { waitFor } from "../test/support/wait-for.js";
import { labPreflight } from "./lab-preflight.js";
import {
  connectRows,
  log,
  measureConnect,
  TARGET_DIRECT_MS,
  TARGET_RELAY_MS,
} from "./nat-traversal-connect.js";
import { startCpuProbe, tunnelboreProcesses } from "./proc-stats.js";
import { RUN_DEFAULTS } from "./run-defaults.js";
import { median, pairedRatio, pairedRatioNote } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const IPERF_ROUNDS = 5;
const IPERF_SECONDS = 5;
/** Seconds of each iperf3 run left out of its result (-O): slow start, Tunnelbore's JIT warm-up. */
const IPERF_OMIT_SECONDS = 1;
/** The baseline WireGuard pair: its own port, subnet and interface names (excluded from ICE). */
const BASE_PORT = 51830;
const BASE_PREFIX = "tbb";
const BASE_SUBNET = "10.78.0";
const TARGET_RATIO = 0.8;

// ---------------------------------------------------------------------------------------------------
// The baseline: a second wireguard-go pair on a and b, no Tunnelbore, real public endpoints.

interface Baseline {
  a: WireGuardInterface;
  b: WireGuardInterface;
  bAddress: string;
}

async function startBaseline(lab: ProductLab, x: string, y: string): Promise<Baseline> {
  const [kx, ky] = await Promise.all([generateKeyPair(), generateKeyPair()]);
  const wx = await startWireGuard(
    lab.host(x).ns,
    { privateKey: kx.privateKey, listenPort: BASE_PORT, address: `${BASE_SUBNET}.1/24` },
    `${BASE_PREFIX}${uniqueTag()}`,
  );
  const wy = await startWireGuard(
    lab.host(y).ns,
    { privateKey: ky.privateKey, listenPort: BASE_PORT, address: `${BASE_SUBNET}.2/24` },
    `${BASE_PREFIX}${uniqueTag()}`,
  );
  // Each NAT keeps the source port (EIM), so wan:BASE_PORT is each side's public endpoint.
  await wx.setPeer({
    publicKey: ky.publicKey,
    allowedIps: `${BASE_SUBNET}.2/32`,
    endpoint: `${lab.lab.host(y).publicAddress}:${BASE_PORT}`,
  });
  await wy.setPeer({
    publicKey: kx.publicKey,
    allowedIps: `${BASE_SUBNET}.1/32`,
    endpoint: `${lab.lab.host(x).publicAddress}:${BASE_PORT}`,
  });
  // x's first initiation opens x's NAT (and is dropped by y's); y's then gets in: a WireGuard hole punch.
  const hx = lab.host(x).ns;
  const hy = lab.host(y).ns;
  await waitFor(
    async () => {
      const [p1, p2] = await Promise.all([
        nsRun(hx, "ping", ["-n", "-c", "1", "-W", "1", `${BASE_SUBNET}.2`]).then(
          () => true,
          () => false,
        ),
        nsRun(hy, "ping", ["-n", "-c", "1", "-W", "1", `${BASE_SUBNET}.1`]).then(
          () => true,
          () => false,
        ),
      ]);
      return p1 && p2;
    },
    { what: "baseline WireGuard handshake", timeoutMs: 30_000, intervalMs: 200 },
  );
  const ep = await wx.endpointOf(ky.publicKey);
  if (ep !== `${lab.lab.host(y).publicAddress}:${BASE_PORT}`) {
    throw new Error(`baseline WireGuard on ${x} talks to ${ep}, not ${y}'s public endpoint`);
  }
  return { a: wx, b: wy, bAddress: `${BASE_SUBNET}.2` };
}

// ---------------------------------------------------------------------------------------------------
// Throughput.

/** iperf3 TCP from `clientNs` to a one-shot server, leaving out the first second (-O). */
async function iperfTcp(serverNs: string, serverAddress: string, clientNs: string): Promise<IperfResult> {
  const server = await startIperfServer(serverNs);
  try {
    const args = ["-c", serverAddress, "-t", String(IPERF_SECONDS), "-O", String(IPERF_OMIT_SECONDS), "-J"];
    const out = await nsRun(clientNs, "iperf3", args).catch((err: unknown) => {
      throw new Error(`iperf3 to ${serverAddress}: ${String(err)}`);
    });
    return parseIperfJson(out, false);
  } finally {
    await server.stop();
  }
}

interface ThroughputCase {
  label: string;
  client: string;
  serverNs: string;
  serverAddress: string;
  /** Tunnelbore's processes (sender, receiver: parent and worker each), then wireguard-go's PIDs. */
  pids: Array<number | number[]>;
}

interface ThroughputResult {
  mbps: number[];
  retransmits: number[];
  cpu: number[][];
  machine: number[];
}

async function measureThroughputCases(
  lab: ProductLab,
  cases: ThroughputCase[],
  started: number,
): Promise<ThroughputResult[]> {
  const results = cases.map((): ThroughputResult => ({ mbps: [], retransmits: [], cpu: [], machine: [] }));
  for (let round = 0; round < IPERF_ROUNDS; round++) {
    // The order rotates every round, so no case always runs first or after the same neighbour.
    for (let k = 0; k < cases.length; k++) {
      const i = (round + k) % cases.length;
      const c = cases[i]!;
      const probe = startCpuProbe(c.pids);
      const r = await iperfTcp(c.serverNs, c.serverAddress, lab.host(c.client).ns);
      const cpu = probe.stop();
      const res = results[i]!;
      res.mbps.push(r.bitsPerSecond / 1e6);
      res.retransmits.push(r.retransmits ?? 0);
      res.cpu.push(cpu.processes);
      res.machine.push(cpu.machine);
      log(
        `iperf3 ${c.label} round ${round + 1}: ${(r.bitsPerSecond / 1e6).toFixed(0)} Mbit/s, ${r.retransmits} retransmits, CPU % tunnelbore ${cpu.processes
          .slice(0, 2)
          .map((p) => p.toFixed(0))
          .join("/")} wireguard-go ${cpu.processes
          .slice(2)
          .map((p) => p.toFixed(0))
          .join(
            "/",
          )}, machine ${cpu.machine.toFixed(0)} % at ${((Date.now() - started) / 1000).toFixed(0)} s`,
      );
    }
  }
  return results;
}

// ---------------------------------------------------------------------------------------------------

/** The PID of a process started with `ip netns exec` (which execs it: same PID), checked by name. */
function pidOf(pid: number | undefined, comm: string, what: string): number {
  if (pid === undefined) throw new Error(`no ${what}`);
  const actual = readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  if (!actual.startsWith(comm)) throw new Error(`${what}: PID ${pid} is ${actual}, not ${comm}`);
  return pid;
}

/** Tunnelbore's parent and worker on `name` (the worker holds the sockets and forwards in user space). */
function tunnelborePids(lab: ProductLab, name: string): number[] {
  return tunnelboreProcesses(
    pidOf(lab.host(name).tunnelbore?.process.child.pid, "node", `Tunnelbore on ${name}`),
  );
}

function wireguardPid(wg: WireGuardInterface): number {
  return pidOf(wg.process.child.pid, "wireguard-go", `wireguard-go ${wg.name}`);
}

const fmtList = (values: number[], digits = 0) => values.map((v) => v.toFixed(digits)).join(", ");
const fmtLoad = () =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(" ");

export async function benchNatTraversal(): Promise<BenchRow[]> {
  await labPreflight("NAT traversal");
  const started = Date.now();
  const loadBefore = fmtLoad();
  // The CLI's defaults, as a user runs it; the baseline interfaces are never ICE candidates.
  const flags = [...RUN_DEFAULTS, "--exclude-interface", `${BASE_PREFIX}*`];
  let lab: ProductLab | null = null;
  try {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim", flags: [...flags, "--ebpf", "off"] },
        { name: "b", nat: "eim", flags: [...flags, "--ebpf", "off"] },
        { name: "c", nat: "symmetric", flags },
        { name: "d", nat: "symmetric", flags },
        { name: "e", nat: "eim", flags },
        { name: "f", nat: "eim", flags },
      ],
      links: [
        ["a", "b"],
        ["c", "d"],
        ["e", "f"],
      ],
    });
    log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)} s (load average ${loadBefore})`);
    const rows: BenchRow[] = [];

    const direct = await measureConnect(lab, "a", "b", "direct", started);
    const relay = await measureConnect(lab, "c", "d", "relay", started);
    rows.push(
      ...connectRows("behind two EIM NATs (ICE direct)", direct, TARGET_DIRECT_MS),
      ...connectRows("behind two symmetric NATs (TURN relay)", relay, TARGET_RELAY_MS),
    );

    const baseline = await startBaseline(lab, "a", "b");
    log(`baseline WireGuard a <-> b up at ${((Date.now() - started) / 1000).toFixed(0)} s`);
    const tb = (n: string) => tunnelborePids(lab!, n);
    const wgOf = (n: string) => wireguardPid(lab!.host(n).wg);
    await lab.waitForPing("e", "f");
    const [base, ice, turn, kernel] = await measureThroughputCases(
      lab,
      [
        {
          label: "baseline",
          client: "a",
          serverNs: baseline.b.ns,
          serverAddress: baseline.bAddress,
          pids: [tb("a"), tb("b"), wireguardPid(baseline.a), wireguardPid(baseline.b)],
        },
        {
          label: "ICE direct, --ebpf off",
          client: "a",
          serverNs: lab.host("b").ns,
          serverAddress: lab.host("b").tunnelAddress,
          pids: [tb("a"), tb("b"), wgOf("a"), wgOf("b")],
        },
        {
          label: "TURN relay",
          client: "c",
          serverNs: lab.host("d").ns,
          serverAddress: lab.host("d").tunnelAddress,
          pids: [tb("c"), tb("d"), wgOf("c"), wgOf("d")],
        },
        {
          label: "ICE direct, default mode",
          client: "e",
          serverNs: lab.host("f").ns,
          serverAddress: lab.host("f").tunnelAddress,
          pids: [tb("e"), tb("f"), wgOf("e"), wgOf("f")],
        },
      ],
      started,
    );
    const abPath = await lab.peerStatus("a", "b");
    const cdPath = await lab.peerStatus("c", "d");
    const efPath = await lab.peerStatus("e", "f");
    if (abPath.pathKind !== "direct" || cdPath.pathKind !== "relay" || efPath.pathKind !== "direct") {
      throw new Error(
        `paths changed during the run: a->b ${abPath.pathKind}, c->d ${cdPath.pathKind}, e->f ${efPath.pathKind}`,
      );
    }
    if (!efPath.kernelFastPath || efPath.kernelTxDatagrams === 0) {
      throw new Error("e -> f: the kernel fast path did not carry the traffic");
    }
    const loadAfter = fmtLoad();
    const cpuOf = (r: ThroughputResult, index: number) => r.cpu.map((c) => c[index]!);
    const wgCpu = (r: ThroughputResult) =>
      `wireguard-go CPU ${median(cpuOf(r, 2)).toFixed(0)} % + ${median(cpuOf(r, 3)).toFixed(0)} %`;
    const describe = (r: ThroughputResult) =>
      `${IPERF_ROUNDS} x ${IPERF_SECONDS} s, median; runs ${fmtList(r.mbps)}; retransmits ${r.retransmits.join(", ")}; ${wgCpu(r)}`;
    const baseMbps = median(base!.mbps);
    const iceMbps = median(ice!.mbps);
    const turnMbps = median(turn!.mbps);
    const kernelMbps = median(kernel!.mbps);
    const iceRatio = pairedRatio(ice!.mbps, base!.mbps);
    const kernelRatio = pairedRatio(kernel!.mbps, base!.mbps);
    const turnRatio = pairedRatio(turn!.mbps, base!.mbps);
    rows.push(
      {
        name: "nat: iperf3 TCP, WireGuard direct endpoints, no Tunnelbore (baseline)",
        value: baseMbps,
        unit: "Mbit/s",
        note: `${describe(base!)}; a -> b through both EIM NATs`,
      },
      {
        name: "nat: iperf3 TCP, Tunnelbore ICE direct path, user space (--ebpf off)",
        value: iceMbps,
        unit: "Mbit/s",
        note: `${describe(ice!)}; a -> b, path ${abPath.remote}`,
      },
      {
        name: "nat: iperf3 TCP, Tunnelbore TURN relay path",
        value: turnMbps,
        unit: "Mbit/s",
        note: `${describe(turn!)}; c -> coturn -> d`,
      },
      {
        name: "nat: throughput ratio ICE direct user space / baseline",
        value: iceRatio.paired,
        unit: "",
        note: `target >= ${TARGET_RATIO}; ${pairedRatioNote(iceRatio)}`,
      },
      {
        name: "nat: iperf3 TCP, Tunnelbore ICE direct path, default mode (kernel fast path)",
        value: kernelMbps,
        unit: "Mbit/s",
        note: `${describe(kernel!)}; e -> f, path ${efPath.remote}, ${efPath.kernelTxDatagrams} datagrams in the kernel`,
      },
      {
        name: "nat: throughput ratio ICE direct default mode / baseline",
        value: kernelRatio.paired,
        unit: "",
        note: `target >= ${TARGET_RATIO}; ${pairedRatioNote(kernelRatio)}; e, f have their own EIM NATs like a, b`,
      },
      {
        name: "nat: throughput ratio TURN relay / baseline",
        value: turnRatio.paired,
        unit: "",
        note: pairedRatioNote(turnRatio),
      },
      {
        name: "nat: Tunnelbore CPU during ICE direct iperf3, sender (a)",
        value: median(cpuOf(ice!, 0)),
        unit: "% of a core",
        note: `runs ${fmtList(cpuOf(ice!, 0))}`,
      },
      {
        name: "nat: Tunnelbore CPU during ICE direct iperf3, receiver (b)",
        value: median(cpuOf(ice!, 1)),
        unit: "% of a core",
        note: `runs ${fmtList(cpuOf(ice!, 1))}`,
      },
      {
        name: "nat: Tunnelbore CPU during TURN relay iperf3, sender (c)",
        value: median(cpuOf(turn!, 0)),
        unit: "% of a core",
        note: `runs ${fmtList(cpuOf(turn!, 0))}; receiver (d) ${median(cpuOf(turn!, 1)).toFixed(0)} %`,
      },
      {
        name: "nat: machine CPU busy during ICE direct iperf3",
        value: median(ice!.machine),
        unit: "% of all cores",
        note: `baseline ${median(base!.machine).toFixed(0)} %, relay ${median(turn!.machine).toFixed(0)} %; every process on the machine; load average ${loadBefore} before, ${loadAfter} after`,
      },
    );
    // CPU per bit: the product's processes on both hosts (wireguard-go, plus Tunnelbore where it carries
    // the traffic), and the whole machine (iperf3, TCP, NAT routers, everything else too).
    const cores = availableParallelism();
    const perMbit = (r: ThroughputResult, first: number) =>
      median(r.mbps.map((m, i) => (100 * r.cpu[i]!.slice(first).reduce((x, y) => x + y, 0)) / m));
    const machinePerMbit = (r: ThroughputResult) =>
      median(r.mbps.map((m, i) => (100 * cores * r.machine[i]!) / m));
    for (const [label, r, first] of [
      ["baseline (wireguard-go)", base!, 2],
      ["ICE direct (wireguard-go + Tunnelbore)", ice!, 0],
      ["TURN relay (wireguard-go + Tunnelbore)", turn!, 0],
      ["ICE direct, default mode (wireguard-go + Tunnelbore)", kernel!, 0],
    ] as const) {
      rows.push({
        name: `nat: CPU per 100 Mbit/s, ${label}`,
        value: perMbit(r, first),
        unit: "% of a core",
        note: `both hosts; whole machine ${machinePerMbit(r).toFixed(0)} % of a core per 100 Mbit/s`,
      });
    }
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return rows;
  } finally {
    await lab?.teardown().catch(() => undefined);
    await teardownAll();
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await benchNatTraversal();
  console.log(formatTable(rows));
}
