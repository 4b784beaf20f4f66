// Relayed paths recovering from TURN failures, measured in ProductLabs (network namespaces, nftables NAT
// routers, real coturn and wireguard-go, the built Tunnelbore), one lab per TURN topology of
// test/lab/turn-topologies.ts: a and b behind symmetric NATs, c behind a port-restricted one talking to
// b, both pairs relayed.
//
// Gap: `ping -i 0.1` a -> b and c -> b through WireGuard; the time from the last reply before the event
// to the first reply after it. Events:
// - coturn killed and started again (every allocation, permission and nonce lost), in every topology;
// - both NAT routers of a relayed symmetric pair lose their mappings while it pings: conntrack flushed
//   on both at once, and, as a router reboot does, NAT rulesets reloaded and conntrack flushed; pinging
//   one way (as in ../shared/FINDINGS.md: the pinged side then sends nothing) and each way. Each such
//   event waits until the introduction connections have been up for 6 s, as before a rare event, then
//   a random 0-10 s (its phase against the clients' keepalive pings).
//   npm run build && npx tsx bench/turn-recovery.ts
// TBT_BENCH_RUNS=N coturn restarts per topology (default 3), TBT_BENCH_MAPPING_RUNS=N NAT events of each
// kind (default 5); TBT_BENCH_ONLY=TEXT only topologies whose name contains TEXT; TBT_BENCH_LOGS=DIR
// keeps every Tunnelbore's log there.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { teardownAll } from "../test/lab/netns.js";
import { ContinuousPing } from "../test/lab/ping.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import {
  RELAYED_PAIRS,
  relayedPairs,
  TURN_TOPOLOGIES,
  type TurnTopology,
} from "../test/lab/turn-topologies.js";
import { waitFor } from "../test/support/wait-for.js";
import { labPreflight } from "./lab-preflight.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const RUNS = Number(process.env.TBT_BENCH_RUNS ?? 3);
const PING_INTERVAL_MS = 100;
const TARGET_TURN_RESTART_MS = 5000;
const TARGET_MAPPINGS_LOST_MS = 3000;
/** intro-client.ts resets its reconnect backoff after 5 s up. */
const STABLE_INTRO_MS = 6000;
/** The clients ping the introduction server every 10 s (half the server's 20 s keepalive). */
const CLIENT_PING_MS = 10_000;
const MAPPING_RUNS = Number(process.env.TBT_BENCH_MAPPING_RUNS ?? 5);
/** Where the NAT-mapping events run (the FINDINGS setup, and a TURN host without a default route). */
const MAPPING_TOPOLOGIES = ["own host, default route", "own host, no default route"];

function log(text: string): void {
  process.stderr.write(`[turn-recovery] ${text}\n`);
}

/** The time from the last reply at or before `at` to the first one after it (ms). */
function gapAcross(ping: ContinuousPing, at: number): number {
  const before = ping.replies.filter((r) => r <= at).at(-1);
  const after = ping.replies.find((r) => r > at);
  if (before === undefined || after === undefined) throw new Error("no replies around the event");
  return after - before;
}

/** Who pings whom: [from, to]. */
type Direction = readonly [string, string];
const EVERY_PAIR: Direction[] = RELAYED_PAIRS.map(([from, to]) => [from, to]);

/** Pings in every direction given, runs `event`, waits until all flow again; the gap of each. */
async function measureGaps(
  lab: ProductLab,
  directions: Direction[],
  event: () => Promise<void>,
): Promise<number[]> {
  const pings = directions.map(
    ([from, to]) => new ContinuousPing(lab.host(from).ns, lab.host(to).tunnelAddress, PING_INTERVAL_MS),
  );
  try {
    await waitFor(() => pings.every((p) => p.receivedCount >= 10), {
      what: "pings flowing on every pair",
      timeoutMs: 20_000,
    });
    const at = Date.now();
    await event();
    await waitFor(() => pings.every((p) => p.receivedSince(at) >= 5), {
      what: "pings answered again on every pair",
      timeoutMs: 60_000,
    });
    return pings.map((p) => gapAcross(p, at));
  } finally {
    await Promise.all(pings.map((p) => p.stop()));
  }
}

/**
 * Every host's introduction connection up for STABLE_INTRO_MS: a NAT that loses its mappings is rare,
 * and a connection that lived this long reconnects without backoff (intro-client.ts).
 */
async function introSettled(lab: ProductLab): Promise<boolean> {
  for (const host of ["a", "b", "c"]) {
    const intro = (await lab.status(host)).intro;
    if (intro?.state !== "connected" || Date.now() - intro.since < STABLE_INTRO_MS) return false;
  }
  return true;
}

