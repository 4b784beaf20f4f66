// Cold start (issue 11 item 2): two Tunnelbores started at the same moment, behind two EIM NATs, both
// online at the introduction server; a ping through WireGuard starts as soon as both WireGuards point
// at loopback. Measured: the time from the first echo request to the first reply. A handshake message
// lost on the way costs WireGuard's 5 s retry, so the distribution shows every loss.
//
// One lab for every run; before each run WireGuard forgets its peer (removed and re-added without an
// endpoint, as before Tunnelbore ever ran) on both hosts, and Tunnelbore is stopped: every run starts
// with no session, no path and no ICE state. The ping direction alternates (a is ICE-controlling or
// controlled as its key decides, so both roles initiate the handshake).
//   npm run build && npx tsx bench/cold-start.ts        (TBT_COLD_STARTS=N for another count than 20)
import { fileURLToPath } from "node:url";
import { forgetAll, startTogether } from "../test/lab/cold-start.js";
import { nsRun, teardownAll } from "../test/lab/netns.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { countHandshakes, type HandshakeCounts } from "../test/lab/wireguard-messages.js";
import { labPreflight } from "./lab-preflight.js";
import { median, percentile } from "./statistics.js";
import type { BenchRow } from "./table.js";
import { formatTable } from "./table.js";

const RUNS = Number(process.env.TBT_COLD_STARTS ?? 20);
const TARGET_MS = 1000;
/** Ping interval while waiting for the first reply (wireguard-go stages up to 128 packets). */
const PING_INTERVAL_MS = 10;
const PING_DEADLINE_S = 12;
const WG_PORT = 51820;
const HOSTS = ["a", "b"] as const;

function log(text: string): void {
  process.stderr.write(`[cold-start] ${text}\n`);
}

export interface ColdStartSample {
  /** From spawning both Tunnelbores to both WireGuards pointing at loopback. */
  endpointsMs: number;
  /** From the first echo request to the first reply. */
  firstReplyMs: number;
  seq: number;
  from: string;
  /** Initiations the pinging side's WireGuard sent until the reply (1: no retry). */
  initiations: number;
  /** `no-path` drops on both sides together. */
  noPathDrops: number;
}

/**
 * Pings every 10 ms until the first reply: the time from the first request. Answered, the first
 * request's round trip is exact (WireGuard queues it until the handshake); a later one's reply time
 * (ping -D) is taken from the moment ping was started (a few ms early): under load ping sends less
 * often than asked, so counting intervals would come out short.
 */
async function pingUntilReply(ns: string, address: string): Promise<{ ms: number; seq: number }> {
  const started = Date.now();
  const out = await nsRun(ns, "ping", [
    "-n",
    "-D",
    "-i",
    String(PING_INTERVAL_MS / 1000),
    "-c",
    "1",
    "-w",
    String(PING_DEADLINE_S),
    address,
  ]);
  const m = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms/m.exec(out);
  if (!m) throw new Error(`no ping reply from ${address}: ${out}`);
  const seq = Number(m[2]);
  return { ms: seq === 1 ? Number(m[3]) : Number(m[1]) * 1000 - started, seq };
}

/** The log lines that tell a cold start's story, with times relative to `t0` (for slow runs). */
function story(lab: ProductLab, t0: number): string {
  const wanted = /path changed|ice pair nominated|handshake|pointed WireGuard|peer online/;
  const lines: string[] = [];
  for (const name of HOSTS) {
    for (const l of lab.host(name).tunnelbore?.logs() ?? []) {
      const msg = String(l.msg ?? "");
      if (!wanted.test(msg)) continue;
      const at = Number(l.time) - t0;
      lines.push(`${String(at).padStart(6)} ms ${name}: ${msg} ${l.kind ?? ""} ${l.remote ?? ""}`.trimEnd());
    }
  }
  return lines.sort((x, y) => Number.parseInt(x, 10) - Number.parseInt(y, 10)).join("\n");
}

