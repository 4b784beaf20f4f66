// Forwarding on loopback: a WireGuardProxy + StaticPath in a child process between a fake WireGuard
// and a fake peer (two UDP sockets in this process), against the same generator and sink talking
// directly, in one run. The proxy child takes the default user-space I/O (the batched addon when it is
// built; bench/forwarding-batched.ts sets it against Node's dgram). Also a bare Node relay (the same socket calls with no checks) in a child
// process, to show how much of the cost is Node's per-datagram dgram cost rather than the proxy's.
//   npx tsx bench/forwarding.ts
// For profiling: TBT_BENCH_CPU_PROF=DIR writes a V8 CPU profile of the proxy process (node --cpu-prof);
// TBT_BENCH_FWD_ONLY=proxy/out runs one throughput variant (route/dir); TBT_BENCH_FWD_MS sets its length.
// With the kernel fast path (--ebpf) too, as extra rows: as root and after `npm run build` (which builds
// dist/ebpf/fast-path.bpf.o), the benchmark runs bench/forwarding-ebpf.ts inside a network namespace of its own
// (tbt-fwd-*, deleted at the end), because the program attaches to lo; there it measures direct and the
// proxy with the fast path (TBT_BENCH_FWD_ONLY=ebpf/out runs only that variant and its baseline), with
// Node's generator and then with bench/udp-flood.c (compiled with cc), which is fast enough to find its limit.
//   (the child: bench/forwarding-child.ts; the load: forwarding-traffic.ts; variants, the C generator and
//   rows: forwarding-variants.ts; the namespace run: forwarding-ebpf.ts)
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Child } from "./forwarding-child.js";
import { benchForwardingEbpf } from "./forwarding-ebpf.js";
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
  buildUdpFlood,
  DIRECTION_LABEL,
  type FloodRun,
  floodRows,
  floodVariants,
  fmtRate,
  forwarderCpu,
  latencyRows,
  measureVariants,
  THROUGHPUT_MS,
  THROUGHPUT_REPS,
  type Variant,
} from "./forwarding-variants.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);

/** User space (the proxy, the bare relays, direct), then the --ebpf rows measured in a namespace of their own. */
export async function benchForwarding(): Promise<BenchRow[]> {
  const buildDir = await mkdtemp(join(tmpdir(), "tbt-udp-flood-"));
  try {
    const floodBinary = await buildUdpFlood(buildDir);
    // The eBPF run first: if the fast path fails, it fails loudly within seconds, not after the rest.
    const ebpfRows = await benchForwardingEbpf(floodBinary);
    const rows = await benchForwardingUserSpace(floodBinary);
    return [...rows, ...ebpfRows];
  } finally {
    await rm(buildDir, { recursive: true, force: true });
  }
}

