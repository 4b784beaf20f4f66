// LivenessMonitor's calm fast path (issue 16): a watch with nothing to judge is skipped by ticks until its
// peer's timestamps move or a time-based judgement falls due. These tests check that the skip is taken,
// and that every time-based verdict still comes on the first tick at or after its time.

import { beforeEach, describe, expect, it } from "vitest";
import type { BatchedUdpSocket as Socket } from "../../src/proxy/batched-udp.js";
import { LivenessMonitor, type ProbeablePath } from "../../src/proxy/liveness.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";

const TICK = 250;

class FakePath implements ProbeablePath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.1:1000";
  onDatagram: ((datagram: Buffer) => void) | null = null;
  answers = true;
  /** When each probe went out (fake clock). */
  probeTimes: number[] = [];
  send(): void {}
  close(): void {}
  probe(): Promise<number | null> {
    this.probeTimes.push(now);
    return Promise.resolve(this.answers ? 5 : null);
  }
}

function staticPath(): PeerPath {
  return { kind: "static", remote: "203.0.113.5:51820", onDatagram: null, send() {}, close() {} };
}

let now: number;
let peer: ProxyPeer;
let monitor: LivenessMonitor;
/** Every event with its time, e.g. "1002500 suspect no reply from peer". */
let events: string[];

function newPeer(): ProxyPeer {
  return new ProxyPeer(
    "key",
    new Uint8Array(32).fill(7),
    { address: "127.1.2.3", port: 51822 },
    {} as Socket,
  );
}

function newMonitor(peers: () => Iterable<ProxyPeer>): LivenessMonitor {
  const m = new LivenessMonitor(peers, { now: () => now, random: () => 0.5 });
  for (const name of ["suspect", "recovered", "dead", "doubt", "heard", "quiet"] as const) {
    m.on(name, (_p: ProxyPeer, reason?: string, repeat?: boolean) => {
      if (!repeat) events.push(`${now} ${name}${reason ? ` ${reason}` : ""}`);
    });
  }
  return m;
}

/** Advances the fake clock in ticks of 250 ms, letting probe answers arrive between ticks. */
async function advance(ms: number): Promise<void> {
  const end = now + ms;
  while (now < end) {
    now += TICK;
    monitor.tick();
    await Promise.resolve();
    await Promise.resolve();
  }
}

/** The first tick at or after `t` (ticks fall on multiples of 250 ms from the start). */
function tickAtOrAfter(t: number): number {
  return Math.ceil(t / TICK) * TICK;
}

beforeEach(() => {
  now = 1_000_000;
  events = [];
  peer = newPeer();
  peer.path = staticPath();
  monitor = newMonitor(() => [peer]);
  monitor.tick();
});

describe("calm static peers", () => {
  it("an idle static peer is skipped by ticks after one look", async () => {
    await advance(60_000);
    expect(monitor.stats.assessed).toBe(1);
    expect(monitor.stats.calmSkipped).toBe(240);
    expect(events).toEqual([]);
  });

  it("10,000 idle static peers: each looked at once, then skipped", async () => {
    const peers = Array.from({ length: 10_000 }, () => {
      const p = newPeer();
      p.path = staticPath();
      return p;
    });
    monitor = newMonitor(() => peers);
    for (let i = 0; i < 4; i++) {
      now += TICK;
      monitor.tick();
    }
    expect(monitor.stats.assessed).toBe(10_000);
    expect(monitor.stats.calmSkipped).toBe(30_000);
  });

  it("a moved timestamp ends the calm at once", async () => {
    await advance(10_000);
    const assessed = monitor.stats.assessed;
    peer.lastSentAt = now - 10;
    now += TICK;
    monitor.tick();
    expect(monitor.stats.assessed).toBe(assessed + 1);
  });

  it("WireGuard sends once after a long calm and nothing comes back: doubt and suspect on time", async () => {
    peer.lastReceivedAt = now - 100;
    await advance(60_000);
    events = [];
    // Heard at T, WireGuard sends 300 ms later (the tick after T + 1 s is within 1 s of it: still
    // sending), then nothing moves: the doubt is due by time alone.
    const heardAt = now + 20;
    peer.lastReceivedAt = heardAt;
    await advance(TICK);
    peer.lastSentAt = heardAt + 300;
    const skipped = monitor.stats.calmSkipped;
    await advance(5000);
    const doubtAt = tickAtOrAfter(heardAt + 1000);
    expect(events).toEqual([
      `${tickAtOrAfter(heardAt)} heard`,
      `${doubtAt} doubt`,
      `${tickAtOrAfter(doubtAt + 1500)} suspect no reply from peer`,
    ]);
    // Between the send and the doubt the watch was calm (so the doubt came from its due time).
    expect(monitor.stats.calmSkipped).toBeGreaterThan(skipped);
  });

  it("an initiation sent after a long calm is judged handshakeTimeoutMs later, not before", async () => {
    await advance(120_000);
    const sentAt = now + 30;
    peer.lastInitiationSentAt = sentAt;
    const skipped = monitor.stats.calmSkipped;
    await advance(5000);
    const due = tickAtOrAfter(sentAt + 2000);
    expect(events).toEqual([`${due} doubt`, `${due} suspect handshake unanswered`]);
    expect(monitor.stats.calmSkipped).toBeGreaterThan(skipped);
  });

  it("an initiation answered while calm is not suspect", async () => {
    await advance(10_000);
    peer.lastInitiationSentAt = now + 10;
    await advance(1000);
    peer.lastResponseAt = now + 10;
    await advance(10_000);
    expect(events).toEqual([]);
  });

  it("a heard static peer goes quiet on the first tick after quietAfterMs, calm in between", async () => {
    const heardAt = now + 70;
    peer.lastReceivedAt = heardAt;
    await advance(250);
    expect(events).toEqual([`${tickAtOrAfter(heardAt)} heard`]);
    const assessed = monitor.stats.assessed;
    await advance(180_000);
    expect(events).toEqual([`${tickAtOrAfter(heardAt)} heard`, `${tickAtOrAfter(heardAt + 180_000)} quiet`]);
    // Skipped until the quiet was due: one look when it fell due, none between.
    expect(monitor.stats.assessed - assessed).toBe(1);
  });

  it("a clock stepped back is looked at again, as before (quiet turns heard)", async () => {
    peer.lastReceivedAt = now;
    await advance(181_000);
    expect(events.map((e) => e.split(" ")[1])).toEqual(["heard", "quiet"]);
    now -= 100_000;
    monitor.tick();
    expect(events.at(-1)).toBe(`${now} heard`);
  });

  it("a path taken away and given back (the same object) between ticks starts afresh", async () => {
    const path = peer.path;
    // Suspect on the path: WireGuard sends, nothing comes back.
    for (let t = 0; t < 12; t++) {
      now += TICK;
      peer.lastSentAt = now;
      monitor.tick();
    }
    expect(monitor.suspectReason(peer)).toBe("no reply from peer");
    peer.path = null;
    monitor.initiationSent(peer);
    peer.path = path;
    monitor.initiationSent(peer);
    now += TICK;
    monitor.tick();
    expect(monitor.suspectReason(peer)).toBeNull();
    // The new watch judges afresh: a second episode, not repeats of the first.
    for (let t = 0; t < 12; t++) {
      now += TICK;
      peer.lastSentAt = now;
      monitor.tick();
    }
    expect(events.filter((e) => e.includes("suspect"))).toHaveLength(2);
    expect(monitor.suspectReason(peer)).toBe("no reply from peer");
  });
});