async function coldStart(
  lab: ProductLab,
  run: number,
  counters: Map<string, () => Promise<HandshakeCounts>>,
): Promise<ColdStartSample> {
  const [from, to] = run % 2 === 0 ? (["a", "b"] as const) : (["b", "a"] as const);
  const t0 = Date.now();
  const { ready } = await startTogether(lab, HOSTS);
  const endpointsMs = Date.now() - t0;
  const reply = await pingUntilReply(lab.host(from).ns, lab.host(to).tunnelAddress);
  await ready;
  const sent = await counters.get(from)!();
  let noPathDrops = 0;
  for (const h of HOSTS) noPathDrops += (await lab.status(h)).drops["no-path"];
  const sample: ColdStartSample = {
    endpointsMs,
    firstReplyMs: reply.ms,
    seq: reply.seq,
    from,
    initiations: sent.initiationsSent,
    noPathDrops,
  };
  log(
    `#${run + 1} ${from}->${to}: first reply ${reply.ms.toFixed(0)} ms (seq ${reply.seq}), endpoints at ${endpointsMs} ms, ${sent.initiationsSent} initiation(s), no-path drops ${noPathDrops}`,
  );
  if (reply.ms >= TARGET_MS || process.env.TBT_COLD_START_STORY)
    log(`story of #${run + 1}:\n${story(lab, t0)}`);
  return sample;
}

export async function benchColdStart(): Promise<BenchRow[]> {
  await labPreflight("cold-start");
  let lab: ProductLab | null = null;
  try {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
      startTunnelbores: false,
    });
    const samples: ColdStartSample[] = [];
    for (let run = 0; run < RUNS; run++) {
      await forgetAll(lab, HOSTS);
      const counters = new Map<string, () => Promise<HandshakeCounts>>();
      for (const h of HOSTS) counters.set(h, await countHandshakes(lab.host(h).ns, WG_PORT));
      samples.push(await coldStart(lab, run, counters));
      for (const h of HOSTS) await lab.stopTunnelbore(h);
    }
    return coldStartRows(samples);
  } finally {
    await lab?.teardown().catch(() => undefined);
    await teardownAll();
  }
}

function coldStartRows(samples: ColdStartSample[]): BenchRow[] {
  const ms = samples.map((s) => s.firstReplyMs);
  const under = ms.filter((v) => v < TARGET_MS).length;
  const retried = samples.filter((s) => s.initiations > 1).length;
  const list = ms.map((v) => v.toFixed(0)).join(", ");
  return [
    {
      name: "cold start: first reply, min",
      value: Math.min(...ms),
      unit: "ms",
      note: `${samples.length} cold starts of both Tunnelbores at once (EIM NATs, ping every ${PING_INTERVAL_MS} ms)`,
    },
    { name: "cold start: first reply, median", value: median(ms), unit: "ms" },
    { name: "cold start: first reply, p90", value: percentile(ms, 90), unit: "ms" },
    { name: "cold start: first reply, max", value: Math.max(...ms), unit: "ms", note: `all: ${list}` },
    {
      name: "cold start: runs under 1 s",
      value: under,
      unit: `of ${samples.length}`,
      note: `target: all; ${retried} run(s) needed a WireGuard retry (a 2nd initiation)`,
    },
    {
      name: "cold start: both endpoints at loopback, median",
      value: median(samples.map((s) => s.endpointsMs)),
      unit: "ms",
      note: "from spawning both Tunnelbores (when the ping starts)",
    },
    {
      name: "cold start: no-path drops",
      value: samples.reduce((n, s) => n + s.noPathDrops, 0),
      unit: "datagrams",
      note: "both sides, all runs",
    },
  ];
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const onSignal = () => void teardownAll().finally(() => process.exit(130));
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  console.log(formatTable(await benchColdStart()));
  process.exit(0);
}
