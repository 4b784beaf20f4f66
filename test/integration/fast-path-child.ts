// Child of fast-path-program.test.ts: loads the real tc program onto lo of a throwaway namespace, sets
// map entries directly, sends WireGuard-shaped datagrams between sockets on 127/8 and prints one JSON
// line (ChildResult) saying where each datagram arrived, from which address, intact or not, and how the
// program's counters moved. The test asserts on it. Run only by the test, inside `ip netns exec tbt-...`.
import { execFileSync } from "node:child_process";
import { randomFillSync } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { readFileSync } from "node:fs";
import { type EntryCounters, FastPathProgram, type MovedCounter } from "../../ebpf/loader.js";
import type { FiveTuple } from "../../src/proxy/path.js";
import { waitFor } from "../support/wait-for.js";

interface Address {
  address: string;
  port: number;
}

const ADDRESSES = {
  /** WireGuard's listen socket. */
  wg: { address: "127.0.0.1", port: 51820 },
  /** Another sender on loopback that is not WireGuard's listen port. */
  notWg: { address: "127.0.0.1", port: 51821 },
  /** L(P): WireGuard's endpoint for the peer, a 127/8 address other than 127.0.0.1. */
  loopback: { address: "127.77.0.1", port: 51822 },
  /** The path's own socket (Tunnelbore's)... */
  path: { address: "127.0.0.1", port: 40001 },
  /** ...and the peer on this host at the other end of the path. */
  peer: { address: "127.0.0.1", port: 40002 },
  /** A sender with no inbound entry. */
  stranger: { address: "127.0.0.1", port: 40003 },
} satisfies Record<string, Address>;

export type SocketName = keyof typeof ADDRESSES;

export interface Arrivals {
  count: number;
  /** Sum of payload lengths. */
  bytes: number;
  /** Datagrams per source "address:port". */
  from: Record<string, number>;
  /** Datagrams whose payload differs from every datagram sent, or that arrived twice. */
  damaged: number;
}

export interface Counters {
  packets: number;
  bytes: number;
}

export interface ScenarioResult {
  sent: number;
  sentBytes: number;
  arrivals: Record<SocketName, Arrivals>;
  /** Counter deltas over the scenario; null when the entry is not in the map. */
  outbound: Counters | null;
  inbound: Counters | null;
}

export interface ChildResult {
  /** Every socket's "address:port". */
  addresses: Record<SocketName, string>;
  scenarios: Record<string, ScenarioResult>;
  /** Nonzero changes of the Ip and Udp counters in /proc/net/snmp over the run: drops show up here. */
  snmp: Record<string, number>;
  /** `tc filter show dev lo ingress` after close(). */
  filtersAfterClose: string;
  /**
   * After the burst, with 5,000 more entries in each map: countersMany (batched passes) and one
   * lookup per key, for the path's entries and for keys that have none (bigints as strings).
   */
  batched: { many: (string[] | null)[]; single: (string[] | null)[] };
  /** countersMoved at the batched step (first look, and again at once), after "set again", and in full. */
  moved: {
    first: { count: number; path: string[]; fillers: number; fillersInFull: number };
    again: string[];
    after: string[];
    inFull: number;
  };
}

interface Send {
  from: SocketName;
  to: SocketName;
  payload: Buffer;
}

// The program attaches to lo: in the host's namespace it would rewrite the host's own traffic.
const ns = execFileSync("ip", ["netns", "identify"], { encoding: "utf8" }).trim();
if (!ns.startsWith("tbt-")) {
  console.error(`fast-path-child: refusing to run outside a tbt-* network namespace (in "${ns}")`);
  process.exit(2);
}

const names = Object.keys(ADDRESSES) as SocketName[];
const show = (a: Address): string => `${a.address}:${a.port}`;
/** Datagrams in flight at most: the receivers (in this process) drain long before a socket buffer fills. */
const WINDOW = 16;
/** Ends a scenario at every socket; not transport data (too short), so the program leaves it alone. */
const MARKER = Buffer.from("end of scenario");

