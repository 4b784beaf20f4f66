// intro-server --cluster (issue 15): 4 node processes on one Redis, on this machine. Holds N
// authenticated clients spread over the nodes (RSS per node and per client), relays envelopes between
// pairs on different nodes at a steady 10,000/s (one-way p50/p99), then SIGKILLs one node: how long
// until its clients are served by the others, and how many envelopes between clients on the surviving
// nodes were lost meanwhile. The PAIRS pairs that exchange envelopes live in this process; the other
// clients in holder processes of at most HOLDER_CLIENTS each (bench/intro-cluster-holder.ts).
// Clients come from 127.0.0.2-127.0.0.201, as from many hosts.
//   npx tsx bench/intro-cluster.ts   (about 2 minutes)
//   INTRO_CLUSTER_CLIENTS=N            clients in all (default 12,000)
//   INTRO_CLUSTER_RATE=R               envelopes/s in the latency phase (default 10,000)
//   INTRO_CLUSTER_KILL_RATE=R          envelopes/s between survivors while a node dies (default R)
//   INTRO_BENCH_SERVER_ENTRY=dist/intro-server/main.js   compiled JS rather than tsx
//   INTRO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR"   node flags for the nodes
// Each node holds N/4 sockets, and N/3 once one has died: with the hard open-file limit of 20,000 here
// (ulimit -Hn; raising it needs CAP_SYS_RESOURCE), N is at most ~58,000.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import { freePort } from "../test/support/free-port.js";
import { redisServerArgs } from "../test/support/redis-server-args.js";
import { BenchClient, connectAll, type MoveTimeline, nodeOfClient, sleep } from "./intro-cluster-client.js";
import { describeMoves, describeTcpCounters, EngineWatch, tcpCounters } from "./intro-cluster-failover.js";
import type { HolderReport, HolderStart } from "./intro-cluster-holder.js";
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
const WARMUP_MS = 1_000;
/** INTRO_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=DIR": node flags for the nodes (ended by SIGTERM then). */
const NODE_ARGS = (process.env.INTRO_BENCH_NODE_ARGS ?? "").split(" ").filter(Boolean);
/** INTRO_BENCH_HOLDER_ARGS: node flags for the holder processes (ended by SIGTERM when given). */
const HOLDER_ARGS = (process.env.INTRO_BENCH_HOLDER_ARGS ?? "").split(" ").filter(Boolean);
const MEASURE_MS = 10_000;

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

