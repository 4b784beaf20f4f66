// Staying connected, measured in one ProductLab (network namespaces, nftables NAT routers, an
// introduction server and coturn, real wireguard-go and the built Tunnelbore):
//
//   a (EIM NAT) <-> b (EIM NAT), and an empty EIM router "cafe" a roams to and from
//   hub (EIM NAT): Tunnelbore with 200 WireGuard peers, all of them ICE-connected to
//   fleet (EIM NAT): one process with 200 Peers (each its own key and IntroLink) and a LivenessMonitor, i.e.
//                    the ICE side of 200 Tunnelbores, no WireGuard
//
// Roaming gap: a pings b every 50 ms through WireGuard and moves to the other NAT; the gap is the
// last reply before the move to the first reply after. Restart gap: the same, b's Tunnelbore stopped
// (SIGTERM, or SIGKILL as in a crash) and started again. Idle cost: UDP datagrams in the hub's namespace
// (all of them Tunnelbore's: WireGuard is idle) per minute per idle connected peer, and CPU and RSS of
// the hub's Tunnelbore process over the same minute.
//   npm run build && npx tsx bench/staying-connected.ts
// TBT_BENCH_FLEET=N sets the number of idle peers; TBT_BENCH_ONLY=idle skips the gap measurements;
// TBT_BENCH_HUB_LOG=FILE keeps the hub's Tunnelbore log; TBT_BENCH_FLEET_LOG=LEVEL (default warn) is
// the fleet's log level (on stderr, each line with its peer's index, `fleetPeer`).
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { IceSessionFactory } from "../src/ice/ice-session-factory.js";
import { IntroLink, linkSignalling } from "../src/intro-client/intro-link.js";
import { systemClock } from "../src/peer/clock.js";
import { Peer, type PeerDataPlane } from "../src/peer/peer.js";
import type { BatchedUdpSocket as Socket } from "../src/proxy/batched-udp.js";
import { LivenessMonitor } from "../src/proxy/liveness.js";
import { ProxyPeer } from "../src/proxy/proxy-peer.js";
import { LocalKeyAgreement } from "../src/signalling/key-agreement.js";
import { encodeKey } from "../src/wireguard/keys.js";
import { nsRun, run, teardownAll, trackChild } from "../test/lab/netns.js";
import { ContinuousPing } from "../test/lab/ping.js";
import { CLI } from "../test/lab/tunnelbore.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { generateKeyPair } from "../test/support/noise.js";
import { waitFor } from "../test/support/wait-for.js";
import { labPreflight } from "./lab-preflight.js";
import { median } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const FLEET_FLAG = "--fleet";
const ROAMS = 6;
const RESTARTS = 4;
const PING_INTERVAL_MS = 50;
const FLEET_PEERS = Number(process.env.TBT_BENCH_FLEET ?? 200);
const IDLE_SETTLE_MS = 15_000;
const IDLE_MEASURE_MS = 60_000;
const TARGET_ROAMING_MS = 3000;
const TARGET_RESTART_MS = 2000;

function log(text: string): void {
  process.stderr.write(`[staying-connected] ${text}\n`);
}

/** The time from the last reply at or before `at` to the first one after it (ms). */
function gapAcross(ping: ContinuousPing, at: number): number {
  const before = ping.replies.filter((r) => r <= at).at(-1);
  const after = ping.replies.find((r) => r > at);
  if (before === undefined || after === undefined) throw new Error("no replies around the event");
  return after - before;
}

/** Pings a -> b every 50 ms, runs `event`, and returns the gap around it. */
async function measureGap(
  lab: ProductLab,
  from: string,
  to: string,
  event: () => Promise<void>,
): Promise<number> {
  const ping = new ContinuousPing(lab.host(from).ns, lab.host(to).tunnelAddress, PING_INTERVAL_MS);
  try {
    await waitFor(() => ping.receivedCount >= 20, {
      what: "pings flowing",
      timeoutMs: 15_000,
      intervalMs: 20,
    });
    const at = Date.now();
    await event();
    await waitFor(() => ping.receivedSince(at) >= 5, {
      what: "pings answered again",
      timeoutMs: 30_000,
      intervalMs: 20,
    });
    return gapAcross(ping, at);
  } finally {
    await ping.stop();
  }
}

// --- /proc accounting ---------------------------------------------------------------------------

let clockTicks = 100;

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / clockTicks; // utime, stime
}

function rssMiB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1];
  return Number(kb ?? 0) / 1024;
}

