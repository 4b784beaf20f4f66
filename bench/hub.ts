// A hub with thousands of static peers on one wireguard-go interface (issue 16): how long `run` takes
// to start (every endpoint pointed at L(P)) and to stop (every endpoint restored), what it holds (RSS,
// file descriptors) and costs idle, and the gap in a continuous ping to a real peer across a SIGKILL
// and restart. Tunnelbore runs as a service would: root, privilege separation, default poll interval.
//   npm run bench -- hub
//   TBT_BENCH_HUB_PEERS=2000 node --import tsx bench/run.ts --one hub     (one size)
//   TBT_BENCH_HUB_PROFILE=1 ...     (CPU profile of one process, --no-privsep, in /tmp/tbt-hub-prof;
//                                    =parent: of the privileged parent and of its worker, a file each;
//                                    no restart either way)
//   TBT_BENCH_HUB_HEAP=1 ...        (after the idle measure, a heap snapshot of the parent and of its
//                                    worker in /tmp/tbt-hub-prof; no restart)
import { chmodSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { createHub, type Hub } from "../test/lab/hub.js";
import { type SpawnedProcess, spawnInNamespace, teardownAll } from "../test/lab/netns.js";
import { ContinuousPing } from "../test/lab/ping.js";
import { CLI, tunnelboreDirs } from "../test/lab/tunnelbore.js";
import { waitFor } from "../test/support/wait-for.js";
import { processCpuSeconds, rssBytes, tunnelboreProcesses } from "./proc-stats.js";
import type { BenchRow } from "./table.js";

const SIZES = (process.env.TBT_BENCH_HUB_PEERS ?? "1000,5000,10000").split(",").map(Number);
const IDLE_MEASURE_MS = 30_000;
/**
 * The idle window starts this long after "running": each process gives the start's garbage back 8 s
 * after its last burst of work (src/heap-release.ts), and V8's memory reducer follows with one more
 * collection on its helper threads 25-50 s after the start (about 0.3 s of CPU at 10,000 peers, a
 * one-off: none in the next 200 s). Measured from 15 s, the window caught them in some runs only.
 */
const IDLE_SETTLE_MS = 60_000;
const PING_INTERVAL_MS = 20;
/** Profile start, idle and stop (no restart: a SIGKILLed process writes no profile). */
const PROFILE = ["1", "parent"].includes(process.env.TBT_BENCH_HUB_PROFILE ?? "");
const HEAP = process.env.TBT_BENCH_HUB_HEAP === "1";
const TARGETS = { startS: 5, stopS: 5, rssMiB: 300, idleCpu: 2, fdsPerPeer: 1.2, gapMs: 1000 };

class Skip extends Error {}

function log(text: string): void {
  process.stderr.write(`[hub] ${text}\n`);
}

/** Tunnelbore's processes: the privileged parent and its worker (setpriv execs node in place). */
function tunnelborePids(ip: SpawnedProcess): number[] {
  // `ip netns exec` execs the command: the spawned PID is Tunnelbore's parent itself.
  return tunnelboreProcesses(ip.child.pid ?? -1);
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return 0;
  }
}

function start(hub: Hub, dirs: { runDir: string; stateDir: string }): SpawnedProcess {
  const args = [
    CLI,
    "run",
    "--interface",
    hub.wg.name,
    "--run-dir",
    dirs.runDir,
    "--state-dir",
    dirs.stateDir,
  ];
  args.push("--log-level", "info");
  // Extra arguments for `run`, for comparisons (TBT_BENCH_HUB_ARGS="--ebpf off").
  args.push(...(process.env.TBT_BENCH_HUB_ARGS ?? "").split(" ").filter(Boolean));
  // Each process writes its profile at exit; the worker (profiled like its parent) is unprivileged.
  if (PROFILE) {
    mkdirSync("/tmp/tbt-hub-prof", { recursive: true });
    chmodSync("/tmp/tbt-hub-prof", 0o1777);
    args.unshift("--cpu-prof", "--cpu-prof-dir=/tmp/tbt-hub-prof");
  }
  if (HEAP) {
    mkdirSync("/tmp/tbt-hub-prof", { recursive: true });
    chmodSync("/tmp/tbt-hub-prof", 0o1777);
    args.unshift("--heapsnapshot-signal=SIGUSR2", "--diagnostic-dir=/tmp/tbt-hub-prof");
  }
  // TBT_BENCH_HUB_PROFILE=parent: the privileged parent and its worker (the worker runs as it would).
  if (PROFILE && process.env.TBT_BENCH_HUB_PROFILE !== "parent") args.push("--no-privsep");
  return spawnInNamespace(hub.ns, process.execPath, args);
}

