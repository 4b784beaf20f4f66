// Lazy peers (issue 15): one Tunnelbore ("hub", real wireguard-go, privilege separation) with N
// WireGuard peers that all run ICE with it from a fleet process (bench/staying-connected.ts: per key
// an IntroLink, ICE sessions and a Peer, lazy too), and one real peer "a" (wireguard-go and Tunnelbore).
// Measured: the hub's UDP sockets, RSS and CPU (parent and worker) with every peer connected, then once
// every peer went dormant after `--idle-timeout`; and the first ping from a to the hub while a's peer
// is dormant on both sides (WireGuard's session still valid: its data wakes the path; a handshake takes
// the cold-start path, bench/cold-start.ts), from the echo request to its reply.
//   npm run build && npx tsx bench/lazy-peers.ts      (TBT_BENCH_LAZY_PEERS=N, default 500;
//   TBT_BENCH_LAZY_DEBUG=DIR writes the hub's UDP sockets and log, once every peer is dormant, to DIR)
import { readFileSync, writeFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import type { PeerStatus } from "../src/control/status.js";
import { teardownAll } from "../test/lab/netns.js";
import { ping } from "../test/lab/ping.js";
import { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { processTree, udpSocketsOf } from "../test/lab/udp-sockets.js";
import { waitFor } from "../test/support/wait-for.js";
import { labPreflight } from "./lab-preflight.js";
import { processCpuSeconds, rssBytes } from "./proc-stats.js";
import { median } from "./statistics.js";
import { type Fleet, startHubFleet } from "./staying-connected.js";
import { type BenchRow, formatTable } from "./table.js";

const THIS_FILE = fileURLToPath(import.meta.url);
const PEERS = Number(process.env.TBT_BENCH_LAZY_PEERS ?? 500);
const IDLE_TIMEOUT_S = 60;
/** The fleet is one NAT address: the introduction server's per-address caps (256, 64) raised for it. */
const INTRO_FLAGS = ["--max-conns-per-address", "20000", "--max-pending-per-address", "20000"];
const MEASURE_MS = 30_000;
const FIRST_PACKETS = 3;
const TARGETS = { firstPacketMs: 1000, rssMiB: 300, idleCpu: 2 };

function log(text: string): void {
  process.stderr.write(`[lazy-peers] ${text}\n`);
}

/** Tunnelbore's processes, the privileged parent and its worker (not a `wg` or `ip` they run meanwhile). */
function tunnelboreProcesses(rootPid: number): number[] {
  return [...processTree(rootPid)].filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "node";
    } catch {
      return false; // gone
    }
  });
}

/** The hub's processes (parent and worker): RSS in MiB and CPU in % of a core over `ms`. */
async function cost(rootPid: number, ms: number): Promise<{ rssMiB: number; cpu: number }> {
  const pids = tunnelboreProcesses(rootPid);
  const cpu0 = pids.map((pid) => processCpuSeconds(pid));
  await sleep(ms);
  const cpu = pids.reduce((sum, pid, i) => sum + processCpuSeconds(pid) - cpu0[i]!, 0);
  const rss = pids.reduce((sum, pid) => sum + rssBytes(pid), 0);
  return { rssMiB: rss / 2 ** 20, cpu: (cpu / (ms / 1000)) * 100 };
}