/** Every pair relayed on both sides (status), as after connecting. */
async function allRelayed(lab: ProductLab): Promise<boolean> {
  for (const [from, to] of RELAYED_PAIRS) {
    if ((await lab.peerStatus(from, to)).pathKind !== "relay") return false;
    if ((await lab.peerStatus(to, from)).pathKind !== "relay") return false;
  }
  return true;
}

function row(name: string, directions: Direction[], gaps: number[][], target: number): BenchRow {
  const all = gaps.flat();
  const perPair = directions.map(([from, to], i) => `${from}-${to} ${gaps.map((g) => g[i]).join(", ")}`);
  return {
    name,
    value: median(all),
    unit: "ms",
    note: `median; max ${Math.max(...all)}; ${gaps.length} runs: ${perPair.join("; ")}; target <= ${target}`,
  };
}

async function benchTopology(topology: TurnTopology, rows: BenchRow[]): Promise<void> {
  const started = Date.now();
  const lab = await ProductLab.create(relayedPairs(topology.turn));
  try {
    for (const [from, to] of RELAYED_PAIRS) await lab.waitForPing(from, to, 40_000);
    await waitFor(() => allRelayed(lab), { what: "every pair relayed", timeoutMs: 10_000 });
    log(`${topology.name}: lab up and relayed in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const restarts: number[][] = [];
    for (let i = 0; i < RUNS; i++) {
      restarts.push(
        await measureGaps(lab, EVERY_PAIR, () => Promise.all(lab.coturns.map((c) => c.restart())).then()),
      );
      log(`${topology.name}: coturn restart ${i + 1}: ${restarts.at(-1)?.join(", ")} ms`);
      await waitFor(() => allRelayed(lab), { what: "relayed again", timeoutMs: 20_000 });
    }
    rows.push(row(`coturn restarted, ${topology.name}`, EVERY_PAIR, restarts, TARGET_TURN_RESTART_MS));

    if (MAPPING_TOPOLOGIES.includes(topology.name)) {
      const flush = async () => {
        await Promise.all(["a", "b"].map((r) => lab.lab.flushConntrack(r)));
      };
      const reload = async () => {
        await Promise.all(
          ["a", "b"].map(async (r) => {
            await lab.lab.setNat(r, "symmetric");
            await lab.lab.flushConntrack(r);
          }),
        );
      };
      // The pair whose NATs both lose their mappings: a -> b as in FINDINGS (b then sends nothing), and
      // each way.
      const oneWay: Direction[] = [["a", "b"]];
      const eachWay: Direction[] = [
        ["a", "b"],
        ["b", "a"],
      ];
      const events: Array<[string, () => Promise<void>, Direction[]]> = [
        ["both NATs' conntrack flushed", flush, oneWay],
        ["both NATs reloaded (ruleset and conntrack)", reload, oneWay],
        ["both NATs' conntrack flushed, pinging each way", flush, eachWay],
      ];
      for (const [what, event, directions] of events) {
        const gaps: number[][] = [];
        for (let i = 0; i < MAPPING_RUNS; i++) {
          await waitFor(() => introSettled(lab), {
            what: "introduction connections settled",
            timeoutMs: 30_000,
          });
          // A random phase against the clients' pings to the introduction server: a side that sends
          // nothing notices its dead connection only at its next one.
          await new Promise((resolve) => setTimeout(resolve, Math.random() * CLIENT_PING_MS));
          gaps.push(await measureGaps(lab, directions, event));
          log(`${topology.name}: ${what} ${i + 1}: ${gaps.at(-1)?.join(", ")} ms`);
          await waitFor(() => allRelayed(lab), { what: "relayed again", timeoutMs: 20_000 });
        }
        rows.push(row(`${what}, ${topology.name}`, directions, gaps, TARGET_MAPPINGS_LOST_MS));
      }
    }
  } finally {
    const dir = process.env.TBT_BENCH_LOGS;
    if (dir) {
      const tag = topology.name.replace(/[^a-z0-9]+/gi, "-");
      for (const host of ["a", "b", "c"]) {
        writeFileSync(`${dir}/${tag}-${host}.log`, lab.host(host).tunnelbore?.process.output() ?? "");
      }
    }
    await lab.teardown();
  }
}

export async function benchTurnRecovery(): Promise<BenchRow[]> {
  await labPreflight("TURN recovery");
  const only = process.env.TBT_BENCH_ONLY;
  const rows: BenchRow[] = [];
  try {
    for (const topology of TURN_TOPOLOGIES) {
      if (only && !topology.name.includes(only)) continue;
      await benchTopology(topology, rows);
    }
    return rows;
  } finally {
    await teardownAll();
  }
}

if (process.argv[1] === THIS_FILE) {
  const rows = await benchTurnRecovery();
  process.stdout.write(`${formatTable(rows)}\n`);
  process.exit(0);
}
