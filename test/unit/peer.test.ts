import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Peer } from "../../src/peer/peer.js";
import { formatPeerState, PEER_STATE_NAMES } from "../../src/peer/peer-state.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { FakeClock } from "../support/fake-clock.js";
import { type FakeIceSession, FakePath, FakeSignalling } from "../support/fake-ice-session.js";

const KEY = "peerkey";

interface SetupOptions {
  online?: boolean;
  controlling?: boolean;
  /** What `signalling.stalled` answers (the link reconnects). */
  stallReconnects?: boolean;
  /** No introduction server: static paths only. */
  noSignalling?: boolean;
  /** Release ICE after this long without traffic (default: never). */
  idleTimeoutMs?: number;
}

function setup(options: SetupOptions = {}) {
  const clock = new FakeClock();
  const signalling = new FakeSignalling(options);
  const { sessions, stalls } = signalling;
  const paths: Array<{ path: PeerPath | null; reason: string }> = [];
  const moves: string[] = [];
  const transitions: string[] = [];
  const peer = new Peer(KEY, {
    clock,
    random: () => 0.5,
    logger: pino({ level: "silent" }),
    dataPlane: {
      setPath: (_key, path, reason) => paths.push({ path, reason }),
      setDormant: () => {},
      pathMoved: (key) => moves.push(key),
    },
    signalling: options.noSignalling ? null : signalling,
    timing: { idleTimeoutMs: options.idleTimeoutMs ?? 0 },
    onTransition: (p) => transitions.push(formatPeerState(p.state)),
  });
  const session = (): FakeIceSession => signalling.session();
  const goOnline = () => {
    signalling.online = true;
    peer.onPeerOnline();
  };
  const goOffline = () => {
    signalling.online = false;
    peer.onPeerOffline();
  };
  return {
    peer,
    clock,
    sessions,
    session,
    paths,
    moves,
    transitions,
    stalls,
    signalling,
    goOnline,
    goOffline,
  };
}

const state = (peer: Peer) => formatPeerState(peer.state);

/** Lets the peer's probe promises settle (verifying a path awaits them). */
const settled = () => new Promise((resolve) => setImmediate(resolve));

describe("Peer: connecting", () => {
  it("idle -> signalling -> connecting -> connected(direct), the held handshake's path set once", () => {
    const t = setup({ online: false });
    expect(state(t.peer)).toBe("idle");
    t.peer.onHandshakeHeld();
    expect(state(t.peer)).toBe("signalling");
    expect(t.sessions).toHaveLength(0); // nobody to signal to yet
    t.goOnline();
    expect(t.session().controlling).toBe(true);
    expect(state(t.peer)).toBe("connecting");
    const direct = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(direct, "connect");
    expect(state(t.peer)).toBe("connected(direct)");
    expect(t.peer.path).toBe(direct);
    expect(t.paths).toEqual([{ path: direct, reason: "connect" }]);
    expect(t.transitions).toEqual(["signalling", "connecting", "connected(direct)"]);
  });

  it("connects proactively when the peer comes online, before WireGuard asks", () => {
    const t = setup({ online: false });
    t.goOnline();
    expect(state(t.peer)).toBe("connecting");
    expect(t.session().restarts).toEqual([]); // controlling: start() sends the offer
  });

  it("a controlled side asks for an offer at once (its peer may hold a path to our previous process)", () => {
    const t = setup({ online: false, controlling: false });
    t.goOnline();
    expect(t.session().controlling).toBe(false);
    expect(t.session().restarts).toEqual([{ reason: "new session", mode: "full" }]);
  });

  it("a signal from the peer creates the session and reaches it", () => {
    const t = setup({ controlling: false });
    t.peer.onSignal({ t: "offer" });
    expect(t.session().signals).toEqual([{ t: "offer" }]);
    expect(state(t.peer)).toBe("connecting");
  });

  it("an initiation while an attempt is under way does not restart it", () => {
    const t = setup();
    t.goOnline();
    t.peer.onHandshakeHeld();
    expect(t.session().restarts).toEqual([]);
    expect(state(t.peer)).toBe("connecting");
  });
});

