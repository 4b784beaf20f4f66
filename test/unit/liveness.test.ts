// LivenessMonitor with a fake clock and a fake path: when it probes, when it suspects, and what idle
// peers cost.

import { beforeEach, describe, expect, it } from "vitest";
import type { BatchedUdpSocket as Socket } from "../../src/proxy/batched-udp.js";
import { LivenessMonitor, type ProbeablePath, type SuspectReason } from "../../src/proxy/liveness.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";

class FakePath implements ProbeablePath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.1:1000";
  onDatagram: ((datagram: Buffer) => void) | null = null;
  answers = true;
  probes = 0;
  peerCheckedAt = 0;
  send(): void {}
  close(): void {}
  probe(): Promise<number | null> {
    this.probes++;
    return Promise.resolve(this.answers ? 5 : null);
  }
}

let now: number;
let peer: ProxyPeer;
let path: FakePath;
let monitor: LivenessMonitor;
let suspects: SuspectReason[];
let deaths: number;
let recoveries: number;
let repeats: number;

function newPeer(): ProxyPeer {
  const key = new Uint8Array(32).fill(7);
  return new ProxyPeer("key", key, { address: "127.1.2.3", port: 51822 }, {} as Socket);
}

/** Advances the fake clock in ticks of 250 ms, letting probe answers arrive between ticks. */
async function advance(ms: number, each?: (t: number) => void): Promise<void> {
  const end = now + ms;
  while (now < end) {
    now += 250;
    each?.(now);
    monitor.tick();
    await Promise.resolve();
    await Promise.resolve();
  }
}

/** WireGuard sends every 200 ms (and, when `replies`, the peer answers). */
function traffic(replies: boolean): (t: number) => void {
  return (t) => {
    peer.lastSentAt = t;
    if (replies) peer.lastReceivedAt = t;
  };
}

beforeEach(() => {
  now = 1_000_000;
  peer = newPeer();
  path = new FakePath();
  peer.path = path;
  monitor = new LivenessMonitor(() => [peer], { now: () => now, random: () => 0.5 });
  suspects = [];
  deaths = 0;
  recoveries = 0;
  repeats = 0;
  monitor.on("suspect", (_p, reason, repeat) => {
    if (!repeat) suspects.push(reason);
    else repeats++;
  });
  monitor.on("dead", () => deaths++);
  monitor.on("recovered", () => recoveries++);
  monitor.tick();
});

describe("LivenessMonitor", () => {
  it("probes a path while traffic flows both ways only to renew consent: once per interval", async () => {
    await advance(60_000, traffic(true));
    expect(path.probes).toBe(2); // at 22.5 s and 45 s (the interval, jittered to 0.9 of 25 s)
    expect(suspects).toEqual([]);
  });

  it("probes an idle path rarely: about two probes a minute", async () => {
    await advance(5 * 60_000);
    expect(path.probes).toBeGreaterThanOrEqual(10);
    expect(path.probes).toBeLessThanOrEqual(14);
    expect(suspects).toEqual([]);
    expect(deaths).toBe(0);
  });

  it("keeps probing rarely after traffic stops, and never declares an answering idle path dead", async () => {
    await advance(10_000, traffic(true));
    await advance(5 * 60_000);
    expect(deaths).toBe(0);
    expect(suspects).toEqual([]);
    expect(path.probes).toBeGreaterThanOrEqual(10);
    expect(path.probes).toBeLessThanOrEqual(14);
  });

  it("declares an idle path dead only after its probes failed", async () => {
    await advance(10_000, traffic(true));
    path.answers = false;
    await advance(60_000);
    expect(suspects).toEqual(["idle path unanswered"]);
    expect(deaths).toBe(1);
  });

  it("suspects a path once when WireGuard sends and neither data nor probes come back", async () => {
    await advance(5000, traffic(true));
    path.answers = false;
    const silentFrom = now;
    let suspectedAt = 0;
    monitor.on("suspect", (_p, _reason, repeat) => {
      if (!repeat) suspectedAt = now;
    });
    await advance(10_000, traffic(false));
    expect(suspects).toEqual(["no reply from peer"]);
    // Repeated while it lasts, in case the restart was lost: every 5 s.
    expect(repeats).toBe(1);
    // Doubt after 1 s of silence, suspect after 1.5 s more of unanswered probes.
    expect(suspectedAt - silentFrom).toBeGreaterThanOrEqual(2500);
    expect(suspectedAt - silentFrom).toBeLessThanOrEqual(3000);
  });

  it("a one-way flow whose probes are answered is not suspect", async () => {
    await advance(20_000, traffic(false));
    expect(suspects).toEqual([]);
    expect(path.probes).toBeGreaterThan(0);
    // About one probe per second of one-way sending, not more.
    expect(path.probes).toBeLessThanOrEqual(20);
  });

  it("an initiation unanswered for 2 s on a silent path is suspect", async () => {
    path.answers = false;
    await advance(500);
    peer.lastSentAt = now;
    peer.lastInitiationSentAt = now;
    monitor.initiationSent(peer);
    await advance(1750);
    expect(suspects).toEqual([]);
    await advance(500);
    expect(suspects).toEqual(["handshake unanswered"]);
  });

  it("an initiation unanswered while the path answers probes is not the path's fault", async () => {
    await advance(500);
    peer.lastSentAt = now;
    peer.lastInitiationSentAt = now;
    monitor.initiationSent(peer);
    await advance(5000);
    expect(suspects).toEqual([]);
  });

  it("notices a recovery, and declares a path dead after 30 s without contact", async () => {
    path.answers = false;
    await advance(4000, traffic(false));
    expect(suspects).toEqual(["no reply from peer"]);
    path.answers = true;
    await advance(1500, traffic(false));
    expect(recoveries).toBe(1);

    path.answers = false;
    await advance(40_000, traffic(false));
    expect(deaths).toBe(1);
  });

  it("starts afresh on a new path", async () => {
    path.answers = false;
    await advance(4000, traffic(false));
    expect(monitor.suspectReason(peer)).toBe("no reply from peer");
    const next = new FakePath();
    peer.path = next;
    monitor.tick();
    expect(monitor.suspectReason(peer)).toBeNull();
    await advance(10_000, traffic(true));
    expect(suspects).toEqual(["no reply from peer"]);
  });
});

