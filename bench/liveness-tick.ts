// The liveness monitor's tick at a hub of 10,000 peers (issue 16): CPU time per tick with every static
// peer idle, with 100 of them active (WireGuard sends and the peer answers between every two ticks), and
// with 10,000 idle ICE peers (renewal probes answered at once). A fake clock advances 250 ms per tick,
// so the simulated minutes include every time-based judgement (renewal probes, quiet). CPU-only, a few
// seconds. Run standalone: npx tsx bench/liveness-tick.ts
import type { BatchedUdpSocket } from "../src/proxy/batched-udp.js";
import { LivenessMonitor, type ProbeablePath } from "../src/proxy/liveness.js";
import type { PeerPath } from "../src/proxy/path.js";
import { ProxyPeer } from "../src/proxy/proxy-peer.js";
import { type BenchRow, formatTable } from "./table.js";

const PEERS = 10_000;
const TICK_MS = 250;

function cpuUs(): number {
  const { user, system } = process.cpuUsage();
  return user + system;
}

function staticPath(i: number): PeerPath {
  return {
    kind: "static",
    remote: `198.18.${i >> 8}.${i & 255}:51820`,
    onDatagram: null,
    send(): void {},
    close(): void {},
  };
}

class AnsweringPath implements ProbeablePath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.1:1000";
  onDatagram = null;
  send(): void {}
  close(): void {}
  probe(): Promise<number | null> {
    return Promise.resolve(5);
  }
}

function makePeers(ice: boolean): ProxyPeer[] {
  const socket = {} as BatchedUdpSocket;
  const peers: ProxyPeer[] = [];
  for (let i = 0; i < PEERS; i++) {
    const key = new Uint8Array(32);
    key[0] = i & 255;
    key[1] = i >> 8;
    const peer = new ProxyPeer(`peer${i}`, key, { address: "127.0.0.1", port: 20_000 + i }, socket);
    peer.path = ice ? new AnsweringPath() : staticPath(i);
    peers.push(peer);
  }
  return peers;
}

/**
 * CPU µs per tick, the least of three rounds of `ticks` ticks after a warm-up round (the least is the
 * one least disturbed by garbage collection and other processes), `active` peers sending and answered.
 */
async function measure(ice: boolean, active: number, ticks: number): Promise<number> {
  const peers = makePeers(ice);
  // As the proxy gives them: a Map's values.
  const byKey = new Map(peers.map((peer) => [peer.publicKey, peer]));
  let now = 1_000_000;
  const monitor = new LivenessMonitor(() => byKey.values(), { now: () => now });
  let least = Infinity;
  for (let round = 0; round < 4; round++) {
    const start = cpuUs();
    for (let t = 0; t < ticks; t++) {
      now += TICK_MS;
      for (let i = 0; i < active; i++) {
        const peer = peers[i * Math.floor(PEERS / active)]!;
        peer.lastSentAt = now - 10;
        peer.lastReceivedAt = now - 5;
      }
      monitor.tick();
      // Probe answers arrive between ticks.
      if (ice) await Promise.resolve();
    }
    if (round > 0) least = Math.min(least, (cpuUs() - start) / ticks);
  }
  return least;
}

const ticks = 1200; // 5 simulated minutes a round
const rows: BenchRow[] = [];
const cases = [
  { name: "10,000 static peers, idle", ice: false, active: 0 },
  { name: "10,000 static peers, 100 active", ice: false, active: 100 },
  { name: "10,000 ICE peers, idle (renewal probes answered)", ice: true, active: 0 },
];
for (const c of cases) {
  const us = await measure(c.ice, c.active, ticks);
  rows.push({
    name: c.name,
    value: us,
    unit: "µs/tick",
    note: `${((us * 4) / 1e4).toFixed(3)} % of a core at 4 ticks/s`,
  });
}
console.log(formatTable(rows));