describe("Peer: paths", () => {
  it("prefers ICE over the static endpoint and falls back to it when the ICE path is lost", () => {
    const t = setup();
    const fixed = new FakePath("static", "203.0.113.5:51820");
    t.peer.onStaticPath(fixed, "203.0.113.5:51820");
    expect(state(t.peer)).toBe("idle"); // nothing came back on it yet
    t.peer.onHeard();
    expect(state(t.peer)).toBe("connected(static)");
    expect(t.peer.staticEndpoint).toBe("203.0.113.5:51820");
    t.goOnline();
    const direct = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(direct);
    expect(state(t.peer)).toBe("connected(direct)");
    t.session().fail("consent-expired", true);
    expect(t.paths.at(-1)).toEqual({ path: fixed, reason: "ice path lost: path unanswered" });
    // Back on the static path, the peer must answer there before it is connected again.
    expect(state(t.peer)).toBe("idle");
    t.peer.onHeard();
    expect(state(t.peer)).toBe("connected(static)");
  });

  it("tells the ICE pair the chosen path is on (status), and none on the static path", () => {
    const t = setup();
    const fixed = new FakePath("static", "203.0.113.5:51820");
    t.peer.onStaticPath(fixed, "203.0.113.5:51820");
    t.goOnline();
    t.session().selectedPair = {
      localType: "relay",
      remoteType: "srflx",
      relayTransport: "tcp",
      generation: 0,
    };
    expect(t.peer.pair).toBeNull(); // the session's pair is not the chosen path yet
    t.session().nominate(new FakePath("relay", "198.51.100.7:40000"));
    expect(t.peer.pair).toEqual({
      localType: "relay",
      remoteType: "srflx",
      relayTransport: "tcp",
      generation: 0,
    });
    t.session().fail("consent-expired", true);
    expect(t.peer.path).toBe(fixed);
    expect(t.peer.pair).toBeNull();
  });

  it("closes a replaced static path, and none is left when it is removed", () => {
    const t = setup({ noSignalling: true });
    const first = new FakePath("static", "203.0.113.5:51820");
    const second = new FakePath("static", "203.0.113.6:51820");
    t.peer.onStaticPath(first, "203.0.113.5:51820");
    t.peer.onStaticPath(second, "203.0.113.6:51820");
    expect(first.closed).toBe(true);
    expect(t.peer.path).toBe(second);
    t.peer.onStaticPath(null, null);
    expect(second.closed).toBe(true);
    expect(t.peer.path).toBeNull();
    expect(t.peer.staticEndpoint).toBeNull();
    expect(state(t.peer)).toBe("idle");
  });

  it("without an introduction server a held handshake waits in signalling, and nothing is attempted", () => {
    const t = setup({ noSignalling: true });
    t.peer.onHandshakeHeld();
    t.peer.onPeerOnline();
    expect(state(t.peer)).toBe("signalling");
    expect(t.sessions).toHaveLength(0);
  });
});

describe("Peer: failures and retries", () => {
  it("failed -> retried with capped exponential backoff, never given up; success resets it", () => {
    const t = setup();
    t.goOnline();
    t.session().fail("timeout", true);
    expect(state(t.peer)).toBe("failed");
    // random 0.5: jitter factor 1.0, so delays are exactly 1, 2, 4, 8, 16, 30, 30 s.
    const expected = [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000];
    for (const [i, delay] of expected.entries()) {
      t.clock.advance(delay - 1);
      expect(t.session().restarts).toHaveLength(i);
      t.clock.advance(1);
      expect(t.session().restarts.at(-1)).toEqual({ reason: "retry after failure", mode: "full" });
      expect(state(t.peer)).toBe("connecting");
      t.session().fail("checks-failed", true);
      expect(state(t.peer)).toBe("failed");
    }
    t.clock.advance(30_000);
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.session().fail("consent-expired", true);
    const before = t.session().restarts.length;
    t.clock.advance(1000);
    expect(t.session().restarts).toHaveLength(before + 1); // back to 1 s
  });

  it("a retry due while the peer is offline waits for it to come back online", () => {
    const t = setup();
    t.goOnline();
    t.session().fail("timeout", true);
    t.goOffline();
    t.clock.advance(60_000);
    expect(t.session().restarts).toEqual([]);
    expect(state(t.peer)).toBe("failed");
    t.goOnline();
    expect(t.session().restarts).toEqual([{ reason: "peer online again", mode: "full" }]);
    expect(state(t.peer)).toBe("connecting");
  });

  it("the liveness verdict dead drops the ICE path (held handshakes wait for the next one)", () => {
    const t = setup();
    t.goOnline();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.peer.onDead();
    expect(t.session().expired).toBe(1);
    expect(t.peer.path).toBeNull();
    expect(state(t.peer)).toBe("failed");
  });
});

