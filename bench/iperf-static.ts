// iperf3 TCP through real wireguard-go, A -> B, with and without Tunnelbore on A's static path, in
// one run: direct; Tunnelbore in user space with batched I/O (`--ebpf off`); the same with Node's dgram
// (TBT_UDP_IO=dgram); Tunnelbore at its defaults, which is the kernel fast path here. Each run measures
// all four, starting one case later than the run before, so drift on a shared machine hits all alike,
// and the ratios are per run. Two namespaces on one veth link (test/lab/linked-pair.ts); needs root and
// `npm run build`.
//   npm run build && npx tsx bench/iperf-static.ts
import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { measureThroughput } from "../test/lab/iperf.js";
import { createLinkedPair } from "../test/lab/linked-pair.js";
import { teardownAll } from "../test/lab/netns.js";
import { setUdpSocketBuffers } from "../test/lab/socket-buffers.js";
import { CLI, startTunnelbore, type TunnelboreProcess, tunnelboreDirs } from "../test/lab/tunnelbore.js";
import { waitFor } from "../test/support/wait-for.js";
import { groupCpuSeconds, processCpuSeconds, rssBytes, tunnelboreProcesses } from "./proc-stats.js";
import { RUN_DEFAULTS } from "./run-defaults.js";
import { median, pairedRatio, pairedRatioNote } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const RUNS = 4;
const RUN_SECONDS = 5;
/**
 * TBT_BENCH_SOCKET_BUFFER=BYTES: both wireguard-go's UDP buffers set to BYTES before every run (as
 * setsockopt takes it; 7340032 is what wireguard-go asks for since 2023, test/lab/socket-buffers.ts).
 * Unset: Debian's wireguard-go as packaged, whose 208 KiB receive buffer drops ~15 % of datagrams here.
 */
const SOCKET_BUFFER = Number(process.env.TBT_BENCH_SOCKET_BUFFER ?? 0);
const mbit = (bps: number) => (bps / 1e6).toFixed(0);