describe("paths that cannot be probed (static endpoints)", () => {
  const staticPath = {
    kind: "static" as const,
    remote: "203.0.113.5:51820",
    onDatagram: null,
    send(): void {},
    close(): void {},
  };
  let verdicts: string[];

  beforeEach(() => {
    peer.path = staticPath;
    verdicts = [];
    monitor.on("heard", () => verdicts.push("heard"));
    monitor.on("quiet", () => verdicts.push("quiet"));
  });

  it("WireGuard sending with nothing back is suspect without any probe; an answer recovers it", async () => {
    await advance(250);
    await advance(3000, traffic(false));
    expect(suspects).toEqual(["no reply from peer"]);
    expect(monitor.stats.probesSent).toBe(0);
    await advance(500, traffic(true));
    expect(recoveries).toBe(1);
    expect(verdicts).toEqual(["heard"]);
    expect(deaths).toBe(0);
  });

  it("an initiation unanswered is suspect", async () => {
    await advance(500);
    peer.lastInitiationSentAt = now;
    peer.lastSentAt = now;
    await advance(2500);
    expect(suspects).toEqual(["handshake unanswered"]);
  });

  it("is heard only once the peer answered on it, and quiet after WireGuard's session life without answers", async () => {
    await advance(1000);
    expect(verdicts).toEqual([]); // adopted, nothing received: never heard
    peer.lastReceivedAt = now;
    await advance(250);
    expect(verdicts).toEqual(["heard"]);
    await advance(180_000);
    expect(verdicts).toEqual(["heard", "quiet"]);
    expect(suspects).toEqual([]); // idle, not suspect: WireGuard sent nothing
  });
});

describe("heard and quiet on ICE paths", () => {
  it("a nominated path starts heard, and answered idle probes keep it heard (unanswered, it dies instead)", async () => {
    const verdicts: string[] = [];
    monitor.on("heard", () => verdicts.push("heard"));
    monitor.on("quiet", () => verdicts.push("quiet"));
    await advance(400_000);
    expect(verdicts).toEqual([]);
    expect(monitor.stats.probesAnswered).toBeGreaterThan(10);
  });
});

describe("a path that was receiving steadily falls silent (the receiving side of a one-way flow)", () => {
  /** The peer sends every 200 ms; we send nothing. */
  const receiving = (t: number) => {
    peer.lastReceivedAt = t;
  };

  it("is doubted at once and suspect when its probes go unanswered", async () => {
    let doubts = 0;
    monitor.on("doubt", () => doubts++);
    await advance(3000, receiving);
    expect(doubts).toBe(0);
    path.answers = false;
    await advance(3000); // silence: no datagram, and WireGuard sends nothing either
    expect(doubts).toBe(1);
    expect(suspects).toEqual(["idle path unanswered"]);
  });

  it("a peer that merely stopped answers the probes: no suspicion", async () => {
    await advance(3000, receiving);
    await advance(5000);
    expect(suspects).toEqual([]);
    expect(monitor.stats.probesSent).toBeGreaterThan(0);
    expect(monitor.stats.probesSent).toBeLessThan(5); // one doubt, settled by its first answers
  });

  it("sparse traffic (a keepalive every 25 s) is no steady flow: its pauses raise no doubt", async () => {
    let doubts = 0;
    monitor.on("doubt", () => doubts++);
    for (let i = 0; i < 4; i++) {
      peer.lastReceivedAt = now;
      await advance(10_000);
    }
    expect(doubts).toBe(0);
    expect(monitor.stats.probesSent).toBe(1); // only the renewal at 22.5 s: received data does not renew consent
  });
});