export async function benchLazyPeers(): Promise<BenchRow[]> {
  await labPreflight("lazy-peers");
  const started = Date.now();
  // The default poll interval (the lab's is 500 ms): the idle sweep rides on it, and the hub's idle CPU
  // should be a service's.
  const flags = ["--log-level", "info", "--idle-timeout", `${IDLE_TIMEOUT_S}s`, "--poll-interval", "2000"];
  let lab: ProductLab | null = null;
  let fleet: Fleet | null = null;
  try {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim", flags },
        { name: "hub", nat: "eim", flags },
        { name: "fleet", nat: "eim", tunnelbore: false },
      ],
      links: [["a", "hub"]],
      introFlags: INTRO_FLAGS,
    });
    const labRef = lab;
    await lab.waitForPing("a", "hub");
    const hubPid = lab.host("hub").tunnelbore?.process.child.pid;
    if (hubPid === undefined) throw new Error("no tunnelbore on the hub");
    const hubSockets = async () => (await udpSocketsOf(labRef.host("hub").ns, hubPid)).length;
    // A hub busy connecting hundreds of peers on 2 cores may not answer status within 5 s: asked again.
    const hubPeers = async (): Promise<PeerStatus[]> => {
      for (;;) {
        try {
          return (await labRef.status("hub")).peers;
        } catch (err) {
          log(`status: ${(err as Error).message}; asking again`);
        }
      }
    };
    log(`lab up in ${((Date.now() - started) / 1000).toFixed(1)} s`);

    const hubFleet = await startHubFleet(lab, PEERS, IDLE_TIMEOUT_S * 1000);
    fleet = hubFleet.fleet;
    const fleetStarted = hubFleet.startedAt;
    const fleetRef = fleet;
    // Connected at once (proactive while recently active); the first may rest before the last connects:
    // the peak is taken (peers connected, the hub's sockets and RSS then) until every peer connected or
    // the first idle timeout is over.
    let connectedPeers = 0;
    let connectSeconds = 0;
    let connectedSockets = 0;
    let connectedRss = 0;
    while (Date.now() - fleetStarted < IDLE_TIMEOUT_S * 1000 && connectedPeers < PEERS) {
      const now = (await hubPeers()).filter((p) => p.pathKind !== null).length;
      if (now > connectedPeers) {
        connectedPeers = now;
        connectSeconds = (Date.now() - fleetStarted) / 1000;
        connectedSockets = await hubSockets();
        connectedRss = tunnelboreProcesses(hubPid).reduce((sum, pid) => sum + rssBytes(pid), 0) / 2 ** 20;
      }
      await sleep(1000);
    }
    const connected = { rssMiB: connectedRss };
    log(
      `peak: ${connectedPeers} connected ${connectSeconds.toFixed(1)} s after the fleet started: ${connectedSockets} sockets, RSS ${connectedRss.toFixed(0)} MiB`,
    );

    await waitFor(
      async () => (await hubPeers()).every((p) => p.state === "dormant") && fleetRef.dormant() === PEERS,
      { what: "every peer dormant", timeoutMs: 4 * IDLE_TIMEOUT_S * 1000, intervalMs: 1000 },
    );
    log(`every peer dormant ${((Date.now() - fleetStarted) / 1000).toFixed(0)} s after the fleet started`);
    await sleep(5000);
    const dormantSockets = await hubSockets();
    const debugDir = process.env.TBT_BENCH_LAZY_DEBUG;
    if (debugDir) {
      writeFileSync(`${debugDir}/sockets.txt`, (await udpSocketsOf(lab.host("hub").ns, hubPid)).join("\n"));
      writeFileSync(`${debugDir}/hub.log`, lab.host("hub").tunnelbore?.process.output() ?? "");
    }
    const dormant = await cost(hubPid, MEASURE_MS);
    const stillDormant = (await hubPeers()).filter((p) => p.state === "dormant").length;
    log(
      `dormant: ${dormantSockets} sockets, RSS ${dormant.rssMiB.toFixed(0)} MiB, CPU ${dormant.cpu.toFixed(2)} %, ${stillDormant} still dormant`,
    );

    // The first packet to a dormant peer: the echo request's round trip is the whole wake.
    const firstPackets: number[] = [];
    const aKey = lab.host("a").keys.publicKey;
    for (let i = 0; i < FIRST_PACKETS; i++) {
      if (i > 0) {
        await waitFor(
          async () =>
            (await labRef.peerStatus("a", "hub")).state === "dormant" &&
            (await hubPeers()).find((p) => p.publicKey === aKey)?.state === "dormant",
          { what: "a and the hub dormant again", timeoutMs: 3 * IDLE_TIMEOUT_S * 1000, intervalMs: 500 },
        );
      }
      const result = await ping(lab.host("a").ns, lab.host("hub").tunnelAddress, { count: 1, timeout: 5000 });
      const first = /icmp_seq=1 .*time=([\d.]+) ms/.exec(result.output);
      firstPackets.push(first ? Number(first[1]) : Number.POSITIVE_INFINITY);
      log(`first packet ${i + 1}: ${first ? `${first[1]} ms` : "lost"}`);
    }

    // Sessions closed while still gathering release their sockets once gathering ends (ice-agent.ts).
    const laterSockets = await hubSockets();
    log(`sockets at the end: ${laterSockets}`);
    log(`done in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return [
      {
        name: "first packet to a dormant peer answered (ping through WireGuard, both sides dormant)",
        value: median(firstPackets),
        unit: "ms",
        note: `median of ${FIRST_PACKETS}: ${firstPackets.map((ms) => ms.toFixed(0)).join(", ")}; target <= ${TARGETS.firstPacketMs}`,
      },
      {
        name: `hub's UDP sockets: ${PEERS} peers connected -> dormant`,
        value: dormantSockets,
        unit: "sockets",
        note: `5 s after every peer went dormant; ${laterSockets} at the end (after the first packets, a and the hub awake); ${connectedSockets} at the peak, ${connectedPeers} connected (${connectSeconds.toFixed(0)} s after the fleet started)`,
      },
      {
        name: `hub's RSS (parent + worker), ${PEERS} dormant ICE peers`,
        value: dormant.rssMiB,
        unit: "MiB",
        note: `${connected.rssMiB.toFixed(0)} MiB at the peak of connected peers; target <= ${TARGETS.rssMiB} (10,000 peers)`,
      },
      {
        name: `hub's idle CPU (parent + worker), ${PEERS} dormant ICE peers`,
        value: dormant.cpu,
        unit: "% of a core",
        note: `over ${MEASURE_MS / 1000} s; target <= ${TARGETS.idleCpu} (10,000 peers)`,
      },
    ];
  } finally {
    fleet?.stop();
    await lab?.teardown();
    await teardownAll();
  }
}

if (process.argv[1] === THIS_FILE) {
  const rows = await benchLazyPeers();
  process.stdout.write(`${formatTable(rows)}\n`);
  process.exit(0);
}
