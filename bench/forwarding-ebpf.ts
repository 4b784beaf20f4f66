// The kernel fast path (--ebpf) rows of bench/forwarding.ts. Its program attaches to lo, so all of it
// (generator, sink, proxy child) runs in a network namespace made for it (tbt-fwd-*, deleted at the
// end): the outer benchmark runs this file there, and that run measures direct and --ebpf alternately
// and prints its rows as JSON.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { assertInBenchNamespace, Child, cpuMicros, NAMESPACE_PREFIX } from "./forwarding-child.js";
import {
  alternatingLatency,
  flow,
  HOST,
  handshake,
  openBenchEnds,
  PEER_INDEX,
  transportRing,
  WG_INDEX,
} from "./forwarding-traffic.js";
import {
  DIRECTION_LABEL,
  type FloodRun,
  floodRows,
  floodVariants,
  fmtRate,
  latencyRows,
  measureVariants,
  THROUGHPUT_MS,
  THROUGHPUT_REPS,
  userSpaceForwarded,
  type Variant,
} from "./forwarding-variants.js";
import { median } from "./statistics.js";
import type { BenchRow } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const PROJECT_ROOT = fileURLToPath(new URL("..", import.meta.url));
const execFileAsync = promisify(execFile);
/** Set (to 1) in the environment of the run inside the namespace: it measures --ebpf and prints JSON rows. */
const EBPF_ENV = "TBT_BENCH_FWD_EBPF";
/** The line of the inner run's stdout that carries its rows. */
const EBPF_ROWS_MARKER = "TBT_FWD_EBPF_ROWS ";
const EBPF_OBJECT = join(PROJECT_ROOT, "dist", "ebpf", "fast-path.bpf.o");
/** The whole inner run (about 50 s): past this it is stopped and the namespace deleted. */
const EBPF_RUN_LIMIT_MS = 240_000;
/** The C generator (bench/udp-flood.c), compiled by the outer run and named to the inner one by this variable. */
const UDP_FLOOD_ENV = "TBT_BENCH_UDP_FLOOD";
/** The kernel forwarder folds the kernel's counters into the peer's once per second. */
const KERNEL_POLL_WAIT_MS = 1500;

/** Inside the namespace: direct vs the proxy with the kernel fast path, same generator and sink. */
async function benchEbpfInNamespace(): Promise<BenchRow[]> {
  await assertInBenchNamespace();
  // The program forwards only datagrams from WireGuard's port: the proxy is told the fake's.
  const { keys, wg, peer, cfg } = await openBenchEnds();
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
    type Name = keyof typeof routes;
    let variants: Array<Variant<Name>> = [
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
    const label: Record<Name, string> = {
      direct: "direct (no proxy), in netns",
      ebpf: "through the proxy --ebpf, in netns",
    };
    for (const { route, dir } of variants) {
      const entry = results.get(`${route}/${dir}`);
      if (!entry) continue;
      const rates = entry.flows.map((f) => f.rate);
      const sent = entry.flows.reduce((s, f) => s + f.sent, 0);
      const lost = entry.flows.reduce((s, f) => s + f.lost, 0);
      rows.push({
        name: `fwd ${DIRECTION_LABEL[dir]}, ${label[route]}`,
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
        name: `fwd ${DIRECTION_LABEL[dir]}: proxy --ebpf / direct (in netns)`,
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
 * The --ebpf rows: this file run inside a namespace made for it (deleted afterwards, also on errors,
 * SIGINT and SIGTERM). Without root or the compiled program they are skipped with a note.
 */
export async function benchForwardingEbpf(floodBinary: string | null): Promise<BenchRow[]> {
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

if (process.argv[1] === THIS_FILE && process.env[EBPF_ENV] === "1") {
  console.log(`${EBPF_ROWS_MARKER}${JSON.stringify(await benchEbpfInNamespace())}`);
}