/** UDP datagrams sent and received in a namespace (/proc/net/snmp is per namespace). */
async function udpCounters(ns: string): Promise<{ out: number; in: number }> {
  const text = await nsRun(ns, "cat", ["/proc/net/snmp"]);
  const lines = text.split("\n").filter((l) => l.startsWith("Udp:"));
  const names = lines[0]?.split(/\s+/) ?? [];
  const values = lines[1]?.split(/\s+/).map(Number) ?? [];
  const get = (name: string) => values[names.indexOf(name)] ?? 0;
  return { out: get("OutDatagrams"), in: get("InDatagrams") };
}

function tunnelborePid(lab: ProductLab, host: string): number {
  const pid = lab.host(host).tunnelbore?.process.child.pid;
  if (!pid) throw new Error(`no tunnelbore on ${host}`);
  // `ip netns exec` execs the command: the PID is node's. Check, so we never measure something else.
  const cmdline = readFileSync(`/proc/${pid}/cmdline`, "utf8");
  if (!cmdline.includes(CLI)) throw new Error(`PID ${pid} is not tunnelbore: ${cmdline}`);
  return pid;
}

// --- the fleet: 200 peers' ICE ends in one process ---------------------------------------------

export interface FleetConfig {
  introUrl: string;
  hubKey: string;
  privateKeys: string[];
  /** Lazy peers (issue 15): each of the fleet's Peers releases ICE after this long idle (default never). */
  idleTimeoutMs?: number;
}

/**
 * Child process: per key, what one Tunnelbore has for the hub: an IntroLink, ICE sessions and a Peer
 * (src/peer/peer.ts), all declaring the hub; reports connected paths.
 */
async function runFleet(config: FleetConfig): Promise<void> {
  const rootLogger = pino(
    { level: process.env.TBT_BENCH_FLEET_LOG ?? "warn" },
    pino.destination({ dest: 2, sync: true }),
  );
  const peers: ProxyPeer[] = [];
  const monitor = new LivenessMonitor(() => peers);
  const lives = new Map<ProxyPeer, Peer>();
  let connected = 0;
  for (const [index, privateKey] of config.privateKeys.entries()) {
    // Which of the fleet's peers a line is about (every one's peer is the hub).
    const logger = rootLogger.child({ fleetPeer: index });
    // The hub's peer as this Tunnelbore's data plane would see it: a path, timestamps, no socket.
    const data = new ProxyPeer(
      config.hubKey,
      Buffer.from(config.hubKey, "base64"),
      { address: "127.0.0.1", port: 0 },
      {} as Socket,
    );
    peers.push(data);
    const dataPlane: PeerDataPlane = {
      setPath: (_key, path) => {
        if (path && !data.path) connected++;
        if (!path && data.path) connected--;
        data.path = path;
      },
      setDormant: () => {},
    };
    let life: Peer | null = null;
    const link = new IntroLink(
      { url: config.introUrl, keys: new LocalKeyAgreement(Buffer.from(privateKey, "base64")), logger },
      {
        peerOnline: () => life?.onPeerOnline(),
        peerOffline: () => life?.onPeerOffline(),
        signal: (_key, signal) => life?.onSignal(signal),
      },
    );
    const sessions = new IceSessionFactory({
      excludeInterfaces: [],
      excludeAddresses: [],
      stunUrls: () => link.stunUrls(),
      turn: () => link.turn(),
      logger,
    });
    life = new Peer(config.hubKey, {
      clock: systemClock,
      logger,
      dataPlane,
      signalling: linkSignalling(link, sessions),
      timing: { idleTimeoutMs: config.idleTimeoutMs ?? 0 },
    });
    lives.set(data, life);
    link.setPeers([config.hubKey]);
    link.start();
  }
  // As in Tunnelbore: a suspect path restarts ICE.
  monitor.on("suspect", (data, reason, repeat) => lives.get(data)?.onSuspect(reason, repeat));
  monitor.start();
  // As Tunnelbore's idle sweep at its interface read (every peer here has the hub's key: no lookup by key).
  const sweep =
    config.idleTimeoutMs &&
    setInterval(() => {
      const now = Date.now();
      for (const [data, life] of lives)
        life.onTrafficAge(now - Math.max(data.lastSentAt, data.lastReceivedAt));
    }, 2000);
  const report = setInterval(() => {
    let dormant = 0;
    for (const life of lives.values()) if (life.state.name === "dormant") dormant++;
    process.stdout.write(`${JSON.stringify({ connected, dormant, ...monitor.stats })}\n`);
  }, 500);
  await new Promise<void>((resolve) => process.stdin.once("end", resolve).resume());
  clearInterval(report);
  if (sweep) clearInterval(sweep);
  process.exit(0);
}

export interface Fleet {
  connected(): number;
  /** The fleet's peers that released their ICE session (lazy peers). */
  dormant(): number;
  /** The fleet's latest report, with its liveness monitor's counters. */
  stats(): string;
  stop(): void;
}