describe("calm probed (ICE) paths", () => {
  let path: FakePath;
  beforeEach(() => {
    path = new FakePath();
    peer.path = path;
    now += TICK;
    monitor.tick(); // adopts the ICE path
  });

  it("the renewal probe goes out on time while calm, every interval", async () => {
    const since = now;
    await advance(100_000);
    // The interval jittered to 0.9 of 25 s; each answered probe renews from its send time.
    const expected: number[] = [];
    for (let t = tickAtOrAfter(since + 22_500); t <= now; t = tickAtOrAfter(t + 22_500)) expected.push(t);
    expect(path.probeTimes).toEqual(expected);
    expect(monitor.stats.calmSkipped).toBeGreaterThan(300);
    expect(events).toEqual([]);
  });

  it("WireGuard sends once on a calm ICE path: doubt when the silence is due, settled by a probe", async () => {
    await advance(10_000);
    const heardAt = now + 20;
    peer.lastReceivedAt = heardAt;
    await advance(TICK);
    peer.lastSentAt = heardAt + 300;
    const probes = path.probeTimes.length;
    await advance(5000);
    const doubtAt = tickAtOrAfter(heardAt + 1000);
    expect(events).toEqual([`${doubtAt} doubt`]);
    expect(path.probeTimes.slice(probes)).toEqual([doubtAt]);
  });

  it("a renewal probe's missing answer, arriving after the tick, starts doubt and its probes on time", async () => {
    const since = now;
    path.answers = false;
    await advance(31_000);
    const renewal = tickAtOrAfter(since + 22_500);
    expect(path.probeTimes[0]).toBe(renewal);
    // The answer (none) came after the tick that marked the watch calm: doubt at once, then a probe
    // every 500 ms and suspect 1.5 s after the doubt.
    expect(path.probeTimes.slice(1, 4)).toEqual([renewal + 500, renewal + 1000, renewal + 1500]);
    expect(events).toEqual([
      `${renewal} doubt`,
      `${renewal + 1500} suspect idle path unanswered`,
      `${tickAtOrAfter(since + 30_000)} dead`,
    ]);
  });

  it("a late probe answer is taken into account: doubt cleared, calm again", async () => {
    let answer: ((rtt: number | null) => void) | undefined;
    path.probe = () => {
      path.probeTimes.push(now);
      return new Promise((resolve) => {
        answer = resolve;
      });
    };
    // A steady flow falls silent: doubt, and a probe.
    for (let t = 0; t < 8; t++) {
      now += TICK;
      peer.lastReceivedAt = now;
      monitor.tick();
    }
    await advance(1500);
    expect(events.map((e) => e.split(" ")[1])).toEqual(["doubt"]);
    expect(answer).toBeDefined();
    answer?.(5);
    await Promise.resolve();
    const assessed = monitor.stats.assessed;
    await advance(10_000);
    expect(events.map((e) => e.split(" ")[1])).toEqual(["doubt"]);
    // The answer cleared the doubt; the watch was looked at once more and is calm again.
    expect(monitor.stats.assessed - assessed).toBe(1);
    expect(monitor.suspectReason(peer)).toBeNull();
  });
});
