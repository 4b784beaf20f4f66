// intro-server --cluster (issue 15): 4 node processes on one Redis, on this machine. Holds N
// authenticated clients spread over the nodes (RSS per node and per client), relays envelopes between
// pairs on different nodes at a steady 10,000/s (one-way p50/p99), then SIGKILLs one node: how long
// until its clients are served by the others, and how many envelopes between clients on the surviving
// nodes were lost meanwhile. The steady phase's PAIRS pairs live in PAIR_PROCS processes of their own
// (bench/intro-cluster-pairs.ts), the failover phase's in this process; the other clients in holder
// processes of at most HOLDER_CLIENTS each (bench/intro-cluster-holder.ts).
// Clients come from 127.0.0.2-127.0.0.201, as from many hosts.
//   npx tsx bench/intro-cluster.ts   (about 2 minutes)
//   INTRO_CLUSTER_CLIENTS=N            clients in all (default 12,000)
//   INTRO_CLUSTER_RATE=R               envelopes/s in the latency phase (default 10,000)
//   INTRO_CLUSTER_KILL_RATE=R          envelopes/s between survivors while a node dies (default R)
//   INTRO_BENCH_SERVER_ENTRY=dist/intro-server/main.js   compiled JS rather than tsx
//   INTRO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"   node flags for the nodes
//   INTRO_CLUSTER_TRACE=0              nodes without TUNNELBORE_INTRO_TRACE=1 (default: with it, each
//                                      envelope's latency splits into stages; the nodes' loop delays)
//   INTRO_CLUSTER_PAIR_PROCS=N         the measured pairs in N processes of their own (default 2; 0: here)
//   INTRO_CLUSTER_WARMUP_MS=MS         not measured at the stream's start (default 6,000)
//   INTRO_CLUSTER_STEADY_ONLY=1        no node killed after the steady phase
//   INTRO_CLUSTER_GENERATOR_NICE=N     the load generator's processes at nice N, the nodes and Redis at 0
// The steady phase reports each stage's p50/p99 (bench/intro-cluster-pairs.ts), the loop delays of the
// load generator's processes and of the nodes, each process's CPU and its main thread's wait for a CPU
// (/proc/PID/schedstat) over the stream.
// Each node holds N/4 sockets, and N/3 once one has died: with the hard open-file limit of 20,000 here
// (ulimit -Hn; raising it needs CAP_SYS_RESOURCE), N is at most ~58,000.
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { availableParallelism, setPriority } from "node:os";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { freePort } from "../test/support/free-port.js";
import { redisServerArgs } from "../test/support/redis-server-args.js";
import { BenchClient, connectAll, type MoveTimeline, nodeOfClient, sleep } from "./intro-cluster-client.js";
import { describeMoves, describeTcpCounters, EngineWatch, tcpCounters } from "./intro-cluster-failover.js";
import type { HolderReport, HolderStart, HolderWindow } from "./intro-cluster-holder.js";
import {
  monoNow,
  type PairsMessage,
  type PairsReport,
  SAMPLE_WIDTH,
  STAGES,
  type StreamResult,
  streamPairs,
} from "./intro-cluster-pairs.js";
import { processCpuSeconds, rssBytes } from "./proc-stats.js";
import { percentile } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const NODES = 4;
const CLIENTS = Number(process.env.INTRO_CLUSTER_CLIENTS ?? 12_000);
const PAIRS = 100;
const HOLDER_CLIENTS = 15_000;
const RATE_PER_SECOND = Number(process.env.INTRO_CLUSTER_RATE ?? 10_000);
const KILL_RATE_PER_SECOND = Number(process.env.INTRO_CLUSTER_KILL_RATE ?? RATE_PER_SECOND);
/**
 * INTRO_CLUSTER_WARMUP_MS: envelopes sent this long after the stream began are not measured. 6 s: the
 * first 3-5 s of a 10,000/s stream from cold nodes had p99s of 0.5-1.5 s on this machine, the seconds
 * after 4-50 ms (docs/benchmarks.md, "where the steady p99 goes"); until 2026-12-06, 1 s.
 */
