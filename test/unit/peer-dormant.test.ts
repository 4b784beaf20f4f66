// Lazy peers (issue 15): a peer with no traffic for the idle timeout releases its ICE session and every
// timer (`dormant`), and WireGuard's next datagram or the peer's signal connects it again.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { Peer } from "../../src/peer/peer.js";
import { formatPeerState } from "../../src/peer/peer-state.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { FakeClock } from "../support/fake-clock.js";
import { type FakeIceSession, FakePath, FakeSignalling } from "../support/fake-ice-session.js";

const IDLE_MS = 15 * 60_000;

interface SetupOptions {
  controlling?: boolean;
  noSignalling?: boolean;
  idleTimeoutMs?: number;
}

function setup(options: SetupOptions = {}) {
  const clock = new FakeClock();
  const signalling = new FakeSignalling({ controlling: options.controlling });
  const { sessions } = signalling;
  const paths: Array<PeerPath | null> = [];
  const dormancy: boolean[] = [];
  const peer = new Peer("peerkey", {
    clock,
    random: () => 0.5,
    logger: pino({ level: "silent" }),
    dataPlane: {
      setPath: (_key, path) => paths.push(path),
      setDormant: (_key, dormant) => dormancy.push(dormant),
    },
    signalling: options.noSignalling ? null : signalling,
    timing: { idleTimeoutMs: options.idleTimeoutMs ?? IDLE_MS },
  });
  const session = (): FakeIceSession => signalling.session();
  const setOnline = (value: boolean) => {
    signalling.online = value;
    if (value) peer.onPeerOnline();
    else peer.onPeerOffline();
  };
  /** Connected on a relayed path: a session, and an upgrade timer pending (the controlling side). */
  const connectRelayed = () => {
    peer.onPeerOnline();
    session().canUpgrade = true;
    session().nominate(new FakePath("relay", "203.0.113.1:3479"));
    expect(state(peer)).toBe("connected(relay)");
  };
  /** Time passes with nothing carried (none since the start); the sweep at the interface's read says so. */
  const quietFor = (ms: number) => {
    clock.advance(ms);
    peer.onTrafficAge(clock.now());
  };
  return { peer, clock, sessions, session, paths, dormancy, setOnline, connectRelayed, quietFor };
}

const state = (peer: Peer) => formatPeerState(peer.state);

