// How bench/forwarding.ts measures and reports: variants (route and direction) run alternately, every
// one once per repetition, with the forwarder child's counters read around each run; the C generator
// (bench/udp-flood.c) as a second load; and the rows both make.
import { execFile } from "node:child_process";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import type { Child, ChildStats } from "./forwarding-child.js";
import {
  type Address,
  DATAGRAM_BYTES,
  HOST,
  LATENCY_BLOCKS,
  type LatencySamples,
  type Route,
  WARMUP_MS,
} from "./forwarding-traffic.js";
import { median, percentile } from "./statistics.js";
import type { BenchRow } from "./table.js";

export const THROUGHPUT_MS = Number(process.env.TBT_BENCH_FWD_MS ?? 2000);
export const THROUGHPUT_REPS = 4;
const UDP_FLOOD_SOURCE = join(fileURLToPath(new URL(".", import.meta.url)), "udp-flood.c");

const execFileAsync = promisify(execFile);

export const fmtRate = (r: number) => `${Math.round(r / 1000)}k`;

export type Direction = "out" | "in";

/** What each throughput row names: the two directions. */
export const DIRECTION_LABEL: Record<Direction, string> = {
  out: "WireGuard -> peer",
  in: "peer -> WireGuard",
};

export interface Variant<R extends string> {
  route: R;
  dir: Direction;
}

export interface VariantRun<R> {
  dir: Direction;
  result: R;
  /** The proxy child's counters around the run (absent for direct). */
  before?: ChildStats;
  after?: ChildStats;
}

/**
 * Every variant once per repetition, so drift hits all alike; the child's counters are read around each
 * run, and a child that dropped well-formed datagrams fails the benchmark.
 */
export async function measureVariants<Name extends string, R>(
  variants: Array<Variant<Name>>,
  childOf: Partial<Record<Name, Child>>,
  run: (route: Name, dir: Direction) => Promise<R>,
): Promise<Map<string, Array<VariantRun<R>>>> {
  const runs = new Map<string, Array<VariantRun<R>>>();
  for (let rep = 0; rep < THROUGHPUT_REPS; rep++) {
    for (const { route, dir } of variants) {
      const child = childOf[route];
      const before = await child?.stats();
      const result = await run(route, dir);
      const after = await child?.stats();
      if (before && after && after.dropped !== before.dropped) {
        throw new Error(`the proxy dropped ${after.dropped - before.dropped} well-formed datagrams`);
      }
      const key = `${route}/${dir}`;
      runs.set(key, [...(runs.get(key) ?? []), { dir, result, before, after }]);
    }
  }
  return runs;
}

/** The proxy child's CPU per datagram it forwarded during a run (us); null for direct. */
export function forwarderCpu({ dir, before, after }: VariantRun<unknown>): number | null {
  if (!before || !after) return null;
  const forwarded = dir === "out" ? after.tx - before.tx : after.rx - before.rx;
  return (after.cpuMicros - before.cpuMicros) / forwarded;
}

/** Datagrams the proxy forwarded in user space during a run: traffic minus the kernel's part, exact at any moment. */
export function userSpaceForwarded({ dir, before, after }: VariantRun<unknown>): number {
  const userSpace = (st: ChildStats | undefined) =>
    st ? (dir === "out" ? st.tx - st.kernelTx : st.rx - st.kernelRx) : 0;
  return userSpace(after) - userSpace(before);
}

// ---------------------------------------------------------------------------------------------------
// The C generator.

interface FloodResult {
  rate: number;
  sent: number;
  received: number;
  lost: number;
  /** The generator's and sink's CPU (both threads, including the kernel's work done on their behalf). */
  cpuUsPerDatagram: number;
}

export type FloodRun = VariantRun<FloodResult>;

/** Compiles bench/udp-flood.c into `dir`; null (with a note) when there is no C compiler. */
export async function buildUdpFlood(dir: string): Promise<string | null> {
  const binary = join(dir, "udp-flood");
  try {
    await execFileAsync("cc", ["-O2", "-Wall", "-pthread", "-o", binary, UDP_FLOOD_SOURCE], {
      timeout: 60_000,
    });
    return binary;
  } catch (err) {
    console.log(
      `note: forwarding with the C generator skipped: cc could not build ${UDP_FLOOD_SOURCE}: ${String(err)}`,
    );
    return null;
  }
}