describe("Peer: suspect and restarting", () => {
  it("suspect -> restarting -> connected: ICE restarts at once, the old path carries on until replaced", () => {
    const t = setup();
    t.goOnline();
    const old = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(old);
    t.peer.onSuspect("handshake unanswered", false);
    expect(t.session().restarts).toEqual([{ reason: "handshake unanswered", mode: "full" }]);
    expect(state(t.peer)).toBe("restarting");
    expect(t.peer.path).toBe(old);
    expect(t.signalling.linkChecks).toBe(1); // the signalling link is checked with it
    // Repeated verdicts while the repair runs do not abandon it.
    t.peer.onSuspect("handshake unanswered", true);
    expect(t.signalling.linkChecks).toBe(1);
    expect(t.session().restarts).toHaveLength(1);
    const fresh = new FakePath("direct", "198.51.100.7:40001");
    t.session().nominate(fresh, "handshake unanswered");
    expect(state(t.peer)).toBe("connected(direct)");
    expect(t.peer.path).toBe(fresh);
    expect(t.transitions).toEqual(["connecting", "connected(direct)", "restarting", "connected(direct)"]);
  });

  it("suspect while the peer cannot be reached; restarting once it is online and the path fails its probes", async () => {
    const t = setup();
    t.goOnline();
    const old = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(old);
    t.goOffline();
    t.peer.onSuspect("no reply from peer", false);
    expect(state(t.peer)).toBe("suspect");
    expect(t.peer.state).toMatchObject({ name: "suspect", path: "direct", reason: "no reply from peer" });
    expect(t.session().restarts).toEqual([]);
    old.answers = false;
    t.goOnline();
    await settled();
    expect(old.probes).toBe(2);
    expect(t.session().restarts).toEqual([{ reason: "peer online again", mode: "full" }]);
    expect(state(t.peer)).toBe("restarting");
    t.session().nominate(new FakePath("relay", "192.0.2.9:3478"));
    expect(state(t.peer)).toBe("connected(relay)");
  });

  it("a suspect path that answers again is connected, and a path back online that answers is kept", async () => {
    const t = setup();
    t.goOnline();
    const path = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(path);
    t.goOffline();
    t.peer.onSuspect("idle path unanswered", false);
    t.peer.onRecovered();
    expect(state(t.peer)).toBe("connected(direct)");
    path.verdicts.push(false, true); // one lost probe, then an answer
    t.goOnline();
    await settled();
    expect(path.probes).toBe(2);
    expect(t.session().restarts).toEqual([]);
    expect(state(t.peer)).toBe("connected(direct)");
  });

  it("peer offline during a restart: the old path stays; back online, the repair starts again", () => {
    const t = setup();
    t.goOnline();
    const old = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(old);
    t.peer.onSuspect("handshake unanswered", false);
    expect(state(t.peer)).toBe("restarting");
    t.goOffline();
    expect(state(t.peer)).toBe("restarting");
    expect(t.peer.path).toBe(old);
    t.goOnline();
    expect(t.session().restarts.at(-1)).toEqual({ reason: "signalling reconnected", mode: "replace" });
    expect(state(t.peer)).toBe("restarting");
  });

  it("a repair that fails leaves the doubted path in use, still suspect", () => {
    const t = setup();
    t.goOnline();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.peer.onSuspect("handshake unanswered", false);
    t.session().fail("timeout", false);
    expect(state(t.peer)).toBe("suspect");
  });

  it("controlled side: suspect until the controlling side's offer starts the repair", () => {
    const t = setup({ controlling: false });
    t.goOnline();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.peer.onSuspect("handshake unanswered", false);
    expect(t.session().restarts.at(-1)).toEqual({ reason: "handshake unanswered", mode: "full" });
    expect(state(t.peer)).toBe("suspect");
    t.session().acceptRepairOffer();
    expect(state(t.peer)).toBe("restarting");
  });
});