describe("Peer: dormant after the idle timeout", () => {
  it("releases its ICE session and holds no timer, but keeps nothing from waking it", () => {
    const t = setup();
    t.connectRelayed();
    expect(t.clock.pending).toBeGreaterThan(0); // the upgrade attempt is scheduled
    t.quietFor(IDLE_MS);
    expect(state(t.peer)).toBe("dormant");
    expect(t.session().closed).toBe(true);
    expect(t.peer.path).toBeNull();
    expect(t.paths.at(-1)).toBeNull();
    expect(t.dormancy).toEqual([true]);
    expect(t.clock.pending).toBe(0);
    expect(t.peer.entered.dormant).toBe(1);
    // Hours of quiet cost nothing: no timer fires, nothing is created.
    t.quietFor(3 * 3_600_000);
    expect(t.sessions).toHaveLength(1);
    expect(t.clock.pending).toBe(0);
  });

  it("stays connected while traffic flows, whatever the time since it connected", () => {
    const t = setup();
    t.connectRelayed();
    for (let i = 0; i < 10; i++) {
      t.clock.advance(IDLE_MS / 2);
      t.peer.onTrafficAge(1000);
    }
    expect(state(t.peer)).toBe("connected(relay)");
    expect(t.session().closed).toBe(false);
  });

  it("is connected proactively at start and rests only once idle for the timeout since", () => {
    const t = setup();
    t.peer.onPeerOnline(); // never active: proactive, as before lazy peers
    expect(t.sessions).toHaveLength(1);
    t.quietFor(IDLE_MS - 1);
    expect(state(t.peer)).toBe("connecting");
    t.quietFor(1);
    expect(state(t.peer)).toBe("dormant");
  });

  it("starts dormant when WireGuard's latest handshake is as old as the idle timeout", () => {
    for (const quiet of [IDLE_MS, 30 * IDLE_MS]) {
      const t = setup();
      t.peer.onCreatedQuiet(quiet);
      expect(state(t.peer)).toBe("dormant");
      expect(t.dormancy).toEqual([true]);
      expect(t.clock.pending).toBe(0);
      // Online at the introduction server: not connected proactively.
      t.setOnline(true);
      expect(t.sessions).toHaveLength(0);
      // WireGuard's first datagram connects it, as at a cold start.
      t.peer.onHandshakeHeld();
      expect(t.sessions).toHaveLength(1);
      expect(t.dormancy).toEqual([true, false]);
    }
  });

  it("a recent handshake at start: connected proactively, and dormant once the timeout has passed since", () => {
    const t = setup();
    t.peer.onCreatedQuiet(IDLE_MS - 1000);
    t.peer.onPeerOnline();
    expect(t.sessions).toHaveLength(1);
    // The sweep: nothing carried since Tunnelbore started (the data plane's stamps are 0).
    const sweep = () => t.peer.onTrafficAge(Number.MAX_SAFE_INTEGER);
    t.clock.advance(999);
    sweep();
    expect(state(t.peer)).toBe("connecting");
    t.clock.advance(1);
    sweep();
    expect(state(t.peer)).toBe("dormant");
  });

  it("without an idle timeout, a long-quiet peer is connected at start as always", () => {
    const t = setup({ idleTimeoutMs: 0 });
    t.peer.onCreatedQuiet(30 * IDLE_MS);
    t.peer.onPeerOnline();
    expect(t.sessions).toHaveLength(1);
  });

  it("WireGuard's held datagram wakes it: a new session, the data plane told at once", () => {
    const t = setup();
    t.connectRelayed();
    t.quietFor(IDLE_MS);
    t.peer.onHandshakeHeld();
    expect(t.sessions).toHaveLength(2);
    expect(t.session().closed).toBe(false);
    expect(state(t.peer)).toBe("connecting");
    expect(t.dormancy).toEqual([true, false]);
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    expect(state(t.peer)).toBe("connected(direct)");
    // Woken is active: a sweep right after finds it busy, not idle since long ago.
    t.peer.onTrafficAge(IDLE_MS + 5000);
    expect(state(t.peer)).toBe("connected(direct)");
  });

  it("a controlled side that wakes asks for an offer (the controlling side may be dormant too)", () => {
    const t = setup({ controlling: false });
    t.peer.onPeerOnline();
    t.quietFor(IDLE_MS);
    expect(state(t.peer)).toBe("dormant");
    t.peer.onHandshakeHeld();
    expect(t.session().controlling).toBe(false);
    expect(t.session().restarts).toEqual([{ reason: "new session", mode: "full" }]);
  });

  it("a signal from the peer wakes it", () => {
    const t = setup({ controlling: false });
    t.peer.onPeerOnline();
    t.quietFor(IDLE_MS);
    t.peer.onSignal({ t: "offer" });
    expect(t.sessions).toHaveLength(2);
    expect(t.session().signals).toEqual([{ t: "offer" }]);
    expect(state(t.peer)).toBe("connecting");
  });

  it("woken by the peer's signal alone, it rests again soon without traffic; woken by WireGuard, not", () => {
    const t = setup({ controlling: false });
    t.peer.onPeerOnline();
    t.quietFor(IDLE_MS);
    t.peer.onSignal({ t: "offer" }); // e.g. the peer restarted ICE because its path died when we rested
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.quietFor(9_000);
    expect(state(t.peer)).toBe("connected(direct)");
    t.quietFor(1_000); // nothing went through it: no reason to keep it, nor to wake the other side
    expect(state(t.peer)).toBe("dormant");
    t.peer.onHandshakeHeld();
    t.session().nominate(new FakePath("direct", "198.51.100.7:40001"));
    t.quietFor(IDLE_MS - 1); // the sweep still reports the old quiet: WireGuard's wish counts from now
    expect(state(t.peer)).toBe("connected(direct)");
  });

  it("is not connected proactively when the peer comes online again, nor after a network change", () => {
    const t = setup();
    t.connectRelayed();
    t.quietFor(IDLE_MS);
    t.setOnline(false);
    t.peer.onNetworkChanged("addresses changed");
    t.setOnline(true);
    expect(t.sessions).toHaveLength(1);
    expect(state(t.peer)).toBe("dormant");
    expect(t.clock.pending).toBe(0);
  });

  it("an idle peer whose path goes suspect rests instead of restarting ICE (it would wake the other side)", () => {
    const t = setup();
    t.connectRelayed();
    t.clock.advance(IDLE_MS - 1); // upgrade attempts meanwhile: not idle yet
    const restarts = t.session().restarts.length;
    t.clock.advance(1); // idle, and no sweep yet
    t.peer.onSuspect("idle path unanswered", false);
    expect(state(t.peer)).toBe("dormant");
    expect(t.session().restarts).toHaveLength(restarts);
    expect(t.peer.iceRestarts["path-suspect"]).toBe(0);
  });

  it("an idle peer whose retry comes due rests instead of retrying", () => {
    const t = setup();
    t.connectRelayed();
    t.clock.advance(IDLE_MS - 500);
    t.session().fail("consent-expired", true); // path lost: a retry in 1 s, when it is idle
    expect(state(t.peer)).toBe("failed");
    const restarts = t.session().restarts.length;
    t.clock.advance(1000);
    expect(state(t.peer)).toBe("dormant");
    expect(t.session().restarts).toHaveLength(restarts);
    expect(t.clock.pending).toBe(0);
  });

  it("keeps its static path; traffic on it wakes ICE again", () => {
    const t = setup();
    const fixed = new FakePath("static", "203.0.113.9:51820");
    t.peer.onStaticPath(fixed, "203.0.113.9:51820");
    t.connectRelayed();
    t.quietFor(IDLE_MS);
    expect(state(t.peer)).toBe("dormant");
    expect(t.peer.path).toBe(fixed);
    expect(fixed.closed).toBe(false);
    expect(t.clock.pending).toBe(0);
    t.peer.onHeard(); // the static path answers: a connection, ICE still released
    expect(state(t.peer)).toBe("connected(static)");
    t.clock.advance(5000);
    t.peer.onTrafficAge(100); // WireGuard talked on it after the peer went dormant
    expect(t.sessions).toHaveLength(2);
    expect(t.session().closed).toBe(false);
  });

  it("never rests without an introduction server (static paths cost nothing) or with the timeout off", () => {
    for (const t of [setup({ noSignalling: true }), setup({ idleTimeoutMs: 0 })]) {
      t.peer.onStaticPath(new FakePath("static", "203.0.113.9:51820"), "203.0.113.9:51820");
      t.quietFor(10 * IDLE_MS);
      expect(state(t.peer)).not.toBe("dormant");
      expect(t.dormancy).toEqual([]);
    }
  });
});