const WARMUP_MS = Number(process.env.INTRO_CLUSTER_WARMUP_MS ?? 6_000);
/** INTRO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR": node flags for the nodes (ended by SIGTERM then). */
const NODE_ARGS = (process.env.INTRO_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
/** INTRO_BENCH_HOLDER_ARGS: node flags for the holder processes (ended by SIGTERM when given). */
const HOLDER_ARGS = (process.env.INTRO_BENCH_HOLDER_ARGS ?? "").split(" ").filter(Boolean);
const MEASURE_MS = 10_000;
/**
 * INTRO_CLUSTER_PAIR_PROCS=N: the steady phase's PAIRS pairs in N processes of their own
 * (bench/intro-cluster-pairs.ts); 0: in this one (the method before 2026-12-06). Here, sending and
 * receiving 10,000/s, this loop ran late (p50 7-18 ms), its sends went out in catch-up bursts, and
 * the nodes' stages had a p99 of 70-120 ms against 12-20 ms with 2 processes, at the same CPU.
 * The failover phase's pairs are this process's either way.
 */
const PAIR_PROCS = Number(process.env.INTRO_CLUSTER_PAIR_PROCS ?? 2);
/** The steady phase's clients: this process's PAIRS pairs, or PAIRS more in the pair processes. */
const HELD_FROM = PAIRS * 2 * (PAIR_PROCS ? 2 : 1);
/** INTRO_CLUSTER_TRACE=0: the nodes without TUNNELBORE_INTRO_TRACE (no stage times, no loop lines). */
const TRACE = process.env.INTRO_CLUSTER_TRACE !== "0";
/** INTRO_CLUSTER_GENERATOR_NICE=N: the load generator's processes at nice N (the nodes and Redis at 0). */
const GENERATOR_NICE = Number(process.env.INTRO_CLUSTER_GENERATOR_NICE ?? 0);
/** INTRO_CLUSTER_STEADY_ONLY=1: no node killed after the steady phase. */
const STEADY_ONLY = process.env.INTRO_CLUSTER_STEADY_ONLY === "1";

interface Proc {
  child: ChildProcess;
  pid: number;
  url: string;
}

/** The run's phase, for the nodes' notable log lines. */
let phase = "start";
const runStarted = Date.now();
/** The nodes' stalls, late heartbeats and false deaths, printed at the end with the engine's slow log. */
const notable: string[] = [];
const NOTABLE = /event loop stalled|heartbeat late|taken for dead|left the cluster/;
/** The nodes' TRACE-LOOP lines (TUNNELBORE_INTRO_TRACE): each second's loop delay and route round trips. */
const nodeLoops: NodeLoop[] = [];

/** Forwards a node's log lines to stderr and keeps the notable ones, tagged with node and phase. */
function watchLog(child: ChildProcess, index: number): void {
  let rest = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith("TRACE-LOOP ")) {
        nodeLoops.push({ node: index, ...(JSON.parse(line.slice(11)) as Omit<NodeLoop, "node">) });
        continue;
      }
      process.stderr.write(`${line}\n`);
      if (!NOTABLE.test(line)) continue;
      const at = ((Date.now() - runStarted) / 1000).toFixed(1);
      notable.push(`node ${index} ${phase} +${at}s ${line.replace(/"(level|time|pid|name)":[^,]*,/g, "")}`);
    }
  });
}

function spawnNode(redisUrl: string, index: number): Promise<Proc> {
  const child = spawn(
    process.execPath,
    [
      ...NODE_ARGS,
      // INTRO_BENCH_SERVER_ENTRY=dist/intro-server/main.js measures compiled JS without tsx (as bench/intro.ts).
      ...(process.env.INTRO_BENCH_SERVER_ENTRY
        ? [process.env.INTRO_BENCH_SERVER_ENTRY]
        : ["--import", "tsx", "intro-server/main.ts"]),
      "--listen",
      "127.0.0.1:0",
      "--no-stun",
      "--cluster",
      redisUrl,
      // The bench's clients share 200 addresses: lift the caps above the bench's load.
      "--max-pending-per-address",
      "400",
      "--max-pending",
      "4096",
      "--max-conns-per-address",
      String(CLIENTS * 2),
      "--max-conns",
      String(CLIENTS * 2),
      "--max-peers-per-address",
      String(CLIENTS * 8),
    ],
    {
      cwd: projectRoot,
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, TUNNELBORE_LOG: "warn", ...(TRACE ? { TUNNELBORE_INTRO_TRACE: "1" } : {}) },
    },
  );
  watchLog(child, index);
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (ws:\/\/\S+)/.exec(output);
      if (match) resolve({ child, pid: child.pid!, url: match[1]! });
    });
    child.once("exit", () => reject(new Error("node exited before listening")));
  });
}