describe("Peer: relayed paths are upgraded", () => {
  it("tries for a direct path with backoff while relayed, and stops once direct", () => {
    const t = setup();
    t.goOnline();
    t.session().canUpgrade = true;
    t.session().nominate(new FakePath("relay", "192.0.2.9:3478"));
    expect(state(t.peer)).toBe("connected(relay)");
    // upgrade backoff: 5 s doubling, jitter [0.75, 1] at 0.5 -> factor 0.875
    t.clock.advance(4375 - 1);
    expect(t.session().restarts).toEqual([]);
    t.clock.advance(1);
    expect(t.session().restarts).toEqual([{ reason: "upgrade to a direct path", mode: "upgrade" }]);
    expect(state(t.peer)).toBe("connected(relay)"); // an upgrade attempt is no repair
    t.session().fail("timeout", false);
    t.clock.advance(8750);
    expect(t.session().restarts).toHaveLength(2);
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    expect(state(t.peer)).toBe("connected(direct)");
    t.clock.advance(120_000);
    expect(t.session().restarts).toHaveLength(2);
    expect(t.clock.pending).toBe(0);
  });

  it("a path that follows the peer onto a relay says so and looks for a direct path, until back on one", () => {
    const t = setup();
    t.goOnline();
    t.session().canUpgrade = true;
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    expect(state(t.peer)).toBe("connected(direct)");
    t.session().follow("relay");
    expect(state(t.peer)).toBe("connected(relay)");
    // The same path object, another pair: not a new path for the proxy, a moved one for the checks.
    expect(t.paths).toHaveLength(1);
    expect(t.moves).toEqual([KEY]);
    t.clock.advance(4375);
    expect(t.session().restarts).toEqual([{ reason: "upgrade to a direct path", mode: "upgrade" }]);

    const u = setup();
    u.goOnline();
    u.session().canUpgrade = true;
    u.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    u.session().follow("relay");
    u.clock.advance(4000);
    u.session().follow("direct");
    expect(state(u.peer)).toBe("connected(direct)");
    u.clock.advance(120_000);
    expect(u.session().restarts).toEqual([]);
    expect(u.clock.pending).toBe(0);
  });

  it("an upgrade due while the peer is offline is postponed, not dropped", () => {
    const t = setup();
    t.goOnline();
    t.session().canUpgrade = true;
    t.session().nominate(new FakePath("relay", "192.0.2.9:3478"));
    t.goOffline();
    t.clock.advance(4375);
    expect(t.session().restarts).toEqual([]);
    expect(t.clock.pending).toBe(1);
  });
});

describe("Peer: network changes and stalled signalling", () => {
  it("a network change restarts ICE once the peer is online again, and backoffs start over", () => {
    const t = setup();
    t.goOnline();
    t.session().fail("timeout", true);
    t.clock.advance(1000);
    t.session().fail("timeout", true); // next retry would be 2 s
    t.peer.onNetworkChanged("local network changed");
    expect(t.clock.pending).toBe(0);
    t.goOffline();
    t.goOnline();
    expect(t.session().restarts.at(-1)).toEqual({ reason: "local network changed", mode: "replace" });
    t.session().fail("timeout", true);
    const count = t.session().restarts.length;
    t.clock.advance(1000);
    expect(t.session().restarts).toHaveLength(count + 1);
  });

  it("stalled signalling that makes the link reconnect restarts ICE when the peer is back", async () => {
    const t = setup();
    t.goOnline();
    t.session().stall("offer unanswered");
    expect(t.stalls).toEqual(["offer unanswered"]);
    await settled(); // the link's check of its connection
    t.goOffline();
    t.goOnline();
    expect(t.session().restarts.at(-1)).toEqual({
      reason: "signalling stalled: offer unanswered",
      mode: "replace",
    });
  });

  it("stalled signalling without a reconnect leaves nothing pending", async () => {
    const t = setup({ stallReconnects: false });
    t.goOnline();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.session().stall("restart request unanswered");
    await settled();
    t.goOnline();
    expect(t.session().restarts).toEqual([]);
  });
});

describe("Peer: connected only while it answers", () => {
  it("a static path is connected once heard, suspect when WireGuard gets no answers, idle when quiet", () => {
    const t = setup({ noSignalling: true });
    t.peer.onStaticPath(new FakePath("static", "203.0.113.5:51820"), "203.0.113.5:51820");
    expect(state(t.peer)).toBe("idle");
    t.peer.onHeard();
    expect(state(t.peer)).toBe("connected(static)");
    t.peer.onSuspect("no reply from peer", false);
    expect(state(t.peer)).toBe("suspect");
    t.peer.onRecovered();
    expect(state(t.peer)).toBe("connected(static)");
    t.peer.onQuiet();
    expect(state(t.peer)).toBe("idle");
  });

  it("an ICE path is heard from its nomination on; quiet, it is no longer connected", () => {
    const t = setup();
    t.goOnline();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    expect(state(t.peer)).toBe("connected(direct)");
    t.peer.onQuiet();
    expect(state(t.peer)).toBe("idle");
    t.peer.onHeard();
    expect(state(t.peer)).toBe("connected(direct)");
  });
});