/** Forwards a node's log lines to stderr and keeps the notable ones, tagged with node and phase. */
function watchLog(child: ChildProcess, index: number): void {
  let rest = "";
  child.stderr!.on("data", (chunk: Buffer) => {
    process.stderr.write(chunk);
    const lines = (rest + chunk.toString()).split("\n");
    rest = lines.pop()!;
    for (const line of lines) {
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
      env: { ...process.env, TUNNELBORE_LOG: "warn" },
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

/** The send time, as 20 base64 characters (15 bytes: no padding) in front of the ciphertext. */
const stamp = () => Buffer.from(performance.now().toFixed(3).padStart(15, "0")).toString("base64");
const sentAt = (c: string) => Number(Buffer.from(c.slice(0, 20), "base64").toString());

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
  const pairClients: BenchClient[] = [];
  try {
    for (let i = 0; i < NODES; i++) nodes.push(await spawnNode(redisUrl, i));
    const urls = nodes.map((node) => node.url);
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
    for (let from = PAIRS * 2; from < CLIENTS; from += HOLDER_CLIENTS)
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

    // Latency: the PAIRS pairs, on different nodes, at RATE_PER_SECOND in all.
    const latencies: number[] = [];
    // Envelopes sent in this window are measured, whenever they arrive (a late one counts in the tail).
    let measureFrom = Number.POSITIVE_INFINITY;
    let measureTo = Number.POSITIVE_INFINITY;
    let sent = 0;
    let received = 0;
    let undeliverable = 0;
    const filler = randomBytes(420).toString("base64");
    for (const client of pairClients) {
      client.onMessage = (message) => {
        if (message.type === "envelope") {
          received++;
          const at = sentAt(message.envelope.c);
          if (at >= measureFrom && at <= measureTo) latencies.push(performance.now() - at);
        } else if (message.type === "undeliverable") undeliverable++;
      };
    }
    const streamPairs = async (
      pairs: Array<[BenchClient, BenchClient]>,
      rate: number,
      ms: number,
      warmupMs: number,
    ) => {
      const begin = performance.now();
      measureFrom = begin + warmupMs;
      measureTo = begin + ms;
      let index = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const elapsed = performance.now() - begin;
          const due = Math.floor((elapsed / 1000) * rate);
          for (let k = 0; sent < due && k < 200; k++, sent++) {
            const [from, to] = pairs[index++ % pairs.length]!;
            if (from.ws?.readyState !== WebSocket.OPEN) {
              sent--;
              continue;
            }
            // Built as text: the frame is what a client's JSON.stringify gives, at a fraction of its cost.
            const nonce = randomBytes(24).toString("base64");
            from.ws.send(
              `{"type":"send","to":"${to.publicKey}","envelope":{"n":"${nonce}","c":"${stamp()}${filler}"}}`,
            );
          }
          if (elapsed > ms) {
            clearInterval(timer);
            resolve();
          }
        }, 1);
      });
      // Lost is what never arrives: wait for the stragglers (a p99 of seconds on a loaded machine) until
      // nothing has arrived for 3 s, rather than count what is still on its way.
      let settled = received + undeliverable;
      for (let quiet = 0; quiet < 3_000 && received + undeliverable < sent; ) {
        await sleep(250);
        quiet = received + undeliverable === settled ? quiet + 250 : 0;
        settled = received + undeliverable;
      }
      await sleep(250);
    };
    const pairs: Array<[BenchClient, BenchClient]> = [];
    for (let p = 0; p < PAIRS; p++) {
      pairs.push(
        [pairClients[2 * p]!, pairClients[2 * p + 1]!],
        [pairClients[2 * p + 1]!, pairClients[2 * p]!],
      );
    }
    phase = "steady";
    console.error("envelopes between pairs on different nodes");
    await streamPairs(pairs, RATE_PER_SECOND, WARMUP_MS + MEASURE_MS, WARMUP_MS);
    rows.push({
      name: "cross-node envelope p50",
      value: percentile(latencies, 50),
      unit: "ms",
      note: `${RATE_PER_SECOND}/s, ${PAIRS} pairs`,
    });
    rows.push({
      name: "cross-node envelope p99",
      value: percentile(latencies, 99),
      unit: "ms",
      note: "goal <= 10 ms",
    });
    rows.push({
      name: "envelopes lost (steady)",
      value: sent - received,
      unit: "",
      note: `of ${sent}, ${undeliverable} undeliverable`,
    });

    // A node SIGKILLed: its clients move to the others; pairs on the survivors keep talking.
    const victim = 0;
    const victimCount =
      pairClients.filter((client) => client.node === victim).length +
      Array.from({ length: CLIENTS - PAIRS * 2 }, (_, j) => nodeOfClient(PAIRS * 2 + j, NODES)).filter(
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
    sent = 0;
    received = 0;
    undeliverable = 0;
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
    await streamPairs(survivorsPairs, KILL_RATE_PER_SECOND, 8_000, 0);
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
      value: sent - received,
      unit: "",
      note: `of ${sent} at ${KILL_RATE_PER_SECOND}/s (${survivorsPairs.length / 2} pairs), ${undeliverable} undeliverable`,
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
    await Promise.all(nodes.map((node) => endProcess(node.child, NODE_ARGS.length > 0)));
    redis.kill("SIGKILL");
  }
  return rows;
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