/** A holder process for clients from..to; resolves once they are all connected. */
function spawnHolder(
  start: HolderStart,
  onReport: (report: HolderReport, pid: number) => void,
  holders: ChildProcess[],
): Promise<ChildProcess> {
  const child = spawn(
    process.execPath,
    [...HOLDER_ARGS, "--import", "tsx", "bench/intro-cluster-holder.ts"],
    {
      cwd: projectRoot,
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    },
  );
  holders.push(child);
  return new Promise((resolve, reject) => {
    child.on("message", (report: HolderReport) => {
      if (report.type === "ready") child.send(start);
      else if (report.type === "connected") resolve(child);
      else onReport(report, child.pid!);
    });
    child.once("exit", (code) => reject(new Error(`holder exited (${code}) before connecting`)));
  });
}

export async function benchIntroCluster(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const redisPort = await freePort();
  const redis = spawn(
    "redis-server",
    // What holds the engine up: commands over 10 ms, and latency events over 100 ms.
    redisServerArgs(redisPort, [
      "--slowlog-log-slower-than",
      "10000",
      "--slowlog-max-len",
      "1000",
      "--latency-monitor-threshold",
      "100",
    ]),
    { stdio: "ignore" },
  );
  await sleep(300);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const nodes: Proc[] = [];
  const holders: ChildProcess[] = [];
  const pairChildren: ChildProcess[] = [];
  const pairClients: BenchClient[] = [];
  try {
    for (let i = 0; i < NODES; i++) nodes.push(await spawnNode(redisUrl, i));
    const urls = nodes.map((node) => node.url);
    // The load generator (this process, and the holders and pair processes it spawns from now) below the
    // nodes and Redis in the scheduler's order, when asked.
    if (GENERATOR_NICE) setPriority(GENERATOR_NICE);
    await sleep(1_000);
    const idleRss = nodes.map((node) => rssBytes(node.pid));
    const redisIdle = rssBytes(redis.pid!);

    // Clients in pairs on neighbouring nodes, each pair declaring each other: the first PAIRS pairs
    // here, the rest in holders.
    for (let i = 0; i < PAIRS * 2; i++) pairClients.push(new BenchClient(i));
    for (let i = 0; i < PAIRS * 2; i += 2) {
      pairClients[i]!.peers = [pairClients[i + 1]!.publicKey];
      pairClients[i + 1]!.peers = [pairClients[i]!.publicKey];
    }
    const started = Date.now();
    phase = "connect";
    console.error(`connecting ${CLIENTS} clients`);
    const moves: MoveTimeline[] = [];
    let retries = 0;
    let firstClose = 0;
    /** Each holder's CPU and longest loop delay since its first close, as last reported. */
    const holderLoad = new Map<number, { cpuMs: number; loopMaxMs: number }>();
    const onReport = (report: HolderReport, pid: number) => {
      if (report.type !== "back") return;
      holderLoad.set(pid, { cpuMs: report.cpuMs, loopMaxMs: report.loopMaxMs });
      moves.push(...report.moves);
      retries += report.retries;
      if (report.firstClose)
        firstClose = firstClose ? Math.min(firstClose, report.firstClose) : report.firstClose;
    };
    const connectCpuBefore = nodes.map((node) => processCpuSeconds(node.pid));
    const holding: Array<Promise<ChildProcess>> = [];
    const pairProcs: PairProc[] = [];
    for (let k = 0; k < PAIR_PROCS; k++) {
      const count = Math.floor(PAIRS / PAIR_PROCS) + (k < PAIRS % PAIR_PROCS ? 1 : 0);
      const from = PAIRS * 2 + 2 * (k * Math.floor(PAIRS / PAIR_PROCS) + Math.min(k, PAIRS % PAIR_PROCS));
      pairProcs.push(await spawnPairProc(urls, from, count, pairChildren));
    }
    for (let from = HELD_FROM; from < CLIENTS; from += HOLDER_CLIENTS)
      holding.push(
        spawnHolder({ urls, from, to: Math.min(CLIENTS, from + HOLDER_CLIENTS) }, onReport, holders),
      );
    await connectAll(pairClients, urls, (i) => nodeOfClient(i, NODES));
    await Promise.all(holding);
    const connectSeconds = (Date.now() - started) / 1000;
    const connectCpu =
      nodes.reduce((sum, node, i) => sum + processCpuSeconds(node.pid) - connectCpuBefore[i]!, 0) / CLIENTS;
    await sleep(3_000);
    const loadedRss = nodes.map((node) => rssBytes(node.pid));
    const perNode = loadedRss.map((rss, i) => rss - idleRss[i]!);
    const perClient = perNode.reduce((a, b) => a + b, 0) / CLIENTS;
    rows.push({
      name: "clients held (4 nodes)",
      value: CLIENTS,
      unit: "",
      note: `connected in ${connectSeconds.toFixed(1)} s; nodes' CPU ${(connectCpu * 1e3).toFixed(2)} ms per login`,
    });
    for (let i = 0; i < NODES; i++) {
      rows.push({
        name: `node ${i} RSS`,
        value: loadedRss[i]! / 2 ** 20,
        unit: "MiB",
        note: `idle ${(idleRss[i]! / 2 ** 20).toFixed(0)} MiB`,
      });
    }
    rows.push({
      name: "node RSS per client",
      value: perClient / 1024,
      unit: "KiB",
      note: "(loaded - idle) / clients; goal <= 8 KiB",
    });
    rows.push({
      name: "node RSS / clients on it",
      value: loadedRss.reduce((a, b) => a + b, 0) / CLIENTS / 1024,
      unit: "KiB",
      note: "idle process included",
    });
    rows.push({
      name: "redis RSS per client",
      value: (rssBytes(redis.pid!) - redisIdle) / CLIENTS / 1024,
      unit: "KiB",
    });

    // Latency: PAIRS pairs, on different nodes, at RATE_PER_SECOND in all: here, or in PAIR_PROCS
    // processes of their own.
    const pairs: Array<[BenchClient, BenchClient]> = [];
    for (let p = 0; p < PAIRS; p++) {
      pairs.push(
        [pairClients[2 * p]!, pairClients[2 * p + 1]!],
        [pairClients[2 * p + 1]!, pairClients[2 * p]!],
      );
    }
    phase = "steady";
    console.error(
      `envelopes between pairs on different nodes (${PAIR_PROCS ? `${PAIR_PROCS} pair processes` : "in the bench's process"})`,
    );
    for (const holder of holders) holder.send({ type: "window", on: true });
    const ours = [
      ...nodes.map((node, i) => ({ name: `node ${i}`, pid: node.pid })),
      { name: "redis", pid: redis.pid! },
      { name: "bench", pid: process.pid },
      ...pairChildren.map((child, i) => ({ name: `pairs ${i}`, pid: child.pid! })),
      ...holders.map((child, i) => ({ name: `holder ${i}`, pid: child.pid! })),
    ];
    const cpuBefore = ours.map(({ pid }) => processCpuSeconds(pid));
    const schedBefore = ours.map(({ pid }) => schedStat(pid));
    const machineBefore = machineBusySeconds();
    const windowFrom = monoNow();
    const results = PAIR_PROCS
      ? await Promise.all(
          pairProcs.map((proc) =>
            proc.stream({
              type: "stream",
              rate: RATE_PER_SECOND / PAIR_PROCS,
              ms: WARMUP_MS + MEASURE_MS,
              warmupMs: WARMUP_MS,
            }),
          ),
        )
      : [await streamPairs(pairs, RATE_PER_SECOND, WARMUP_MS + MEASURE_MS, WARMUP_MS)];
    const windowTo = windowFrom + WARMUP_MS + MEASURE_MS;
    console.error(`stream window (monotonic ms): ${windowFrom.toFixed(0)}-${windowTo.toFixed(0)}`);
    {
      // CPU over the stream (and its drain): each process's share of a CPU, and the machine's.
      const seconds = (monoNow() - windowFrom) / 1000;
      const shares = ours.map(({ pid }, i) => (processCpuSeconds(pid) - cpuBefore[i]!) / seconds);
      const machineAfter = machineBusySeconds();
      const machine = (machineAfter.busy - machineBefore.busy) / seconds;
      const steal = (machineAfter.steal - machineBefore.steal) / seconds;
      const sum = shares.reduce((a, b) => a + b, 0);
      // The main thread's wait for a CPU while runnable (/proc/PID/schedstat): the scheduler's queueing.
      const waits = ours.map(({ pid }, i) => {
        const after = schedStat(pid);
        const before = schedBefore[i]!;
        const wait = after.waitMs - before.waitMs;
        return { share: wait / 1000 / seconds, perSlice: wait / Math.max(1, after.slices - before.slices) };
      });
      console.error(
        `main threads' wait for a CPU while runnable (share of the stream; mean per time slice ms): ${ours.map(({ name }, i) => `${name} ${waits[i]!.share.toFixed(2)} (${waits[i]!.perSlice.toFixed(2)})`).join(", ")}`,
      );
      const nodeWait = waits.slice(0, NODES);
      rows.push({
        name: "nodes' main threads waiting for a CPU",
        value: nodeWait.reduce((a, w) => a + w.share, 0) / NODES,
        unit: "",
        note: `share of the stream, mean of the nodes; ${ms(nodeWait.reduce((a, w) => a + w.perSlice, 0) / NODES)} ms a time slice; redis ${waits[NODES]!.share.toFixed(2)} (${ms(waits[NODES]!.perSlice)} ms)`,
      });
      console.error(
        `CPU over the stream (${seconds.toFixed(1)} s, CPUs busy): ${ours.map(({ name }, i) => `${name} ${shares[i]!.toFixed(2)}`).join(", ")}; ours ${sum.toFixed(2)}, machine ${machine.toFixed(2)} of ${availableParallelism()}, steal ${steal.toFixed(2)}`,
      );
      rows.push({
        name: "CPUs busy during the stream: ours / machine",
        value: sum,
        unit: "",
        note: `machine ${machine.toFixed(2)} of ${availableParallelism()} (steal ${steal.toFixed(2)}); nodes ${shares
          .slice(0, NODES)
          .reduce((a, b) => a + b, 0)
          .toFixed(2)}, redis ${shares[NODES]!.toFixed(2)}, load generator ${shares
          .slice(NODES + 1)
          .reduce((a, b) => a + b, 0)
          .toFixed(2)}`,
      });
    }
    const holderLoops = await Promise.all(holders.map((holder) => holderLoop(holder)));
    const steady = describeSteady(results, holderLoops, nodeLoops, windowFrom + WARMUP_MS, windowTo);
    for (const line of steady.lines) console.error(line);
    rows.push(...steady.rows);
    const sent = results.reduce((sum, r) => sum + r.sent, 0);
    const received = results.reduce((sum, r) => sum + r.received, 0);
    const undeliverable = results.reduce((sum, r) => sum + r.undeliverable, 0);
    rows.push({
      name: "envelopes lost (steady)",
      value: sent - received,
      unit: "",
      note: `of ${sent}, ${undeliverable} undeliverable`,
    });
    if (STEADY_ONLY) {
      await printEngineReport(redisUrl);
      return rows;
    }

    // A node SIGKILLed: its clients move to the others; pairs on the survivors keep talking.
    const victim = 0;
    const victimCount =
      pairClients.filter((client) => client.node === victim).length +
      Array.from({ length: CLIENTS - HELD_FROM }, (_, j) => nodeOfClient(HELD_FROM + j, NODES)).filter(
        (node) => node === victim,
      ).length;
    let killedAt = 0;
    for (const client of pairClients.filter((c) => c.node === victim)) {
      client.ws!.once("close", () => {
        firstClose = firstClose ? Math.min(firstClose, Date.now()) : Date.now();
      });
      client.moveWhenClosed(
        urls,
        (timeline) => moves.push(timeline),
        () => retries++,
      );
    }
    const survivorsPairs = pairs.filter(([a, b]) => a.node !== victim && b.node !== victim);
    console.error(`killing node ${victim}`);
    // The victim's id in the engine: the node a client connected to it is recorded at.
    const watcher = new Redis(redisUrl);
    const victimKey = pairClients.find((client) => client.node === victim)!.publicKey;
    const engineWatch = new EngineWatch(watcher, (await watcher.get(`tb:at:${victimKey}`)) ?? "?");
    engineWatch.start();
    const countersBefore = tcpCounters();
    phase = "before-kill";
    const killing = sleep(1_000).then(() => {
      phase = "failover";
      killedAt = Date.now();
      nodes[victim]!.child.kill("SIGKILL");
    });
    const during = await streamPairs(survivorsPairs, KILL_RATE_PER_SECOND, 8_000, 0);
    await killing;
    for (let waited = 0; moves.length < victimCount && waited < 120_000; waited += 100) await sleep(100);
    await sleep(300); // the holders' last reports
    const countersAfter = tcpCounters();
    // The dead node's keys are reaped whether or not its clients came back: wait for that too.
    for (let waited = 0; waited < 20_000; waited += 100) {
      if ((await watcher.scard(`tb:nk:${engineWatch.node}`)) === 0) break;
      await sleep(100);
    }
    await sleep(200);
    engineWatch.stop();
    watcher.disconnect();
    for (const line of describeMoves(moves, killedAt)) console.error(line);
    for (const line of engineWatch.describe(killedAt)) console.error(line);
    console.error(describeTcpCounters(countersBefore, countersAfter));
    for (const [pid, load] of holderLoad)
      console.error(
        `holder ${pid} since its first close: ${load.cpuMs.toFixed(0)} ms of CPU, loop delay up to ${load.loopMaxMs.toFixed(0)} ms`,
      );
    const backAfter = moves.map((move) => move[6] - killedAt);
    rows.push({
      name: "node killed: its clients served elsewhere",
      value: Math.max(...backAfter) / 1000,
      unit: "s",
      note: `${moves.length} of ${victimCount} re-authenticated on the others (goal <= 5 s)`,
    });
    rows.push({
      name: "node killed: half / 90 % of its clients back",
      value: percentile(backAfter, 50) / 1000,
      unit: "s",
      note: `90 %: ${(percentile(backAfter, 90) / 1000).toFixed(2)} s; first close seen after ${((firstClose - killedAt) / 1000).toFixed(2)} s; ${retries} refused attempts retried`,
    });
    rows.push({
      name: "node killed: envelopes lost between survivors",
      value: during.sent - during.received,
      unit: "",
      note: `of ${during.sent} at ${KILL_RATE_PER_SECOND}/s (${survivorsPairs.length / 2} pairs), ${during.undeliverable} undeliverable`,
    });
    const count = (what: RegExp) => notable.filter((line) => what.test(line)).length;
    rows.push({
      name: "live nodes taken for dead",
      value: count(/taken for dead/),
      unit: "",
      note: `${count(/event loop stalled/)} loop stalls > 1 s, ${count(/heartbeat late/)} late heartbeats logged`,
    });
    await printEngineReport(redisUrl);
  } finally {
    for (const client of pairClients) client.ws?.terminate();
    await Promise.all(holders.map((holder) => endProcess(holder, HOLDER_ARGS.length > 0)));
    await Promise.all(pairChildren.map((child) => endProcess(child, false)));
    await Promise.all(nodes.map((node) => endProcess(node.child, NODE_ARGS.length > 0)));
    redis.kill("SIGKILL");
  }
  return rows;
}