export async function startFleet(lab: ProductLab, config: FleetConfig): Promise<Fleet> {
  const child = spawn(
    "ip",
    ["netns", "exec", lab.host("fleet").ns, process.execPath, "--import", "tsx", THIS_FILE, FLEET_FLAG],
    { stdio: ["pipe", "pipe", "inherit"] },
  );
  trackChild(child);
  child.stdin?.write(`${JSON.stringify(config)}\n`);
  let connected = 0;
  let dormant = 0;
  let stats = "";
  createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      ({ connected, dormant } = JSON.parse(line) as { connected: number; dormant: number });
      stats = line;
    } catch {
      // not a report
    }
  });
  return {
    connected: () => connected,
    dormant: () => dormant,
    stats: () => stats,
    stop: () => child.stdin?.end(),
  };
}

/**
 * `count` new peers for the hub (added to its WireGuard), run by a fleet process that connects each to
 * the hub through the lab's introduction server; `idleTimeoutMs`: the fleet's peers are lazy too.
 */
export async function startHubFleet(
  lab: ProductLab,
  count: number,
  idleTimeoutMs?: number,
): Promise<{ fleet: Fleet; startedAt: number }> {
  const keys = Array.from({ length: count }, () => generateKeyPair());
  await addHubPeers(
    lab,
    keys.map((k) => encodeKey(k.publicKey)),
  );
  const startedAt = Date.now();
  const fleet = await startFleet(lab, {
    introUrl: lab.introUrl,
    hubKey: lab.host("hub").keys.publicKey,
    privateKeys: keys.map((k) => encodeKey(k.privateKey)),
    ...(idleTimeoutMs === undefined ? {} : { idleTimeoutMs }),
  });
  return { fleet, startedAt };
}

export async function addHubPeers(lab: ProductLab, publicKeys: string[], hubName = "hub"): Promise<void> {
  const hub = lab.host(hubName);
  // One `wg set` per 50 peers (argument lists stay short).
  for (let i = 0; i < publicKeys.length; i += 50) {
    const args = ["set", hub.wg.name];
    publicKeys.slice(i, i + 50).forEach((key, j) => {
      const n = i + j;
      args.push("peer", key, "allowed-ips", `10.79.${Math.floor(n / 250)}.${(n % 250) + 1}/32`);
    });
    await nsRun(hub.ns, "wg", args);
  }
}

const NFT_COUNTERS = `table inet dbg {
  chain out { type filter hook output priority 0; policy accept;
    oifname "lo" counter
    udp dport 3479 counter
    udp dport 3478 counter
    meta l4proto udp meta length < 100 counter
    meta l4proto udp meta length >= 100 counter
  }
  chain inp { type filter hook input priority 0; policy accept;
    iifname "lo" counter
    udp sport 3479 counter
    meta l4proto udp meta length < 100 counter
    meta l4proto udp meta length >= 100 counter
  }
}`;

// --- the benchmark -------------------------------------------------------------------------------