/** Waits for `condition`; a datagram that never comes shows in the result rather than failing here. */
const until = (condition: () => boolean, what: string): Promise<unknown> =>
  waitFor(condition, { what, timeoutMs: 2000, intervalMs: 1 }).catch(() => undefined);

function snmp(): Map<string, number> {
  const values = new Map<string, number>();
  const lines = readFileSync("/proc/net/snmp", "utf8").split("\n");
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const keys = (lines[i] ?? "").split(/\s+/);
    const nums = (lines[i + 1] ?? "").split(/\s+/);
    const proto = keys[0]?.replace(":", "");
    if (proto !== "Ip" && proto !== "Udp") continue;
    for (let j = 1; j < keys.length; j++) values.set(`${proto}${keys[j]}`, Number(nums[j]));
  }
  return values;
}

/** Every payload sent, by the sequence number it carries at bytes 8..12 (the transport counter field). */
const sentPayloads = new Map<number, Buffer>();
let seq = 0;
/** Datagrams received by any socket in the current scenario. */
let received = 0;

function message(type: number, length: number, reserved = 0): Buffer {
  const b = Buffer.alloc(length);
  randomFillSync(b);
  b.writeUInt32LE(type | (reserved << 8), 0);
  b.writeUInt32LE(++seq, 8);
  sentPayloads.set(seq, b);
  return b;
}

const emptyArrivals = (): Arrivals => ({ count: 0, bytes: 0, from: {}, damaged: 0 });

class Recorder {
  arrivals = emptyArrivals();
  markers = 0;
  private readonly seen = new Set<number>();

  constructor(readonly socket: Socket) {
    socket.on("message", (msg, rinfo) => {
      if (msg.equals(MARKER)) {
        this.markers++;
        return;
      }
      received++;
      const a = this.arrivals;
      a.count++;
      a.bytes += msg.length;
      const from = `${rinfo.address}:${rinfo.port}`;
      a.from[from] = (a.from[from] ?? 0) + 1;
      const n = msg.length >= 12 ? msg.readUInt32LE(8) : -1;
      if (!sentPayloads.get(n)?.equals(msg) || this.seen.has(n)) a.damaged++;
      this.seen.add(n);
    });
  }
}

async function bind(at: Address): Promise<Recorder> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(at.port, at.address, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  return new Recorder(socket);
}