/** The machine's busy CPU time (all CPUs, not idle, iowait or steal) and its steal, in s, from /proc/stat. */
function machineBusySeconds(): { busy: number; steal: number } {
  const fields = readFileSync("/proc/stat", "utf8").split("\n")[0]!.trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = fields;
  return { busy: (user! + nice! + system! + irq! + softirq!) / 100, steal: steal! / 100 };
}

/** A thread group leader's (the main thread's) time waiting on a run queue (ms) and time slices run. */
function schedStat(pid: number): { waitMs: number; slices: number } {
  try {
    const [, wait, slices] = readFileSync(`/proc/${pid}/schedstat`, "utf8").trim().split(" ").map(Number);
    return { waitMs: wait! / 1e6, slices: slices! };
  } catch {
    return { waitMs: 0, slices: 0 };
  }
}

/** A process of bench/intro-cluster-pairs.ts holding `count` pairs from client `from`, connected. */
interface PairProc {
  stream(message: Extract<PairsMessage, { type: "stream" }>): Promise<StreamResult>;
}

function spawnPairProc(
  urls: string[],
  from: number,
  count: number,
  children: ChildProcess[],
): Promise<PairProc> {
  const child = spawn(process.execPath, ["--import", "tsx", "bench/intro-cluster-pairs.ts"], {
    cwd: projectRoot,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  children.push(child);
  let done: ((result: StreamResult) => void) | undefined;
  const proc: PairProc = {
    stream: (message) =>
      new Promise((resolve) => {
        done = resolve;
        child.send(message);
      }),
  };
  return new Promise((resolve, reject) => {
    child.on("message", (report: PairsReport) => {
      if (report.type === "ready") child.send({ type: "start", urls, from, count } satisfies PairsMessage);
      else if (report.type === "connected") resolve(proc);
      else done?.(report);
    });
    child.once("exit", (code) => reject(new Error(`pair process exited (${code}) before connecting`)));
  });
}

/** A holder's loop delay over the window, which this ends. */
function holderLoop(holder: ChildProcess): Promise<LoopDelay> {
  return new Promise((resolve) => {
    const onMessage = (report: HolderReport) => {
      if (report.type !== "loop") return;
      holder.off("message", onMessage);
      resolve(report);
    };
    holder.on("message", onMessage);
    holder.send({ type: "window", on: false } satisfies HolderWindow);
  });
}

interface LoopDelay {
  p50: number;
  p99: number;
  max: number;
}

/** A node's TRACE-LOOP line: its loop delay over a second and its route scripts' round trips (ms). */
interface NodeLoop extends LoopDelay {
  node: number;
  at: number;
  routes: number;
  routeP50: number;
  routeP99: number;
  routeMax: number;
}

const ms = (value: number) => (Number.isFinite(value) ? value.toFixed(1) : "-");
const median = (values: number[]) => percentile(values, 50);

/**
 * The steady phase: the one-way latency's p50/p99 and each stage's, what the slowest 1 % spent in each
 * stage, and the loop delays of the load generator's processes and of the nodes over the window.
 */
function describeSteady(
  results: StreamResult[],
  holderLoops: LoopDelay[],
  loops: NodeLoop[],
  from: number,
  to: number,
): { rows: BenchRow[]; lines: string[] } {
  const width = STAGES.length;
  const columns: number[][] = STAGES.map(() => []);
  const sentAt: number[] = [];
  for (const result of results)
    for (let i = 0; i < result.samples.length; i += SAMPLE_WIDTH) {
      for (let s = 0; s < width; s++) columns[s]!.push(result.samples[i + s]!);
      sentAt.push(result.samples[i + width]!);
    }
  const totals = columns[0]!;
  const p99 = percentile(totals, 99);
  const traced = !Number.isNaN(columns[1]![0]);
  const rows: BenchRow[] = [
    {
      name: "cross-node envelope p50",
      value: percentile(totals, 50),
      unit: "ms",
      note: `${RATE_PER_SECOND}/s, ${PAIRS} pairs, ${totals.length} measured`,
    },
    { name: "cross-node envelope p99", value: p99, unit: "ms", note: "goal <= 10 ms" },
  ];
  const lines: string[] = [];
  // Each second of the window's p99, by send time: a tail from a few seconds, or all along.
  const bySecond: number[][] = [];
  for (let i = 0; i < totals.length; i++) {
    const second = Math.floor((sentAt[i]! - from) / 1000);
    if (second < 0) continue;
    bySecond[second] ??= [];
    bySecond[second].push(totals[i]!);
  }
  lines.push(
    `p99 by second of the window (ms): ${bySecond.map((values) => ms(percentile(values, 99))).join(" ")}`,
  );
  if (traced) {
    // The slowest 1 %: the mean of each stage over them, the stage's share of where the tail comes from.
    const slow: number[] = [];
    for (let i = 0; i < totals.length; i++) if (totals[i]! >= p99) slow.push(i);
    for (let s = 1; s < width; s++) {
      const column = columns[s]!;
      const tail = slow.reduce((sum, i) => sum + column[i]!, 0) / Math.max(1, slow.length);
      rows.push({
        name: `stage ${STAGES[s]} p50 / p99`,
        value: percentile(column, 50),
        unit: "ms",
        note: `p99 ${ms(percentile(column, 99))} ms; mean over the slowest 1 %: ${ms(tail)} ms`,
      });
    }
  }
  for (const [k, result] of results.entries())
    lines.push(
      `${PAIR_PROCS ? `pair process ${k}` : "bench process"}: sent ${result.sent}, CPU ${ms(result.cpuMs)} ms, loop delay p50/p99/max ${ms(result.loop.p50)}/${ms(result.loop.p99)}/${ms(result.loop.max)} ms`,
    );

  rows.push({
    name: "sending/receiving process loop delay p99",
    value: Math.max(...results.map((r) => r.loop.p99)),
    unit: "ms",
    note: `max ${ms(Math.max(...results.map((r) => r.loop.max)))} ms; p50 ${ms(median(results.map((r) => r.loop.p50)))} ms (worst of ${results.length})`,
  });
  rows.push({
    name: "holders' loop delay p99",
    value: Math.max(...holderLoops.map((l) => l.p99)),
    unit: "ms",
    note: `max ${ms(Math.max(...holderLoops.map((l) => l.max)))} ms (${holderLoops.length} holders)`,
  });
  const window = loops.filter((line) => line.at > from && line.at <= to + 1_000);
  if (window.length > 0) {
    for (let node = 0; node < NODES; node++) {
      const mine = window.filter((line) => line.node === node);
      if (mine.length === 0) continue;
      lines.push(
        `node ${node} over the window, per second: loop p99 ${mine.map((l) => ms(l.p99)).join(" ")}; max ${mine.map((l) => ms(l.max)).join(" ")}; route p99 ${mine.map((l) => ms(l.routeP99)).join(" ")}`,
      );
    }
    rows.push({
      name: "nodes' loop delay p99 (median second)",
      value: median(window.map((l) => l.p99)),
      unit: "ms",
      note: `worst second's p99 ${ms(Math.max(...window.map((l) => l.p99)))} ms, max ${ms(Math.max(...window.map((l) => l.max)))} ms`,
    });
    rows.push({
      name: "nodes' route script round trip p99 (median second)",
      value: median(window.map((l) => l.routeP99)),
      unit: "ms",
      note: `p50 ${ms(median(window.map((l) => l.routeP50)))} ms; worst second's p99 ${ms(Math.max(...window.map((l) => l.routeP99)))} ms`,
    });
  }
  return { rows, lines };
}

/**
 * SIGKILL, or with node flags (such as --cpu-prof, which writes its profile at exit) SIGTERM first,
 * SIGKILL if it has not exited within 15 s.
 */
function endProcess(child: ChildProcess, gently: boolean): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  if (!gently) {
    child.kill("SIGKILL");
    return Promise.resolve();
  }
  return new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
    child.once("exit", () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill("SIGTERM");
  });
}