export async function benchIperfStatic(): Promise<BenchRow[]> {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run npm run build first`);
  const dirs = tunnelboreDirs();
  // Ctrl-C must not leave namespaces and wireguard-go processes behind.
  const onSignal = () => void teardownAll().finally(() => process.exit(130));
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  let tb: TunnelboreProcess | null = null;
  try {
    const pair = await createLinkedPair("bn");
    await pair.waitForPing();
    const wgPids = [pair.wgA.process.child.pid!, pair.wgB.process.child.pid!];
    const direct: Array<{ bps: number; retransmits: number; wgCpu: number }> = [];
    type Through = { bps: number; retransmits: number; wgCpu: number; cpu: number; rss: number };
    const through: Through[] = [];
    const throughDgram: Through[] = [];
    const kernel: Through[] = [];
    /** One iperf3 run; also the CPU (in cores) wireguard-go A + B and Tunnelbore's `pids` used meanwhile. */
    const iperf = async (pids: number[] = []) => {
      if (SOCKET_BUFFER > 0) for (const pid of wgPids) await setUdpSocketBuffers(pid, SOCKET_BUFFER);
      const wgBefore = wgPids.map((pid) => processCpuSeconds(pid));
      const before = groupCpuSeconds(pids);
      const started = performance.now();
      const r = await measureThroughput(pair.nsB, pair.tunB, pair.nsA, { duration: RUN_SECONDS });
      const seconds = (performance.now() - started) / 1000;
      const wgCpu = wgPids.reduce((sum, p, i) => sum + processCpuSeconds(p) - wgBefore[i]!, 0) / seconds;
      const cpu = (groupCpuSeconds(pids) - before) / seconds;
      return { bps: r.bitsPerSecond, retransmits: r.retransmits ?? 0, wgCpu, cpu };
    };
    /**
     * One iperf3 run through a Tunnelbore started with `flags` (and `env`), stopped (SIGTERM) afterwards;
     * `io` is the user-space UDP I/O its log must name (batched-udp.ts), null for the kernel fast path.
     */
    const throughTunnelbore = async (
      flags: string[],
      io: "native" | "dgram" | null,
      env: NodeJS.ProcessEnv = {},
    ): Promise<Through> => {
      tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, [...RUN_DEFAULTS, ...flags], env);
      const pid = tb.process.child.pid!;
      if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").includes("cli.js")) {
        // `ip netns exec` execs in place: the PID must be Tunnelbore's own.
        throw new Error(`PID ${pid} is not the tunnelbore process`);
      }
      await waitFor(
        async () => {
          const peer = (await tb!.status()).peers[0];
          return !!peer && (await pair.wgA.endpointOf(pair.keyB.publicKey)) === peer.loopback;
        },
        { what: "WireGuard endpoint at L(P)", intervalMs: 100 },
      );
      await pair.waitForPing();
      // The worker forwards in user space: the parent alone would show next to nothing.
      const pids = tunnelboreProcesses(pid);
      if (pids.length < 2)
        throw new Error(`expected Tunnelbore's parent and worker, found PIDs ${pids.join(", ")}`);
      const r = await iperf(pids);
      const status = await tb.status();
      if (!status.peers[0] || status.peers[0].txBytes === 0)
        throw new Error("no traffic went through Tunnelbore");
      if (io === null && !(status.peers[0].kernelTxDatagrams > 0))
        throw new Error("default mode: no traffic went through the kernel fast path");
      if (io !== null) {
        if (status.peers[0].kernelTxDatagrams > 0) throw new Error("--ebpf off: the kernel carried traffic");
        const said = tb.logs().find((l) => String(l.msg).startsWith("user-space UDP:"));
        const saidIo = String(said?.msg).startsWith("user-space UDP: batched") ? "native" : "dgram";
        if (saidIo !== io) throw new Error(`expected ${io} user-space UDP I/O, the log says ${said?.msg}`);
      }
      const rss = pids.reduce((sum, p) => sum + rssBytes(p), 0);
      if ((await tb.stop("SIGTERM")) !== 0) throw new Error("tunnelbore did not exit cleanly");
      tb = null;
      return { ...r, rss };
    };
    const directRun = async () => {
      // Without Tunnelbore WireGuard A sends to B's real endpoint (restored by every SIGTERM).
      if ((await pair.wgA.endpointOf(pair.keyB.publicKey)) !== `${pair.linkB}:51820`) {
        throw new Error("WireGuard A does not point at B's real endpoint");
      }
      await pair.waitForPing();
      direct.push(await iperf());
    };
    const cases: Array<() => Promise<void>> = [
      directRun,
      async () => void through.push(await throughTunnelbore(["--ebpf", "off"], "native")),
      async () =>
        void throughDgram.push(await throughTunnelbore(["--ebpf", "off"], "dgram", { TBT_UDP_IO: "dgram" })),
      // No --ebpf flag: the default (auto) must pick the kernel fast path here (checked above).
      async () => void kernel.push(await throughTunnelbore([], null)),
    ];
    for (let run = 0; run < RUNS; run++) {
      // Each run starts one case later, so a drift in the machine's speed does not always favour the
      // same one (the ratios are per run: pairedRatio).
      for (let k = 0; k < cases.length; k++) {
        await cases[(run + k) % cases.length]!();
        await pair.waitForPing();
      }
    }
    const directBps = direct.map((x) => x.bps);
    const d = median(directBps);
    const ratioOf = (runs: Through[]) =>
      pairedRatio(
        runs.map((x) => x.bps),
        directBps,
      );
    const batchedRatio = ratioOf(through);
    const dgramRatio = ratioOf(throughDgram);
    const kernelRatio = ratioOf(kernel);
    const t = median(through.map((x) => x.bps));
    const g = median(throughDgram.map((x) => x.bps));
    const k = median(kernel.map((x) => x.bps));
    const runs = `${RUNS} alternating runs of ${RUN_SECONDS} s`;
    return [
      {
        name: "iperf3 TCP A -> B, WireGuard direct",
        value: d / 1e6,
        unit: "Mbit/s",
        note: `${SOCKET_BUFFER > 0 ? `wireguard-go's socket buffers set to ${SOCKET_BUFFER} B; ` : ""}median of ${runs} (${direct.map((x) => mbit(x.bps)).join(", ")}); retransmits ${direct.map((x) => x.retransmits).join(", ")}`,
      },
      {
        name: "iperf3 TCP A -> B, through Tunnelbore user space, batched I/O (static)",
        value: t / 1e6,
        unit: "Mbit/s",
        note: `--ebpf off; median of ${runs} (${through.map((x) => mbit(x.bps)).join(", ")}); retransmits ${through.map((x) => x.retransmits).join(", ")}`,
      },
      {
        name: "iperf3 ratio Tunnelbore user space, batched / direct",
        value: batchedRatio.paired,
        unit: "x",
        note: `target >= 0.8; ${pairedRatioNote(batchedRatio, "run")}`,
      },
      {
        name: "iperf3 TCP A -> B, through Tunnelbore user space, dgram (static)",
        value: g / 1e6,
        unit: "Mbit/s",
        note: `--ebpf off, TBT_UDP_IO=dgram; median of ${runs} (${throughDgram.map((x) => mbit(x.bps)).join(", ")}); retransmits ${throughDgram.map((x) => x.retransmits).join(", ")}`,
      },
      {
        name: "iperf3 ratio Tunnelbore user space, dgram / direct",
        value: dgramRatio.paired,
        unit: "x",
        note: pairedRatioNote(dgramRatio, "run"),
      },
      {
        name: "iperf3 TCP A -> B, through Tunnelbore default mode (kernel fast path, static)",
        value: k / 1e6,
        unit: "Mbit/s",
        note: `no --ebpf flag (auto); median of ${runs} (${kernel.map((x) => mbit(x.bps)).join(", ")}); retransmits ${kernel.map((x) => x.retransmits).join(", ")}`,
      },
      {
        name: "iperf3 ratio Tunnelbore default mode (kernel) / direct",
        value: kernelRatio.paired,
        unit: "x",
        note: `target >= 0.95; ${pairedRatioNote(kernelRatio, "run")}`,
      },
      {
        name: "Tunnelbore CPU during iperf3, default mode (kernel)",
        value: 100 * median(kernel.map((x) => x.cpu)),
        unit: "% of a core",
        note: `parent + worker; per run ${kernel.map((x) => (100 * x.cpu).toFixed(1)).join(", ")} (the kernel's work is not in it)`,
      },
      {
        name: "Tunnelbore CPU during iperf3, user space batched",
        value: 100 * median(through.map((x) => x.cpu)),
        unit: "% of a core",
        note: `parent + worker; per run ${through.map((x) => (100 * x.cpu).toFixed(0)).join(", ")} (/proc/PID/stat utime+stime)`,
      },
      {
        name: "Tunnelbore CPU during iperf3, user space dgram",
        value: 100 * median(throughDgram.map((x) => x.cpu)),
        unit: "% of a core",
        note: `per run ${throughDgram.map((x) => (100 * x.cpu).toFixed(0)).join(", ")}`,
      },
      {
        name: "wireguard-go A + B CPU, direct",
        value: 100 * median(direct.map((x) => x.wgCpu)),
        unit: "% of a core",
        note: `per run ${direct.map((x) => (100 * x.wgCpu).toFixed(0)).join(", ")}; 2 CPUs in all`,
      },
      {
        name: "wireguard-go A + B CPU, through Tunnelbore user space batched",
        value: 100 * median(through.map((x) => x.wgCpu)),
        unit: "% of a core",
        note: `per run ${through.map((x) => (100 * x.wgCpu).toFixed(0)).join(", ")}`,
      },
      {
        name: "Tunnelbore RSS after iperf3",
        value: median(through.map((x) => x.rss)) / 2 ** 20,
        unit: "MiB",
        note: "parent + worker VmRSS, user space batched, compiled JS (dist/src/cli.js)",
      },
    ];
  } finally {
    await (tb as TunnelboreProcess | null)?.stop("SIGKILL");
    await teardownAll();
    dirs.cleanup();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(formatTable(await benchIperfStatic()));
}
