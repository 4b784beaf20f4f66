// A WireGuard handshake the peer sends the moment its side nominates reaches our side before our own
// nomination (src/ice/early-handshake.ts): it must be delivered once our path attaches, not handed to
// werift and lost (WireGuard would wait 5 s to retry). Two IceSessions on loopback, as in
// ice-session.test.ts: candidates restricted to 127.0.0.1, no STUN server.
import { createSocket } from "node:dgram";
import { networkInterfaces } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { CandidatePairState } from "werift-ice";
import { createCandidateFilter } from "../../src/ice/candidate-filter.js";
import type { IcePath } from "../../src/ice/ice-path.js";
import { IceSession } from "../../src/ice/ice-session.js";
import type { IceSignal } from "../../src/ice/ice-signal.js";
import { buildInitiation, generateKeyPair } from "../support/noise.js";
import { waitFor } from "../support/wait-for.js";

const filter = createCandidateFilter({
  excludeInterfaces: Object.keys(networkInterfaces()).filter((name) => name !== "lo"),
  excludeAddresses: [],
  allowLoopback: true,
});
const loopbackOnly = (addr: string) => filter(addr) || !addr.startsWith("127.");

const sessions: IceSession[] = [];

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

/** A controlling and a controlled session, signalling to each other; `onSignal` sees every signal. */
function makePair(
  onSignal: (to: "a" | "b", m: IceSignal) => void = () => undefined,
): [IceSession, IceSession] {
  const common = {
    stunUrls: [],
    extraHostAddresses: ["127.0.0.1"],
    excludeAddresses: loopbackOnly,
    ipv6: false,
  };
  const sessionsOf: { a?: IceSession; b?: IceSession } = {};
  const channel = (to: "a" | "b") => (m: IceSignal) => {
    onSignal(to, m);
    const copy = JSON.parse(JSON.stringify(m)) as IceSignal;
    setImmediate(() => sessionsOf[to]?.handleSignal(copy));
  };
  const a = new IceSession({ ...common, controlling: true, sendSignal: channel("b") });
  const b = new IceSession({ ...common, controlling: false, sendSignal: channel("a") });
  sessionsOf.a = a;
  sessionsOf.b = b;
  sessions.push(a, b);
  return [a, b];
}

function initiation(senderIndex: number): Buffer {
  const ours = generateKeyPair();
  const theirs = generateKeyPair();
  return Buffer.from(
    buildInitiation({
      initiatorPrivateKey: ours.privateKey,
      responderPublicKey: theirs.publicKey,
      senderIndex,
    }),
  );
}

describe("a handshake that arrives before our side nominates", () => {
  it("is delivered once our path attaches, whichever side nominates first", async () => {
    // Three fresh pairs: which side reports its nomination first varies, and each case must hold.
    for (let round = 0; round < 3; round++) {
      const [a, b] = makePair();
      const handshake = initiation(round + 1);
      const delivered: Buffer[] = [];
      let first: IceSession | null = null;
      let otherHadPath = false;
      for (const [self, other] of [
        [a, b],
        [b, a],
      ] as const) {
        self.once("path", (path) => {
          if (first) {
            // The second side: attach, as the proxy does when it sets the path.
            path.onDatagram = (d) => delivered.push(Buffer.from(d));
            return;
          }
          // The first side sends at once, as the proxy sends WireGuard's held initiation.
          first = self;
          otherHadPath = other.path !== null;
          path.send(handshake);
        });
      }
      b.start();
      a.start();
      await waitFor(() => delivered.length > 0, {
        what: `the early handshake delivered (round ${round + 1})`,
      });
      expect(delivered).toEqual([handshake]);
      // It did arrive before the other side had its path (listeners run in the session's emit).
      expect(otherHadPath).toBe(false);
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("data that comes first (a woken dormant peer, its WireGuard session still valid) is delivered too, after a handshake", async () => {
    for (let round = 0; round < 3; round++) {
      const [a, b] = makePair();
      const data = Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(60, round + 1)]);
      const handshake = initiation(round + 10);
      // Round 0: data alone; then a handshake and data, as a peer woken by data whose WireGuard rekeys.
      const sent = round === 0 ? [data] : [handshake, data];
      const delivered: Buffer[] = [];
      let first: IceSession | null = null;
      for (const self of [a, b]) {
        self.once("path", (path) => {
          if (first) {
            path.onDatagram = (d) => delivered.push(Buffer.from(d));
            return;
          }
          first = self;
          for (const datagram of sent) path.send(datagram);
        });
      }
      b.start();
      a.start();
      await waitFor(() => delivered.length >= sent.length, {
        what: `the early datagrams delivered (round ${round + 1})`,
      });
      expect(delivered).toEqual(sent);
      await Promise.all([a.close(), b.close()]);
    }
  });

  it("is not kept from an address the check list does not know", async () => {
    let bHostPort = 0;
    const [a, b] = makePair((to, m) => {
      // B's host candidate, as A learns it: "candidate:F 1 udp PRIO 127.0.0.1 PORT typ host ...".
      if (to === "a" && m.t === "candidate" && bHostPort === 0) bHostPort = Number(m.candidate.split(" ")[5]);
    });
    const pathOf = (s: IceSession) => new Promise<IcePath>((r) => s.once("path", r));
    const paths = Promise.all([pathOf(a), pathOf(b)]);
    b.start();
    a.start();
    await waitFor(() => bHostPort > 0, { what: "B's host candidate" });
    const stranger = createSocket("udp4");
    await new Promise<void>((r) => stranger.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((resolve, reject) =>
      stranger.send(initiation(2), bHostPort, "127.0.0.1", (err) => (err ? reject(err) : resolve())),
    );
    const [pa, pb] = await paths;
    stranger.close();
    const delivered: Buffer[] = [];
    pb.onDatagram = (d) => delivered.push(Buffer.from(d));
    // A's datagram after the stranger's: once it is delivered, the stranger's would have been too.
    const real = Buffer.from("from the peer".padEnd(64, "."));
    pa.send(real);
    await waitFor(() => delivered.length > 0, { what: "A's datagram delivered" });
    expect(delivered).toEqual([real]);
  });

  it("is held while its pair's check has not succeeded, and delivered once it has", async () => {
    const [a, b] = makePair();
    const pathOf = (s: IceSession) => new Promise<IcePath>((r) => s.once("path", r));
    const paths = Promise.all([pathOf(a), pathOf(b)]);
    b.start();
    a.start();
    const [pa, pb] = await paths;
    const delivered: Buffer[] = [];
    pb.onDatagram = (d) => delivered.push(Buffer.from(d));
    const pair = pb.pair!;
    // As when the peer's check of a pair succeeded first and it sent at once: ours is still running.
    pair.updateState(CandidatePairState.IN_PROGRESS);
    const handshake = initiation(3);
    pb.hold({ data: handshake, protocol: pair.protocol, addr: pair.remoteAddr, at: Date.now() });
    // A's datagram after it is delivered straight away (it comes on the pair in use): a barrier.
    const real = Buffer.from("from the peer".padEnd(64, "."));
    pa.send(real);
    await waitFor(() => delivered.length > 0, { what: "A's datagram delivered" });
    expect(delivered).toEqual([real]);
    pair.updateState(CandidatePairState.SUCCEEDED);
    await waitFor(() => delivered.length > 1, { what: "the held handshake delivered" });
    expect(delivered).toEqual([real, handshake]);
  });
});