/** What held the engine or the nodes up during the run (SLOWLOG, LATENCY, the nodes' notable lines). */
async function printEngineReport(redisUrl: string): Promise<void> {
  const engine = new Redis(redisUrl);
  try {
    const slow = (await engine.call("SLOWLOG", "GET", "1000")) as Array<[number, number, number, string[]]>;
    const byCommand = new Map<string, { count: number; totalUs: number; maxUs: number }>();
    for (const [, , micros, args] of slow) {
      // A script is named by its first argument after the SHA and key count: the node or key is noise.
      const name =
        args[0]?.toLowerCase() === "evalsha"
          ? `evalsha ${args[1]?.slice(0, 8)} (${args.length - 3} args)`
          : (args[0] ?? "?");
      const entry = byCommand.get(name) ?? { count: 0, totalUs: 0, maxUs: 0 };
      entry.count++;
      entry.totalUs += micros;
      entry.maxUs = Math.max(entry.maxUs, micros);
      byCommand.set(name, entry);
    }
    console.error(`engine SLOWLOG (> 10 ms): ${slow.length} entries`);
    const sorted = [...byCommand].sort((a, b) => b[1].maxUs - a[1].maxUs).slice(0, 20);
    for (const [name, entry] of sorted)
      console.error(
        `  ${name}: ${entry.count}x, max ${(entry.maxUs / 1e3).toFixed(1)} ms, total ${(entry.totalUs / 1e3).toFixed(0)} ms`,
      );
    console.error("engine LATENCY LATEST:", JSON.stringify(await engine.call("LATENCY", "LATEST")));
  } catch (error) {
    console.error(`cannot read the engine's slow log: ${(error as Error).message}`);
  } finally {
    engine.disconnect();
  }
  console.error(`nodes' notable log lines (${notable.length}):`);
  for (const line of notable) console.error(`  ${line}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatTable(await benchIntroCluster()));
  process.exit(0);
}