/**
 * Resolves when the process logs "tunnelbore running". Watches each chunk as it comes (with the end of
 * the one before): searching the whole output over and over would take a core from the processes measured.
 */
async function running(proc: SpawnedProcess, timeoutMs: number): Promise<void> {
  // pino writes to stderr.
  const stdout = proc.child.stderr;
  if (!stdout) throw new Error("no stderr");
  await new Promise<void>((resolve, reject) => {
    let tail = "";
    const timer = setTimeout(() => finish(new Error(`not running after ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      const text = tail + chunk.toString();
      if (text.includes('"tunnelbore running"')) finish();
      tail = text.slice(-64);
    };
    const onExit = () => finish(new Error(`tunnelbore exited: ${proc.output().slice(-2000)}`));
    const finish = (err?: Error) => {
      clearTimeout(timer);
      stdout.off("data", onData);
      proc.child.off("exit", onExit);
      if (err) reject(err);
      else resolve();
    };
    stdout.on("data", onData);
    proc.child.once("exit", onExit);
  });
}

/** Waits (at most 20 s) until wireguard-go uses under 5 % of a core over a second; how long that took. */
async function wireGuardSettled(pid: number): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < 20; i++) {
    const before = processCpuSeconds(pid);
    await sleep(1000);
    if (processCpuSeconds(pid) - before < 0.05) break;
  }
  return (performance.now() - t0) / 1000;
}

function countAtLoopback(endpoints: Map<string, string>): number {
  let n = 0;
  for (const e of endpoints.values()) if (e.startsWith("127.")) n++;
  return n;
}

async function measure(peers: number): Promise<BenchRow[]> {
  log(`${peers} peers: setting up the hub`);
  const dirs = tunnelboreDirs();
  const rows: BenchRow[] = [];
  const at = `${peers.toLocaleString("en-US")} peers`;
  try {
    const hub = await createHub(peers, 1);
    // As at a real hub, WireGuard is idle when Tunnelbore starts, not still taking in 10,000 peers.
    const settledS = await wireGuardSettled(hub.wg.process.child.pid ?? 0);
    log(`${peers}: wireguard-go idle after ${settledS.toFixed(1)} s`);
    const t0 = performance.now();
    let proc = start(hub, dirs);
    await running(proc, 600_000);
    const startS = (performance.now() - t0) / 1000;
    const atLoopback = countAtLoopback(await hub.currentEndpoints());
    log(`${peers}: running after ${startS.toFixed(2)} s; ${atLoopback} endpoints at loopback`);
    if (atLoopback !== peers) {
      writeFileSync("/tmp/tbt-hub-failed.log", proc.output());
      throw new Error(`only ${atLoopback} of ${peers} endpoints at loopback (log: /tmp/tbt-hub-failed.log)`);
    }
    rows.push({ name: `start, ${at}`, value: startS, unit: "s", note: `target <= ${TARGETS.startS}` });

    // Idle: after the start settled (IDLE_SETTLE_MS), what the processes hold and use.
    await sleep(IDLE_SETTLE_MS);
    // Each process with the children it ran (a `wg` where one runs per read), and wireguard-go apart:
    // answering our reads is part of its cost.
    const pids = tunnelborePids(proc);
    const wgPid = hub.wg.process.child.pid ?? 0;
    const cpu0 = pids.map((pid) => processCpuSeconds(pid, true));
    const wg0 = processCpuSeconds(wgPid);
    const w0 = performance.now();
    await sleep(IDLE_MEASURE_MS);
    const seconds = (performance.now() - w0) / 1000;
    const perProcess = pids.map((pid, i) => (100 * (processCpuSeconds(pid, true) - cpu0[i]!)) / seconds);
    const wireguardGo = (100 * (processCpuSeconds(wgPid) - wg0)) / seconds;
    const idleCpu = perProcess.reduce((s, v) => s + v, 0);
    const rss = pids.reduce((s, pid) => s + rssBytes(pid), 0) / 2 ** 20;
    const fds = pids.reduce((s, pid) => s + fdCount(pid), 0);
    rows.push(
      {
        name: `idle CPU, ${at}`,
        value: idleCpu,
        unit: "% core",
        note: `parent + worker (${perProcess.map((v) => v.toFixed(1)).join(" + ")}), with their child processes; target <= ${TARGETS.idleCpu}`,
      },
      {
        name: `wireguard-go idle CPU, ${at}`,
        value: wireguardGo,
        unit: "% core",
        note: "the hub's WireGuard, answering Tunnelbore's reads (by default every 2 s, 5 s at 10,000 peers)",
      },
      { name: `RSS, ${at}`, value: rss, unit: "MiB", note: `parent + worker; target <= ${TARGETS.rssMiB}` },
      {
        name: `file descriptors per peer, ${at}`,
        value: fds / peers,
        unit: "",
        note: `${fds} in all; target <= ${TARGETS.fdsPerPeer}`,
      },
    );
    log(
      `${peers}: idle ${perProcess.map((v) => v.toFixed(2)).join(" + ")} % core, RSS ${rss.toFixed(0)} MiB, ${fds} fds`,
    );

    if (HEAP) {
      for (const pid of pids) process.kill(pid, "SIGUSR2");
      log(`${peers}: heap snapshots of ${pids.join(", ")} being written to /tmp/tbt-hub-prof`);
      await sleep(30_000);
    }

    // SIGKILL and restart with a continuous ping to the real peer.
    const real = hub.real[0]!;
    const ping = new ContinuousPing(hub.ns, real.tunnelAddress, PING_INTERVAL_MS);
    try {
      if (PROFILE || HEAP) throw new Skip();
      await waitFor(() => ping.receivedCount >= 10, {
        what: "pings flowing",
        timeoutMs: 20_000,
        intervalMs: 20,
      });
      const killedAt = Date.now();
      await proc.stop("SIGKILL");
      const restartedAt = Date.now();
      proc = start(hub, dirs);
      await running(proc, 600_000);
      await waitFor(() => ping.receivedSince(Date.now() - 1000) >= 10, {
        what: "pings answered after the restart",
        timeoutMs: 120_000,
        intervalMs: 10,
      });
      // The longest silence around the kill and restart (the kernel fast path may carry on for a while
      // after the kill, until the dead owner's heartbeat is stale; then the new process must take over).
      const around = ping.replies.filter((r) => r >= killedAt - 1000);
      let gap = 0;
      for (let i = 1; i < around.length; i++) gap = Math.max(gap, around[i]! - around[i - 1]!);
      rows.push({
        name: `SIGKILL + restart: longest gap in a ping to a real peer, ${at}`,
        value: gap,
        unit: "ms",
        note: `ping every ${PING_INTERVAL_MS} ms; new process started ${restartedAt - killedAt} ms after the kill; target <= ${TARGETS.gapMs}`,
      });
      log(`${peers}: longest gap ${gap} ms around the restart`);
    } catch (err) {
      if (!(err instanceof Skip)) throw err;
    } finally {
      await ping.stop();
    }

    // Stop: SIGTERM until exit, every endpoint restored.
    const s0 = performance.now();
    const code = await new Promise<number | string>((resolve) => {
      proc.exited.then(resolve);
      proc.child.kill("SIGTERM");
    });
    const stopS = (performance.now() - s0) / 1000;
    const now = await hub.currentEndpoints();
    let restored = 0;
    for (const [key, endpoint] of hub.endpoints) if (now.get(key) === endpoint) restored++;
    log(`${peers}: stopped (${code}) after ${stopS.toFixed(2)} s; ${restored} endpoints restored`);
    if (restored !== peers) throw new Error(`only ${restored} of ${peers} endpoints restored`);
    rows.push({
      name: `stop, endpoints restored, ${at}`,
      value: stopS,
      unit: "s",
      note: `target <= ${TARGETS.stopS}`,
    });
  } finally {
    await teardownAll();
    dirs.cleanup();
  }
  return rows;
}

export async function benchHub(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  process.once("SIGTERM", () => void teardownAll().then(() => process.exit(1)));
  for (const peers of SIZES) rows.push(...(await measure(peers)));
  return rows;
}
