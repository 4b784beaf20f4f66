// A peer counts the ICE restarts it asks for, by a reason from a fixed set (a metrics label), one for
// each restart its session sees.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { ICE_RESTART_REASONS, newIceRestartCounts } from "../../src/peer/ice-restarts.js";
import { Peer } from "../../src/peer/peer.js";
import { FakeClock } from "../support/fake-clock.js";
import { FakePath, FakeSignalling } from "../support/fake-ice-session.js";

function setup(controlling = true) {
  const clock = new FakeClock();
  const signalling = new FakeSignalling({ controlling });
  const { sessions } = signalling;
  const peer = new Peer("peerkey", {
    clock,
    random: () => 0.5,
    logger: pino({ level: "silent" }),
    dataPlane: { setPath: () => {}, setDormant: () => {} },
    signalling,
  });
  const session = () => sessions.at(-1)!;
  const total = () => Object.values(peer.iceRestarts).reduce((a, b) => a + b, 0);
  return { peer, clock, session, total };
}

describe("Peer.iceRestarts", () => {
  it("starts at zero for every reason", () => {
    const { peer } = setup();
    expect(peer.iceRestarts).toEqual(newIceRestartCounts());
    expect(Object.keys(peer.iceRestarts).sort()).toEqual([...ICE_RESTART_REASONS].sort());
  });

  it("counts a suspect path's restart, an upgrade and a network change's, each under its reason", () => {
    const t = setup();
    t.peer.onPeerOnline();
    t.session().canUpgrade = true;
    t.session().nominate(new FakePath("relay", "192.0.2.9:3478"));
    t.clock.advance(4375); // the first upgrade attempt (5 s backoff, jitter at 0.5)
    expect(t.peer.iceRestarts.upgrade).toBe(1);
    t.session().fail("timeout", false);
    t.peer.onSuspect("handshake unanswered", false);
    expect(t.peer.iceRestarts["path-suspect"]).toBe(1);
    t.peer.onNetworkChanged("address removed");
    t.peer.onPeerOnline();
    expect(t.peer.iceRestarts["network-changed"]).toBe(1);
    // One count for each restart the session saw, no more, no less.
    expect(t.total()).toBe(t.session().restarts.length);
  });

  it("a fresh controlled session asking for an offer counts as new-session", () => {
    const t = setup(false);
    t.peer.onPeerOnline();
    expect(t.peer.iceRestarts["new-session"]).toBe(1);
    expect(t.total()).toBe(t.session().restarts.length);
  });
});
