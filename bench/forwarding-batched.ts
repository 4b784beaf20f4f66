// User-space forwarding with batched UDP I/O (the native addon: recvmmsg/sendmmsg, GRO/GSO) against
// Node's dgram, in one run: the same WireGuardProxy + StaticPath in two child processes that differ only
// in their sockets' I/O (src/proxy/batched-udp.ts), on loopback, without the kernel fast path.
// Throughput with the C generator (bench/udp-flood.c; Node's own generator cannot send 250k/s), one
// direction at a time, alternating direct / native / dgram; the forwarder's CPU per datagram gives what
// one core forwards. Latency: ping-pong blocks alternating direct and each variant.
//   npx tsx bench/forwarding-batched.ts
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Child } from "./forwarding-child.js";
import { alternatingLatency, HOST, handshake, openBenchEnds } from "./forwarding-traffic.js";
import {
  buildUdpFlood,
  DIRECTION_LABEL,
  type FloodRun,
  floodVariants,
  fmtRate,
  forwarderCpu,
  latencyRows,
  THROUGHPUT_MS,
  THROUGHPUT_REPS,
  type Variant,
} from "./forwarding-variants.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
type Name = "direct" | "native" | "dgram";
const LABEL: Record<Name, string> = {
  direct: "direct (no proxy)",
  native: "proxy, batched I/O (native)",
  dgram: "proxy, dgram",
};

export async function benchForwardingBatched(): Promise<BenchRow[]> {
  const buildDir = await mkdtemp(join(tmpdir(), "tbt-udp-flood-"));
  const { keys, wg, peer, cfg } = await openBenchEnds();
  const children: Child[] = [];
  let socketsOpen = true;
  try {
    const floodBinary = await buildUdpFlood(buildDir);
    if (!floodBinary) throw new Error("the C generator (bench/udp-flood.c) is needed: install cc");
    const native = await Child.start({ ...cfg, mode: "proxy-native" });
    children.push(native);
    const dgram = await Child.start({ ...cfg, mode: "proxy-dgram" });
    children.push(dgram);
    // Each proxy's static path learns the peer, and the peer the static path's port.
    const nativePeerSide = (await handshake(wg, peer, native.ready.wgSide, keys)).peerSide;
    const dgramPeerSide = (await handshake(wg, peer, dgram.ready.wgSide, keys)).peerSide;
    const routes = {
      direct: { out: { address: HOST, port: cfg.peerPort }, in: { address: HOST, port: cfg.wgPort } },
      native: { out: native.ready.wgSide, in: nativePeerSide },
      dgram: { out: dgram.ready.wgSide, in: dgramPeerSide },
    };

    const latNative = await alternatingLatency(wg, peer, routes.direct, routes.native);
    const latDgram = await alternatingLatency(wg, peer, routes.direct, routes.dgram);

    // The C generator binds the fake WireGuard's and peer's ports itself.
    wg.close();
    peer.close();
    socketsOpen = false;
    const variants: Array<Variant<Name>> = (["out", "in"] as const).flatMap((dir) =>
      (["direct", "native", "dgram"] as const).map((route) => ({ route, dir })),
    );
    const floods = await floodVariants(
      floodBinary,
      variants,
      routes,
      { wg: cfg.wgPort, peer: cfg.peerPort },
      { native, dgram },
    );

    const rows: BenchRow[] = [];
    for (const { route, dir } of variants) {
      const runs = floods.get(`${route}/${dir}`) ?? [];
      rows.push(throughputRow(route, dir, runs));
    }
    for (const dir of ["out", "in"] as const) {
      const perCore = (name: Name) => {
        const cpu = (floods.get(`${name}/${dir}`) ?? [])
          .map(forwarderCpu)
          .filter((c): c is number => c !== null);
        return 1e6 / median(cpu);
      };
      rows.push({
        name: `fwd ${DIRECTION_LABEL[dir]}: native / dgram, per core`,
        value: perCore("native") / perCore("dgram"),
        unit: "x",
        note: `${fmtRate(perCore("native"))} vs ${fmtRate(perCore("dgram"))} datagrams/s per core of the forwarder; target >= 250k native`,
      });
    }
    rows.push(
      ...latencyRows(latNative, {
        directSuffix: " (native block)",
        through: "native",
        added: "added by native",
        addedNote: "target <= 30 us",
      }),
      ...latencyRows(latDgram, {
        directSuffix: " (dgram block)",
        through: "dgram",
        added: "added by dgram",
        addedNote: "",
      }),
    );
    return rows;
  } finally {
    for (const child of children) await child.stop();
    if (socketsOpen) {
      wg.close();
      peer.close();
    }
    await rm(buildDir, { recursive: true, force: true });
  }
}

function throughputRow(route: Name, dir: "out" | "in", runs: FloodRun[]): BenchRow {
  const rates = runs.map((r) => r.result.rate);
  const cpu = runs.map(forwarderCpu).filter((c): c is number => c !== null);
  return {
    name: `fwd ${DIRECTION_LABEL[dir]}, ${LABEL[route]}, C generator`,
    value: median(rates),
    unit: "datagrams/s",
    note: [
      `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")})`,
      `lost ${runs.reduce((a, r) => a + r.result.lost, 0)} of ${runs.reduce((a, r) => a + r.result.sent, 0)}`,
      cpu.length
        ? `forwarder CPU ${median(cpu).toFixed(2)} us/datagram (${fmtRate(1e6 / median(cpu))}/s per core)`
        : "",
    ]
      .filter(Boolean)
      .join("; "),
  };
}

if (process.argv[1] === THIS_FILE) {
  console.log(formatTable(await benchForwardingBatched()));
}