/** One run of bench/udp-flood: type-4 datagrams from `from` to `to`, counted at `sink`. */
async function flood(
  binary: string,
  from: Address,
  to: Address,
  sink: Address,
  ms: number,
): Promise<FloodResult> {
  const args = [from, to, sink].flatMap((a) => [a.address, String(a.port)]);
  const { stdout } = await execFileAsync(
    binary,
    [...args, String(DATAGRAM_BYTES), String(WARMUP_MS), String(ms)],
    {
      timeout: WARMUP_MS + ms + 10_000,
    },
  );
  const r = JSON.parse(stdout) as Partial<FloodResult>;
  if (typeof r.rate !== "number" || typeof r.sent !== "number" || typeof r.received !== "number") {
    throw new Error(`udp-flood printed no result: ${stdout}`);
  }
  return {
    rate: r.rate,
    sent: r.sent,
    received: r.received,
    lost: r.lost ?? 0,
    cpuUsPerDatagram: r.cpuUsPerDatagram ?? 0,
  };
}

/** The C generator's runs (it binds the fake WireGuard's and peer's ports itself; callers close theirs first). */
export function floodVariants<Name extends string>(
  binary: string,
  variants: Array<Variant<Name>>,
  routes: Record<Name, Route>,
  ports: { wg: number; peer: number },
  childOf: Partial<Record<Name, Child>>,
): Promise<Map<string, FloodRun[]>> {
  const wg = { address: HOST, port: ports.wg };
  const peer = { address: HOST, port: ports.peer };
  return measureVariants(variants, childOf, (route, dir) =>
    dir === "out"
      ? flood(binary, wg, routes[route].out, peer, THROUGHPUT_MS)
      : flood(binary, peer, routes[route].in, wg, THROUGHPUT_MS),
  );
}

// ---------------------------------------------------------------------------------------------------
// Rows.

/** A row per variant and a ratio row per direction (`through` / direct) for the C generator's runs. */
export function floodRows<Name extends string>(
  runs: Map<string, FloodRun[]>,
  variants: Array<Variant<Name>>,
  label: Record<Name, string>,
  through: Name,
  note: (route: Name, runs: FloodRun[]) => string,
): BenchRow[] {
  const rows: BenchRow[] = [];
  for (const { route, dir } of variants) {
    const r = runs.get(`${route}/${dir}`);
    if (!r) continue;
    const rates = r.map((f) => f.result.rate);
    rows.push({
      name: `fwd ${DIRECTION_LABEL[dir]}, ${label[route]}, C generator`,
      value: median(rates),
      unit: "datagrams/s",
      note: [
        `median of ${THROUGHPUT_REPS} x ${THROUGHPUT_MS / 1000} s (${rates.map(fmtRate).join(", ")})`,
        `lost ${r.reduce((a, f) => a + f.result.lost, 0)} of ${r.reduce((a, f) => a + f.result.sent, 0)}`,
        `generator+sink CPU ${median(r.map((f) => f.result.cpuUsPerDatagram)).toFixed(1)} us/datagram`,
        note(route, r),
      ]
        .filter(Boolean)
        .join("; "),
    });
  }
  for (const dir of ["out", "in"] as const) {
    const t = runs.get(`${through}/${dir}`)?.map((f) => f.result.rate);
    const base = runs.get(`direct/${dir}`)?.map((f) => f.result.rate);
    if (!t || !base) continue;
    const ratios = t.map((x, i) => x / base[i]!);
    rows.push({
      name: `fwd ${DIRECTION_LABEL[dir]}: ${label[through]} / direct, C generator`,
      value: median(ratios),
      unit: "x",
      note: `median of per-repetition ratios (${ratios.map((x) => x.toFixed(2)).join(", ")}); target >= 200k datagrams/s through the proxy`,
    });
  }
  return rows;
}

/** One-way p50/p99 per leg, direct and through, and what `through` adds. */
export function latencyRows(
  lat: LatencySamples,
  names: { directSuffix: string; through: string; added: string; addedNote: string },
): BenchRow[] {
  const legs = { ab: "WireGuard -> peer", ba: "peer -> WireGuard" } as const;
  return (["ab", "ba"] as const).flatMap((leg): BenchRow[] => {
    const d = lat.direct[leg];
    const p = lat.through[leg];
    const n = `${p.length} round trips in ${LATENCY_BLOCKS} blocks alternating with direct`;
    return [
      { name: `lat ${legs[leg]} one way, direct p50${names.directSuffix}`, value: median(d), unit: "us" },
      {
        name: `lat ${legs[leg]} one way, direct p99${names.directSuffix}`,
        value: percentile(d, 99),
        unit: "us",
      },
      { name: `lat ${legs[leg]} one way, ${names.through} p50`, value: median(p), unit: "us", note: n },
      { name: `lat ${legs[leg]} one way, ${names.through} p99`, value: percentile(p, 99), unit: "us" },
      {
        name: `lat ${legs[leg]}: ${names.added} p50`,
        value: median(p) - median(d),
        unit: "us",
        note: names.addedNote,
      },
      {
        name: `lat ${legs[leg]}: ${names.added} p99`,
        value: percentile(p, 99) - percentile(d, 99),
        unit: "us",
      },
    ];
  });
}
