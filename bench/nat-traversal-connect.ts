// Connect time, for bench/nat-traversal.ts: both Tunnelbores up and idle (their proactive ICE path may
// already be there), WireGuard never handshaken; from the first ping sent to the first reply. Sample 1
// is the fresh lab; samples 2-5 reset WireGuard's session by removing and re-adding the peer in one
// `wg set` on both hosts (checking that Tunnelbore does not notice: same path, same counters, no
// endpoint rewrite).
import { nsRun } from "../test/lab/netns.js";
import type { ProductLab } from "../test/lab/tunnelbore-lab.js";
import { median } from "./statistics.js";
import type { BenchRow } from "./table.js";

const CONNECT_SAMPLES = 5;
/** Ping interval while waiting for the first reply (wireguard-go stages 128 packets: 1.28 s of them). */
const PING_INTERVAL_MS = 10;
const PING_DEADLINE_S = 8;
/** Idle time before each connect measurement, longer than Tunnelbore's --poll-interval (500 ms). */
const IDLE_MS = 1500;
export const TARGET_DIRECT_MS = 1000;
export const TARGET_RELAY_MS = 2000;

export function log(text: string): void {
  process.stderr.write(`[nat-traversal] ${text}\n`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// WireGuard helpers.

/**
 * Forgets WireGuard's session with `peer` on `on`: removes the peer and adds it back with the same
 * allowed IPs and endpoint in one `wg set` (one UAPI transaction, so Tunnelbore's `wg show dump` poll
 * sees the peer either before or after, never gone).
 */
async function resetWireGuardPeer(lab: ProductLab, on: string, peer: string): Promise<void> {
  const h = lab.host(on);
  const key = lab.host(peer).keys.publicKey;
  const endpoint = await h.wg.endpointOf(key);
  await nsRun(h.ns, "wg", [
    "set",
    h.wg.name,
    "peer",
    key,
    "remove",
    "peer",
    key,
    "allowed-ips",
    `${lab.host(peer).tunnelAddress}/32`,
    "endpoint",
    endpoint,
  ]);
}

/** How often Tunnelbore on `on` rewrote a WireGuard endpoint (a re-added peer would show up here). */
function endpointRewrites(lab: ProductLab, on: string): number {
  return (lab.host(on).tunnelbore?.logs() ?? []).filter(
    (l) => l.msg === "pointed WireGuard endpoint at loopback",
  ).length;
}

// ---------------------------------------------------------------------------------------------------
// Connect time.

interface ConnectSample {
  ms: number;
  from: string;
  /** The icmp_seq of the first reply (1 unless WireGuard dropped the first requests). */
  seq: number;
  path: string;
}

/** Parses ping -D output: the first reply's receive time, sequence number and round-trip time. */
function firstReply(output: string): { seq: number; rttMs: number } | null {
  const m = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+) .*time=([\d.]+) ms/m.exec(output);
  return m ? { seq: Number(m[2]), rttMs: Number(m[3]) } : null;
}

/**
 * Pings every 10 ms until the first reply. The first request's send time is the first reply's send
 * time (receive time - rtt, ping's own timestamps) minus (seq - 1) intervals, so the result is exact
 * when seq 1 is answered, as it is when WireGuard stages the early requests until its handshake.
 */
async function pingUntilReply(ns: string, address: string): Promise<{ ms: number; seq: number }> {
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
  ]).catch((err: unknown) => {
    throw new Error(`no ping reply from ${address} within ${PING_DEADLINE_S} s: ${String(err)}`);
  });
  const reply = firstReply(out);
  if (!reply) throw new Error(`cannot parse ping output: ${out}`);
  return { ms: reply.rttMs + (reply.seq - 1) * PING_INTERVAL_MS, seq: reply.seq };
}

/** Waits until both Tunnelbores have a path of `kind`, WireGuard has never handshaken, all is idle. */
async function waitIdleWithPath(lab: ProductLab, x: string, y: string, kind: string): Promise<void> {
  for (const [on, peer] of [
    [x, y],
    [y, x],
  ] as const) {
    await lab.waitForPath(on, peer, 60_000);
    const status = await lab.peerStatus(on, peer);
    if (status.pathKind !== kind) {
      throw new Error(`${on} -> ${peer}: expected a ${kind} path, got ${status.pathKind} (${status.remote})`);
    }
    if ((await lab.host(on).wg.latestHandshakeOf(lab.host(peer).keys.publicKey)) !== 0) {
      throw new Error(`${on}: WireGuard has handshaken with ${peer} already`);
    }
  }
  await sleep(IDLE_MS);
}

export async function measureConnect(
  lab: ProductLab,
  x: string,
  y: string,
  kind: string,
  started: number,
): Promise<ConnectSample[]> {
  const samples: ConnectSample[] = [];
  for (let i = 0; i < CONNECT_SAMPLES; i++) {
    if (i > 0) {
      const before = await Promise.all([lab.peerStatus(x, y), lab.peerStatus(y, x)]);
      const rewrites = endpointRewrites(lab, x) + endpointRewrites(lab, y);
      await resetWireGuardPeer(lab, x, y);
      await resetWireGuardPeer(lab, y, x);
      await sleep(IDLE_MS);
      // Tunnelbore must not have reconfigured anything: the re-added peer is the one it had.
      const after = await Promise.all([lab.peerStatus(x, y), lab.peerStatus(y, x)]);
      for (let j = 0; j < 2; j++) {
        const b = before[j]!;
        const a = after[j]!;
        if (
          a.remote !== b.remote ||
          a.pathKind !== b.pathKind ||
          a.txBytes < b.txBytes ||
          a.rxBytes < b.rxBytes
        ) {
          throw new Error(
            `re-adding the WireGuard peer changed Tunnelbore's peer: ${JSON.stringify(b)} -> ${JSON.stringify(a)}`,
          );
        }
      }
      if (endpointRewrites(lab, x) + endpointRewrites(lab, y) !== rewrites) {
        throw new Error("re-adding the WireGuard peer made Tunnelbore rewrite an endpoint");
      }
    }
    await waitIdleWithPath(lab, x, y, kind);
    // Alternate the direction, so both the ICE-controlling and the controlled side start a handshake.
    const [from, to] = i % 2 === 0 ? [x, y] : [y, x];
    const { ms, seq } = await pingUntilReply(lab.host(from).ns, lab.host(to).tunnelAddress);
    const path = await lab.peerStatus(from, to);
    samples.push({ ms, from, seq, path: `${path.pathKind} ${path.remote}` });
    log(
      `connect ${kind} #${i + 1} ${from}->${to}: ${ms.toFixed(1)} ms (first reply seq ${seq}, ${path.pathKind} ${path.remote}) at ${((Date.now() - started) / 1000).toFixed(0)} s`,
    );
  }
  return samples;
}

export function connectRows(label: string, samples: ConnectSample[], target: number): BenchRow[] {
  const ms = samples.map((s) => s.ms);
  const list = samples.map((s) => `${s.ms.toFixed(1)}${s.seq > 1 ? `(seq ${s.seq})` : ""}`).join(", ");
  return [
    {
      name: `nat: connect time ${label}, median`,
      value: median(ms),
      unit: "ms",
      note: `target <= ${target} ms; ${samples.length} samples (#1 fresh lab, #2-5 WireGuard peer reset): ${list}`,
    },
    {
      name: `nat: connect time ${label}, max`,
      value: Math.max(...ms),
      unit: "ms",
      note: `path ${samples[0]?.path ?? "?"}`,
    },
  ];
}
