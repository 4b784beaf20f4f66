// Two IceSessions in one process, connected by an in-memory signalling channel, on loopback only:
// candidates are restricted to 127.0.0.1 (the filter excludes every real interface), no STUN server.
import { networkInterfaces } from "node:os";
import { createCandidateFilter } from "../../src/ice/candidate-filter.js";
import { IceSession, type IceSessionOptions } from "../../src/ice/ice-session.js";
import type { IceSignal } from "../../src/ice/ice-signal.js";
import type { PeerPath } from "../../src/proxy/path.js";

const filter = createCandidateFilter({
  excludeInterfaces: Object.keys(networkInterfaces()).filter((name) => name !== "lo"),
  excludeAddresses: [],
  allowLoopback: true,
});
// Belt and braces: whatever a test feeds in, no check may leave loopback.
export const loopbackOnly = (addr: string) => filter(addr) || !addr.startsWith("127.");

export interface Pair {
  a: IceSession; // controlling
  b: IceSession; // controlled
  toA: IceSignal[];
  toB: IceSignal[];
  /** While false, signals are held (to reorder or drop them in tests). */
  deliver: { a: boolean; b: boolean };
}

/** Every session made, for the test's afterEach to close. */
export const sessions: IceSession[] = [];

export function makePair(extra: Partial<IceSessionOptions> = {}): Pair {
  const pair = { toA: [], toB: [], deliver: { a: true, b: true } } as unknown as Pair;
  // JSON round trip: the real channel serialises; nothing may rely on object identity.
  const channel = (to: () => IceSession, log: IceSignal[], open: () => boolean) => (m: IceSignal) => {
    const copy = JSON.parse(JSON.stringify(m)) as IceSignal;
    log.push(copy);
    if (open()) setImmediate(() => to().handleSignal(copy));
  };
  const common = {
    stunUrls: [],
    extraHostAddresses: ["127.0.0.1"],
    excludeAddresses: loopbackOnly,
    ipv6: false,
    previousPathGraceMs: 500,
    ...extra,
  };
  pair.a = new IceSession({
    ...common,
    controlling: true,
    sendSignal: channel(
      () => pair.b,
      pair.toB,
      () => pair.deliver.b,
    ),
  });
  pair.b = new IceSession({
    ...common,
    controlling: false,
    sendSignal: channel(
      () => pair.a,
      pair.toA,
      () => pair.deliver.a,
    ),
  });
  sessions.push(pair.a, pair.b);
  return pair;
}

export function nextPath(session: IceSession, timeoutMs = 10_000): Promise<PeerPath> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no path in time")), timeoutMs);
    session.once("path", (p) => {
      clearTimeout(timer);
      resolve(p);
    });
  });
}

export async function connect(pair: Pair): Promise<{ pa: PeerPath; pb: PeerPath; ms: number }> {
  const t0 = performance.now();
  const paths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
  pair.b.start();
  pair.a.start();
  const [pa, pb] = await paths;
  return { pa, pb, ms: performance.now() - t0 };
}
