// The idle sweep: each peer's quiet time from the data plane's stamps (user space and kernel alike).
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { sweepIdlePeers, type TrafficStamps } from "../../src/peer/idle-sweep.js";
import { Peer } from "../../src/peer/peer.js";
import { formatPeerState } from "../../src/peer/peer-state.js";
import { FakeClock } from "../support/fake-clock.js";
import { FakePath, FakeSignalling } from "../support/fake-ice-session.js";

const IDLE_MS = 60_000;

function lazyPeer(key: string, clock: FakeClock): Peer {
  return new Peer(key, {
    clock,
    logger: pino({ level: "silent" }),
    dataPlane: { setPath: () => {}, setDormant: () => {} },
    signalling: new FakeSignalling({ stallReconnects: false }),
    timing: { idleTimeoutMs: IDLE_MS },
  });
}

describe("sweepIdlePeers", () => {
  it("rests the peers quiet either way for the timeout, and only those", () => {
    const clock = new FakeClock();
    const [sent, received, quiet, never] = ["sent", "received", "quiet", "never"].map((k) =>
      lazyPeer(k, clock),
    );
    for (const peer of [sent, received, quiet, never]) peer!.onPeerOnline();
    clock.advance(IDLE_MS + 1000);
    const now = 1_800_000_000_000;
    const stamps = new Map<string, TrafficStamps>([
      ["sent", { lastSentAt: now - 1000, lastReceivedAt: 0 }], // e.g. the kernel's counters, folded in
      ["received", { lastSentAt: now - IDLE_MS * 2, lastReceivedAt: now - 5000 }],
      ["quiet", { lastSentAt: now - IDLE_MS - 1, lastReceivedAt: now - IDLE_MS - 1 }],
      ["never", { lastSentAt: 0, lastReceivedAt: 0 }],
    ]);
    expect(sweepIdlePeers([sent!, received!, quiet!, never!], (key) => stamps.get(key), now)).toBe(2);
    // Already dormant: not counted again.
    expect(sweepIdlePeers([quiet!, never!], (key) => stamps.get(key), now)).toBe(0);
    expect([sent, received, quiet, never].map((p) => formatPeerState(p!.state))).toEqual([
      "connecting",
      "connecting",
      "dormant",
      "dormant",
    ]);
  });

  it("leaves out dormant peers without a static path (nothing could carry their traffic), not others", () => {
    const clock = new FakeClock();
    const [roaming, fixed] = ["roaming", "fixed"].map((k) => lazyPeer(k, clock));
    fixed!.onStaticPath(new FakePath("static", "203.0.113.9:51820"), "203.0.113.9:51820");
    for (const peer of [roaming, fixed]) peer!.onPeerOnline();
    clock.advance(IDLE_MS - 1000);
    expect([roaming!.swept, fixed!.swept]).toEqual([false, true]); // no path: nothing to tell it yet
    clock.advance(2000);
    const now = 1_800_000_000_000;
    const asked: string[] = [];
    const stampsOf = (key: string): TrafficStamps => {
      asked.push(key);
      return { lastSentAt: 0, lastReceivedAt: 0 };
    };
    // Awake, both are asked and both rest: the one without a path at its idle timeout only.
    expect([roaming!.swept, fixed!.swept]).toEqual([true, true]);
    expect(sweepIdlePeers([roaming!, fixed!], stampsOf, now)).toBe(2);
    expect(asked).toEqual(["roaming", "fixed"]);
    expect([roaming!.swept, fixed!.swept]).toEqual([false, true]);
    // Dormant: only the one with a static path, whose traffic there wakes ICE.
    asked.length = 0;
    clock.advance(5000);
    sweepIdlePeers(
      [roaming!, fixed!],
      (key) => {
        asked.push(key);
        return { lastSentAt: clock.now(), lastReceivedAt: 0 }; // WireGuard talked since it rested
      },
      clock.now(),
    );
    expect(asked).toEqual(["fixed"]);
    expect([roaming, fixed].map((p) => formatPeerState(p!.state))).toEqual(["dormant", "connecting"]);
    // Woken (WireGuard's datagram held) and still without a path, it is swept again at its idle timeout;
    // closed, never.
    roaming!.onHandshakeHeld();
    expect(roaming!.swept).toBe(false);
    clock.advance(IDLE_MS);
    expect(roaming!.swept).toBe(true);
    void roaming!.close();
    expect(roaming!.swept).toBe(false);
  });

  it("rests a peer only on quiet its stamps know of: the kernel's counts, read late, may hold traffic", () => {
    const clock = new FakeClock();
    const [lagging, current] = ["lagging", "current"].map((k) => lazyPeer(k, clock));
    for (const peer of [lagging, current]) peer!.onPeerOnline();
    clock.advance(IDLE_MS + 1000);
    const now = clock.now();
    // Both last seen IDLE_MS + 1 s ago; the kernel's counts for `lagging` were last read 4 s ago, so
    // only IDLE_MS - 3 s of its quiet is known: the datagrams of the last 4 s may not be in yet.
    const stamps = { lastSentAt: now - IDLE_MS - 1000, lastReceivedAt: 0 };
    const knownUntil = new Map([
      ["lagging", now - 4000],
      ["current", Number.POSITIVE_INFINITY],
    ]);
    const sweep = (at: number) =>
      sweepIdlePeers(
        [lagging!, current!],
        () => stamps,
        at,
        (key) => knownUntil.get(key)!,
      );
    expect(sweep(now)).toBe(1);
    expect([lagging, current].map((p) => formatPeerState(p!.state))).toEqual(["connecting", "dormant"]);
    // Between sweeps too (the introduction server's word asks `idle` as well), nothing newer is assumed.
    clock.advance(3000);
    lagging!.onPeerOnline();
    expect(formatPeerState(lagging!.state)).toBe("connecting");
    // Read again, the same stamps: quiet for the timeout, known; it rests.
    knownUntil.set("lagging", clock.now());
    expect(sweep(clock.now())).toBe(1);
    expect(formatPeerState(lagging!.state)).toBe("dormant");
  });

  it("a dormant peer on its static path is not woken by counts that only came late", () => {
    const clock = new FakeClock();
    const fixed = lazyPeer("fixed", clock);
    fixed.onStaticPath(new FakePath("static", "203.0.113.9:51820"), "203.0.113.9:51820");
    fixed.onPeerOnline();
    clock.advance(IDLE_MS + 3000);
    const last = clock.now() - IDLE_MS - 2000;
    const stamps = { lastSentAt: last, lastReceivedAt: last };
    // Known up to 1 s ago: IDLE_MS + 1 s of known quiet, it rests.
    expect(
      sweepIdlePeers(
        [fixed],
        () => stamps,
        clock.now(),
        () => clock.now() - 1000,
      ),
    ).toBe(1);
    // Sweeps later with the counts read no further: nothing new, it stays dormant.
    for (let i = 0; i < 5; i++) {
      clock.advance(2000);
      sweepIdlePeers(
        [fixed],
        () => stamps,
        clock.now(),
        () => clock.now() - 1000 - 2000 * (i + 1),
      );
      expect(formatPeerState(fixed.state)).toBe("dormant");
    }
    // A datagram on the static path after it rested, once read, wakes it.
    const after = { lastSentAt: clock.now() - 500, lastReceivedAt: last };
    sweepIdlePeers(
      [fixed],
      () => after,
      clock.now(),
      () => clock.now(),
    );
    expect(formatPeerState(fixed.state)).toBe("connecting");
  });
});