describe("Peer: WireGuard reached directly", () => {
  it("points the endpoint back once; WireGuard moving to the same address again is left alone", () => {
    const t = setup({ noSignalling: true });
    expect(t.peer.onEndpointElsewhere("198.51.100.9:51820", 1000)).toBe(true);
    t.clock.advance(5000);
    expect(t.peer.onEndpointElsewhere("198.51.100.9:51820", 1148)).toBe(false);
    expect(t.peer.state).toEqual({ name: "bypassed", remote: "198.51.100.9:51820" });
    // As long as WireGuard keeps it, it stays; no more rewrites.
    expect(t.peer.onEndpointElsewhere("198.51.100.9:51820", 1296)).toBe(false);
    t.peer.onEndpointOurs();
    expect(state(t.peer)).toBe("idle");
  });

  it("a new endpoint the user sets, the same one set again (nothing received), or much later, is pointed back", () => {
    const t = setup({ noSignalling: true });
    expect(t.peer.onEndpointElsewhere("198.51.100.9:51820", 1000)).toBe(true);
    t.clock.advance(5000);
    expect(t.peer.onEndpointElsewhere("198.51.100.10:51820", 1148)).toBe(true);
    t.clock.advance(1000);
    expect(t.peer.onEndpointElsewhere("198.51.100.10:51820", 1148)).toBe(true); // `wg set` again, no roam
    t.clock.advance(61_000);
    expect(t.peer.onEndpointElsewhere("198.51.100.10:51820", 2000)).toBe(true);
    t.peer.onEndpointReleased();
    expect(t.peer.onEndpointElsewhere("198.51.100.10:51820", 3000)).toBe(true);
    expect(state(t.peer)).toBe("idle");
  });
});

describe("Peer: end of life", () => {
  it("close() closes its paths and session, cancels timers, and later events change nothing", async () => {
    const t = setup();
    const fixed = new FakePath("static", "203.0.113.5:51820");
    t.peer.onStaticPath(fixed, "203.0.113.5:51820");
    t.goOnline();
    const session = t.session();
    session.fail("timeout", true);
    expect(t.clock.pending).toBe(1);
    await t.peer.close();
    expect(fixed.closed).toBe(true);
    expect(session.closed).toBe(true);
    expect(t.clock.pending).toBe(0);
    const count = t.transitions.length;
    session.nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.peer.onHandshakeHeld();
    t.peer.onSignal({ t: "offer" });
    expect(t.sessions).toHaveLength(1);
    expect(t.transitions).toHaveLength(count);
    const late = new FakePath("static", "203.0.113.6:51820");
    t.peer.onStaticPath(late, "203.0.113.6:51820");
    expect(late.closed).toBe(true);
  });
});

describe("Peer: every state", () => {
  it("is entered and left in one life, and the time of the last transition is kept", async () => {
    const t = setup({ online: false, idleTimeoutMs: 60_000 });
    t.peer.onHandshakeHeld(); // signalling
    t.clock.advance(100);
    t.goOnline(); // connecting
    t.session().fail("timeout", true); // failed
    t.clock.advance(1000); // retry: connecting
    const path = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(path); // connected
    t.goOffline();
    t.peer.onSuspect("no reply from peer", false); // suspect
    path.answers = false;
    t.goOnline();
    await settled(); // restarting
    t.clock.advance(50);
    t.session().nominate(new FakePath("direct", "198.51.100.7:40001")); // connected
    t.peer.onEndpointElsewhere("198.51.100.9:51820", 1);
    t.peer.onEndpointElsewhere("198.51.100.9:51820", 2); // bypassed
    t.peer.onEndpointOurs(); // connected
    t.clock.advance(60_000);
    t.peer.onTrafficAge(60_000); // dormant
    t.peer.onHandshakeHeld(); // connecting
    await t.peer.close();
    for (const name of PEER_STATE_NAMES) expect(t.peer.entered[name], name).toBeGreaterThan(0);
    expect(t.transitions).toEqual([
      "signalling",
      "connecting",
      "failed",
      "connecting",
      "connected(direct)",
      "suspect",
      "restarting",
      "connected(direct)",
      "bypassed",
      "connected(direct)",
      "dormant",
      "connecting",
    ]);
    expect(t.peer.stateSince).toBe(61_150);
  });
});