async function benchForwardingUserSpace(floodBinary: string | null): Promise<BenchRow[]> {
  const { keys, wg, peer, cfg } = await openBenchEnds();
  const children: Child[] = [];
  let socketsClosed = false;
  try {
    const proxy = await Child.start({ ...cfg, mode: "proxy" });
    children.push(proxy);
    const relay = await Child.start({ ...cfg, mode: "relay" });
    children.push(relay);
    const relaySync = await Child.start({ ...cfg, mode: "relay-sync-lookup" });
    children.push(relaySync);
    const { peerSide } = await handshake(wg, peer, proxy.ready.wgSide, keys);

    const toPeer = transportRing(PEER_INDEX, 1024);
    const toWg = transportRing(WG_INDEX, 1024);
    const direct = { out: { address: HOST, port: cfg.peerPort }, in: { address: HOST, port: cfg.wgPort } };
    const routes = {
      direct,
      proxy: { out: proxy.ready.wgSide, in: peerSide },
      catchAll: { out: proxy.ready.catchAll!, in: peerSide },
      relay: { out: relay.ready.wgSide, in: relay.ready.peerSide },
      relaySync: { out: relaySync.ready.wgSide, in: relaySync.ready.peerSide },
    };
    type Name = keyof typeof routes;
    const childOf: Partial<Record<Name, Child>> = { proxy, catchAll: proxy, relay, relaySync };

    // Throughput, one direction at a time; every variant once per repetition, so drift hits all alike.
    const variants: Array<Variant<Name>> = [
      { route: "direct", dir: "out" },
      { route: "proxy", dir: "out" },
      { route: "catchAll", dir: "out" },
      { route: "relay", dir: "out" },
      { route: "relaySync", dir: "out" },
      { route: "direct", dir: "in" },
      { route: "proxy", dir: "in" },
      { route: "relay", dir: "in" },
      { route: "relaySync", dir: "in" },
    ];
    const only = process.env.TBT_BENCH_FWD_ONLY;
    if (only) variants.splice(0, variants.length, ...variants.filter((v) => `${v.route}/${v.dir}` === only));
    const runs = await measureVariants(variants, childOf, (route, dir) =>
      dir === "out"
        ? flow(wg, routes[route].out, peer, toPeer, THROUGHPUT_MS)
        : flow(peer, routes[route].in, wg, toWg, THROUGHPUT_MS),
    );
    const results = new Map(
      [...runs].map(([key, r]) => [
        key,
        {
          flows: r.map((x) => x.result),
          cpuPerDatagram: r.map(forwarderCpu).filter((c): c is number => c !== null),
        },
      ]),
    );

    const lat = await alternatingLatency(wg, peer, routes.direct, routes.proxy);

    // Direct and the proxy again with the C generator, which leaves the proxy more of the CPU.
    let floods = new Map<string, FloodRun[]>();
    if (floodBinary && !only) {
      wg.close();
      peer.close();
      socketsClosed = true;
      const floodOf = variants.filter((v) => v.route === "direct" || v.route === "proxy");
      floods = await floodVariants(
        floodBinary,
        floodOf,
        routes,
        { wg: cfg.wgPort, peer: cfg.peerPort },
        { proxy },
      );
    }

    const rows: BenchRow[] = [];
    const label: Record<Name, string> = {
      direct: "direct (no proxy)",
      proxy: "through the proxy",
      catchAll: "through the proxy, via catch-all",
      relay: "bare Node relay",
      relaySync: "bare Node relay, sync lookup",
    };
    for (const { route, dir } of variants) {
      const entry = results.get(`${route}/${dir}`);
      if (!entry) continue;
      const rates = entry.flows.map((f) => f.rate);
      const sent = entry.flows.reduce((s, f) => s + f.sent, 0);
      const lost = entry.flows.reduce((s, f) => s + f.lost, 0);
      const cpu = entry.cpuPerDatagram.length ? median(entry.cpuPerDatagram) : null;
      rows.push({
        name: `fwd ${DIRECTION_LABEL[dir]}, ${label[route]}`,
        value: median(rates),
        unit: "datagrams/s",
        note: [
          `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")}), best ${fmtRate(Math.max(...rates))}`,
          `lost ${lost} of ${sent}`,
          // What one core could forward if the forwarder had it to itself.
          cpu === null
            ? ""
            : `forwarder CPU ${cpu.toFixed(1)} us/datagram (${fmtRate(1e6 / cpu)}/s per core)`,
        ]
          .filter(Boolean)
          .join("; "),
      });
    }
    for (const dir of ["out", "in"] as const) {
      const through = results.get(`proxy/${dir}`)?.flows.map((f) => f.rate);
      const base = results.get(`direct/${dir}`)?.flows.map((f) => f.rate);
      if (!through || !base) continue;
      // Each repetition's runs were seconds apart: their ratio is the least disturbed by other load.
      const ratios = through.map((t, i) => t / base[i]!);
      rows.push({
        name: `fwd ${DIRECTION_LABEL[dir]}: proxy / direct`,
        value: median(ratios),
        unit: "x",
        note: `median of per-repetition ratios (${ratios.map((r) => r.toFixed(2)).join(", ")}); target >= 200k datagrams/s through the proxy`,
      });
    }
    rows.push(
      ...floodRows(floods, variants, label, "proxy", (route, runs) => {
        const cpu = runs.map(forwarderCpu).filter((c): c is number => c !== null);
        return route === "proxy" && cpu.length
          ? `forwarder CPU ${median(cpu).toFixed(1)} us/datagram (${fmtRate(1e6 / median(cpu))}/s per core)`
          : "";
      }),
    );
    rows.push(
      ...latencyRows(lat, {
        directSuffix: "",
        through: "proxy",
        added: "added",
        addedNote: "target <= 50 us",
      }),
    );
    return rows;
  } finally {
    for (const child of children) await child.stop();
    if (!socketsClosed) {
      wg.close();
      peer.close();
    }
  }
}

if (process.argv[1] === THIS_FILE) {
  console.log(formatTable(await benchForwarding()));
}