const program = await FastPathProgram.load("tbfpp0");
const recorders = new Map<SocketName, Recorder>();
let result: Omit<ChildResult, "filtersAfterClose"> | null = null;
try {
  for (const name of names) recorders.set(name, await bind(ADDRESSES[name]));
  const { wg, loopback, path, peer } = ADDRESSES;
  const flow: FiveTuple = {
    localAddress: path.address,
    localPort: path.port,
    remoteAddress: peer.address,
    remotePort: peer.port,
  };

  const setEntries = (): void => {
    program.setOutbound({
      loopbackAddress: loopback.address,
      loopbackPort: loopback.port,
      ...flow,
      wireguardPort: wg.port,
      ifindex: 1,
      toLoopback: true,
      // What `ip route get` says for a peer on this host; into lo the datagram keeps its local route
      // instead (TC_ACT_OK, no redirect), so the next hop is never used.
      nextHop: peer.address,
    });
    program.setInbound({
      ...flow,
      loopbackAddress: loopback.address,
      loopbackPort: loopback.port,
      wireguardPort: wg.port,
      loopbackIfindex: 1,
    });
  };
  const counters = (): { outbound: EntryCounters | null; inbound: EntryCounters | null } => ({
    outbound: program.outboundCounters(loopback.address, loopback.port),
    inbound: program.inboundCounters(flow),
  });
  const delta = (after: EntryCounters | null, before: EntryCounters | null): Counters | null =>
    after && {
      packets: Number(after.packets - (before?.packets ?? 0n)),
      bytes: Number(after.bytes - (before?.bytes ?? 0n)),
    };

  const scenarios: Record<string, ScenarioResult> = {};
  const scenario = async (name: string, sends: Send[]): Promise<void> => {
    for (const r of recorders.values()) r.arrivals = emptyArrivals();
    received = 0;
    const before = counters();
    const send = (from: SocketName, to: Address, payload: Buffer): Promise<void> =>
      new Promise<void>((resolve, reject) =>
        recorders
          .get(from)
          ?.socket.send(payload, to.port, to.address, (err) => (err ? reject(err) : resolve())),
      );
    for (const [i, s] of sends.entries()) {
      await until(() => received >= i - WINDOW, "the receivers to catch up");
      await send(s.from, ADDRESSES[s.to], s.payload);
    }
    await until(() => received >= sends.length, "every datagram of the scenario");
    // After everything else, a marker to every socket: each reads in order, so once every marker is
    // in, whatever went astray or arrived twice is in too.
    const markers = new Map(names.map((n) => [n, recorders.get(n)?.markers ?? 0]));
    for (const n of names) await send("notWg", ADDRESSES[n], MARKER);
    await until(
      () => names.every((n) => (recorders.get(n)?.markers ?? 0) > (markers.get(n) ?? 0)),
      "the end-of-scenario markers",
    );
    const after = counters();
    scenarios[name] = {
      sent: sends.length,
      sentBytes: sends.reduce((n, s) => n + s.payload.length, 0),
      arrivals: Object.fromEntries(
        names.map((n) => [n, recorders.get(n)?.arrivals ?? emptyArrivals()]),
      ) as Record<SocketName, Arrivals>,
      outbound: delta(after.outbound, before.outbound),
      inbound: delta(after.inbound, before.inbound),
    };
  };
  const times = (n: number, make: () => Send[]): Send[] => Array.from({ length: n }, make).flat();
  const transport = (length: number): Buffer => message(4, length);

  const snmpBefore = snmp();
  setEntries();
  // 1. WireGuard -> L(P) leaves as the path's socket -> the peer.
  await scenario("outbound", [
    ...times(10, () => [{ from: "wg", to: "loopback", payload: transport(1420) }]),
    { from: "wg", to: "loopback", payload: transport(32) },
  ]);
  // 2. The peer -> the path's socket reaches WireGuard from L(P).
  await scenario("inbound", [
    ...times(10, () => [{ from: "peer", to: "path", payload: transport(1420) }]),
    { from: "peer", to: "path", payload: transport(32) },
  ]);
  // 3. Not WireGuard transport data, or not ours: the original destination gets it unchanged.
  await scenario("outbound from another port", [{ from: "notWg", to: "loopback", payload: transport(1420) }]);
  await scenario("outbound handshake initiation", [{ from: "wg", to: "loopback", payload: message(1, 148) }]);
  await scenario("outbound short transport", [{ from: "wg", to: "loopback", payload: transport(31) }]);
  await scenario("outbound nonzero reserved bytes", [
    { from: "wg", to: "loopback", payload: message(4, 1420, 1) },
  ]);
  await scenario("inbound from an unknown remote", [
    { from: "stranger", to: "path", payload: transport(1420) },
  ]);
  await scenario("inbound handshake response", [{ from: "peer", to: "path", payload: message(2, 92) }]);
  await scenario("inbound short transport", [{ from: "peer", to: "path", payload: transport(31) }]);
  // 5. Both directions interleaved, 200 each: not a one-off.
  await scenario(
    "burst",
    times(200, () => [
      { from: "wg", to: "loopback", payload: transport(1420) },
      { from: "peer", to: "path", payload: transport(1420) },
    ]),
  );
  // Batched reads (BPF_MAP_LOOKUP_BATCH) answer as lookups do, across more than one batch call.
  const fillerKey = (i: number) => ({ loopbackAddress: `127.9.${i >> 8}.${i & 255}`, loopbackPort: 51822 });
  const fillerFlow = (i: number): FiveTuple => ({ ...flow, remoteAddress: `198.51.${i >> 8}.${i & 255}` });
  for (let i = 0; i < 5000; i++) {
    program.setOutbound({ ...fillerKey(i), ...flow, wireguardPort: wg.port, ifindex: 1, toLoopback: true });
    program.setInbound({ ...fillerFlow(i), ...fillerKey(i), wireguardPort: wg.port, loopbackIfindex: 1 });
  }
  const outKeys = [{ loopbackAddress: loopback.address, loopbackPort: loopback.port }, fillerKey(6000)];
  const inFlows = [flow, fillerFlow(6000), { ...flow, remoteAddress: "fd00::1", localAddress: "fd00::2" }];
  const text = (c: EntryCounters | null): string[] | null => c && [c.packets, c.bytes, c.lastNs].map(String);
  const many = program.countersMany(outKeys, inFlows);
  const batched = {
    many: [...many.outbound, ...many.inbound].map(text),
    single: [
      ...outKeys.map((k) => program.outboundCounters(k.loopbackAddress, k.loopbackPort)),
      ...inFlows.map((f) => program.inboundCounters(f)),
    ].map(text),
  };
  // countersMoved: at the first look the entries used since they were set (not the 10,000 fresh
  // fillers), then none until something moves; in full, every entry.
  const summary = (moved: MovedCounter[]) =>
    moved.map((m) => `${m.direction} ${m.loopback} ${m.counters.packets}`).sort();
  const first = program.countersMoved(false);
  const movedFirst = {
    count: first.length,
    path: summary(first.filter((m) => m.loopback === show(loopback))),
    fillers: first.filter((m) => m.loopback.startsWith("127.9.")).length,
    fillersInFull: program.countersMoved(true).filter((m) => m.loopback.startsWith("127.9.")).length,
  };
  const movedAgain = summary(program.countersMoved(false));
  for (let i = 0; i < 5000; i++) {
    program.deleteOutbound(fillerKey(i).loopbackAddress, fillerKey(i).loopbackPort);
    program.deleteInbound(fillerFlow(i));
  }
  // 4. Entries deleted: back to the original destinations.
  program.deleteOutbound(loopback.address, loopback.port);
  program.deleteInbound(flow);
  await scenario("after delete", [
    { from: "wg", to: "loopback", payload: transport(1420) },
    { from: "peer", to: "path", payload: transport(1420) },
  ]);
  // Set again, they forward again, counting from zero.
  setEntries();
  await scenario("set again", [
    { from: "wg", to: "loopback", payload: transport(1420) },
    { from: "peer", to: "path", payload: transport(1420) },
  ]);

  // The path's entries set again and used once each; the fillers gone (forgotten, not reported).
  const movedAfter = summary(program.countersMoved(false));
  const movedInFull = program.countersMoved(true).length;

  const snmpDelta: Record<string, number> = {};
  for (const [k, v] of snmp()) {
    const d = v - (snmpBefore.get(k) ?? 0);
    if (d !== 0) snmpDelta[k] = d;
  }
  const addresses = Object.fromEntries(names.map((n) => [n, show(ADDRESSES[n])])) as Record<
    SocketName,
    string
  >;
  result = {
    addresses,
    scenarios,
    snmp: snmpDelta,
    batched,
    moved: { first: movedFirst, again: movedAgain, after: movedAfter, inFull: movedInFull },
  };
} catch (err) {
  console.error(err);
  process.exitCode = 1;
} finally {
  await program.close();
  for (const r of recorders.values()) r.socket.close();
}
if (result) {
  const filtersAfterClose = execFileSync("tc", ["filter", "show", "dev", "lo", "ingress"], {
    encoding: "utf8",
  });
  console.log(JSON.stringify({ ...result, filtersAfterClose } satisfies ChildResult));
}