export async function benchStayingConnected(): Promise<BenchRow[]> {
  await labPreflight("staying-connected");
  clockTicks = Number((await run("getconf", ["CLK_TCK"])).trim()) || 100;
  const started = Date.now();
  const flags = ["--log-level", "info"];
  let lab: ProductLab | null = null;
  let fleet: Fleet | null = null;
  try {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim", flags },
        { name: "b", nat: "eim", flags },
        { name: "hub", nat: "eim", flags },
        { name: "fleet", nat: "eim", tunnelbore: false },
      ],
      routers: [{ name: "cafe", nat: "eim" }],
      links: [["a", "b"]],
    });
    await lab.waitForPing("a", "b");
    log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    const rows: BenchRow[] = [];

    const gaps = process.env.TBT_BENCH_ONLY !== "idle";
    const roaming: number[] = [];
    for (let i = 0; gaps && i < ROAMS; i++) {
      const target = i % 2 === 0 ? "cafe" : "a";
      const labRef = lab;
      roaming.push(
        await measureGap(lab, "a", "b", async () => {
          await labRef.lab.moveHost("a", target);
        }),
      );
      log(`roam ${i + 1} to ${target}: ${roaming.at(-1)} ms`);
    }
    if (gaps)
      rows.push({
        name: "roaming gap (a host moves to another NAT)",
        value: median(roaming),
        unit: "ms",
        note: `median of ${ROAMS}; runs ${roaming.join(", ")}; ping every ${PING_INTERVAL_MS} ms; target <= ${TARGET_ROAMING_MS}`,
      });

    for (const signal of gaps ? (["SIGTERM", "SIGKILL"] as const) : []) {
      const gaps: number[] = [];
      for (let i = 0; i < RESTARTS; i++) {
        const labRef = lab;
        gaps.push(
          await measureGap(lab, "a", "b", async () => {
            await labRef.stopTunnelbore("b", signal);
            await labRef.startTunnelbore("b");
          }),
        );
        log(`restart (${signal}) ${i + 1}: ${gaps.at(-1)} ms`);
      }
      rows.push({
        name: `restart gap (Tunnelbore on one side, ${signal === "SIGTERM" ? "stopped" : "killed"} and started)`,
        value: median(gaps),
        unit: "ms",
        note: `median of ${RESTARTS}; runs ${gaps.join(", ")}; target <= ${TARGET_RESTART_MS}`,
      });
    }

    // 200 idle peers on one Tunnelbore.
    const hubFleet = await startHubFleet(lab, FLEET_PEERS);
    fleet = hubFleet.fleet;
    const fleetStarted = hubFleet.startedAt;
    const fleetRef = fleet;
    const labRef = lab;
    await waitFor(
      async () =>
        fleetRef.connected() >= FLEET_PEERS &&
        (await labRef.status("hub")).peers.filter((p) => p.pathKind !== null).length >= FLEET_PEERS,
      { what: `${FLEET_PEERS} peers connected`, timeoutMs: 180_000, intervalMs: 500 },
    );
    const connectSeconds = (Date.now() - fleetStarted) / 1000;
    const hubStatus = await lab.status("hub");
    const kinds = new Map<string, number>();
    for (const p of hubStatus.peers)
      kinds.set(p.pathKind ?? "none", (kinds.get(p.pathKind ?? "none") ?? 0) + 1);
    log(
      `${FLEET_PEERS} peers connected in ${connectSeconds.toFixed(1)} s (${[...kinds].map(([k, n]) => `${n} ${k}`).join(", ")})`,
    );
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    const pid = tunnelborePid(lab, "hub");
    const hubNs = lab.host("hub").ns;
    if (process.env.TBT_BENCH_NFT) {
      // Debugging: where the hub's datagrams go (STUN/TURN control is small, WireGuard data large).
      await nsRun(hubNs, "nft", ["-f", "-"], NFT_COUNTERS);
    }
    const udp0 = await udpCounters(hubNs);
    const cpu0 = cpuSeconds(pid);
    const t0 = Date.now();
    await new Promise((r) => setTimeout(r, IDLE_MEASURE_MS));
    const udp1 = await udpCounters(hubNs);
    const cpu1 = cpuSeconds(pid);
    log(`fleet: ${fleet.stats()}`);
    if (process.env.TBT_BENCH_NFT) log(await nsRun(hubNs, "nft", ["list", "table", "inet", "dbg"]));
    const minutes = (Date.now() - t0) / 60_000;
    const connectedAfter = (await lab.status("hub")).peers.filter((p) => p.pathKind !== null).length;
    const sent = (udp1.out - udp0.out) / minutes / FLEET_PEERS;
    const received = (udp1.in - udp0.in) / minutes / FLEET_PEERS;
    rows.push(
      {
        name: "idle cost: datagrams sent per minute per idle connected peer",
        value: sent,
        unit: "/min",
        note: `at the hub, ${FLEET_PEERS} peers, ${(minutes * 60).toFixed(0)} s; probes and answers (werift's consent alone: 24)`,
      },
      {
        name: "idle cost: datagrams received per minute per idle connected peer",
        value: received,
        unit: "/min",
        note: `${connectedAfter} of ${FLEET_PEERS} still connected at the end`,
      },
      {
        name: `CPU of a Tunnelbore process with ${FLEET_PEERS} idle peers`,
        value: ((cpu1 - cpu0) / (minutes * 60)) * 100,
        unit: "% of a core",
        note: `RSS ${rssMiB(pid).toFixed(0)} MiB; ${FLEET_PEERS} peers connected in ${connectSeconds.toFixed(0)} s`,
      },
    );
    const hubLog = process.env.TBT_BENCH_HUB_LOG;
    if (hubLog) writeFileSync(hubLog, lab.host("hub").tunnelbore?.process.output() ?? "");
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return rows;
  } finally {
    fleet?.stop();
    await lab?.teardown();
    await teardownAll();
  }
}

if (process.argv[1] === THIS_FILE && process.argv[2] === FLEET_FLAG) {
  const line = await new Promise<string>((resolve) =>
    createInterface({ input: process.stdin }).once("line", resolve),
  );
  await runFleet(JSON.parse(line) as FleetConfig);
} else if (process.argv[1] === THIS_FILE) {
  const rows = await benchStayingConnected();
  process.stdout.write(`${formatTable(rows)}\n`);
  process.exit(0);
}