describe("data Tunnelbore cannot authenticate is no proof of life for longer than one probe interval", () => {
  // An attacker who knows the path's addresses sprays datagrams (or the kernel fast path counts them:
  // counters feed the same timestamp): WireGuard drops them, but they arrive on the path.
  const spoofed = (t: number) => {
    peer.lastSentAt = t;
    peer.lastReceivedAt = t;
  };
  let doubts: number;
  beforeEach(() => {
    doubts = 0;
    monitor.on("doubt", () => doubts++);
  });

  it("a dead path kept busy by spoofed data is suspect, then dead, one probe interval later than a silent one", async () => {
    const lastAnswer = now; // the nomination: the last authenticated contact
    await advance(10_000, traffic(true));
    path.answers = false; // the peer is gone; from now on every datagram is the attacker's
    let suspectAt = 0;
    let deadAt = 0;
    monitor.on("suspect", (_p, _r, repeat) => {
      if (!repeat && !suspectAt) suspectAt = now;
    });
    monitor.on("dead", () => {
      if (!deadAt) deadAt = now;
    });
    await advance(120_000, spoofed);
    console.log(
      `spoofed data: suspect after ${suspectAt - lastAnswer} ms, dead after ${deadAt - lastAnswer} ms`,
    );
    expect(suspects).toHaveLength(1);
    // One probe interval (25 s) of trust, then as a path that fell silent: doubt after 1 s, suspect 1.5 s later.
    expect(suspectAt - lastAnswer).toBeLessThanOrEqual(25_000 + 1000 + 1500 + 500);
    expect(deaths).toBe(1);
    expect(deadAt - lastAnswer).toBeLessThanOrEqual(25_000 + 30_000 + 500);
  });

  it("an answered probe renews the trust: a live path under load costs one probe per interval, no doubt", async () => {
    await advance(120_000, traffic(true));
    expect(path.probes).toBe(5); // every 22.5 s (the interval, jittered to 0.9 of 25 s)
    expect(doubts).toBe(0);
    expect(suspects).toEqual([]);
    expect(deaths).toBe(0);
  });
});

describe("the peer's own checks on an idle path stand in for our renewal probe", () => {
  // Both ends probe a path to renew their consent; on an idle path the peer's check (authenticated and
  // fresh: IcePath.peerCheckedAt) tells us what our own probe would, so one probe an interval serves both.
  const peerChecksEvery = (ms: number) => (t: number) => {
    if (t % ms === 0) path.peerCheckedAt = t;
  };
  let doubts: number;
  let verdicts: string[];
  beforeEach(() => {
    doubts = 0;
    verdicts = [];
    monitor.on("doubt", () => doubts++);
    monitor.on("heard", () => verdicts.push("heard"));
    monitor.on("quiet", () => verdicts.push("quiet"));
  });

  it("an idle path the peer probes every 20 s is not probed by us, and stays heard past WireGuard's session life", async () => {
    path.answers = false; // whatever our probes would get: none go out
    await advance(400_000, peerChecksEvery(20_000));
    expect(path.probes).toBe(0);
    expect(doubts).toBe(0);
    expect(verdicts).toEqual([]); // heard from the start (nominated), never quiet
    expect(suspects).toEqual([]);
  });

  it("once the peer's checks stop, our renewal probe goes out one interval after the last", async () => {
    await advance(60_000, peerChecksEvery(20_000));
    expect(path.probes).toBe(0);
    const lastCheck = path.peerCheckedAt;
    let probedAt = 0;
    await advance(30_000, () => {
      if (!probedAt && path.probes > 0) probedAt = now;
    });
    expect(path.probes).toBe(1);
    expect(probedAt - lastCheck).toBeGreaterThanOrEqual(22_500);
    expect(probedAt - lastCheck).toBeLessThanOrEqual(22_500 + 250);
  });

  it("they do not put it off while the peer sends data: that data needs our consent renewed", async () => {
    const checks = peerChecksEvery(5000);
    await advance(60_000, (t) => {
      traffic(true)(t);
      checks(t);
    });
    expect(path.probes).toBe(2); // at 22.5 s and 45 s, as without the peer's checks
    expect(doubts).toBe(0);
  });

  it("they settle no doubt: with our probes unanswered the path is suspect however often the peer checks", async () => {
    path.answers = false;
    const checks = peerChecksEvery(500);
    await advance(10_000, (t) => {
      traffic(false)(t);
      checks(t);
    });
    expect(doubts).toBe(1);
    expect(suspects).toEqual(["no reply from peer"]);
  });
});
