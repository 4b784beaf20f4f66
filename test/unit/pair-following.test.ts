// The controlling side's move off a relay onto a direct pair of the same agent (pair-following.ts), with
// a fake agent and path: which pair, when, how often, and never on the controlled side. The real thing,
// with werift agents and coturn, is in test/integration/ice-turn.test.ts and test/e2e/relay-race.test.ts.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { type CandidatePair, CandidatePairState } from "werift-ice";
import type { IcePath } from "../../src/ice/ice-path.js";
import { FOLLOW_INTERVAL_MS, followPeer } from "../../src/ice/pair-following.js";
import type { StunGuard } from "../../src/ice/stun-guard.js";

interface FakePair {
  state: CandidatePairState;
  priority: number;
  localCandidate: { type: string };
  remoteCandidate: { type: string };
  protocol: { type: string };
}

const pairOf = (local: string, remote: string, priority: number, state: CandidatePairState): FakePair => ({
  state,
  priority,
  localCandidate: { type: local },
  remoteCandidate: { type: remote },
  protocol: { type: "stun" },
});

/** What followPeer uses of an agent: its check list, its role, the nominated pair, checkComplete. */
class FakeAgent {
  nominated: FakePair | undefined;
  constructor(
    readonly checkList: FakePair[],
    readonly iceControlling: boolean,
  ) {}
  checkComplete(_pair: FakePair): void {}
  /** A check of `pair` ended with `state`, as werift reports it. */
  complete(pair: FakePair, state: CandidatePairState): void {
    pair.state = state;
    this.checkComplete(pair);
  }
}

/** What followPeer uses of an IcePath; `switchTo` records the moves. */
class FakePath {
  onOtherPair: ((pair: CandidatePair) => void) | null = null;
  closed = false;
  readonly generation = 0;
  readonly moves: FakePair[] = [];
  constructor(
    readonly conn: FakeAgent,
    public pair: FakePair,
  ) {}
  get kind(): "direct" | "relay" {
    return this.pair.localCandidate.type === "relay" || this.pair.remoteCandidate.type === "relay"
      ? "relay"
      : "direct";
  }
  get remote(): string {
    return `${this.pair.remoteCandidate.type}:${this.pair.priority}`;
  }
  switchTo(pair: FakePair): void {
    this.pair = pair;
    this.moves.push(pair);
  }
}

const noGuard = { onAuthenticatedRequest: () => () => undefined } as unknown as StunGuard;
const log = pino({ level: "silent" });
const settle = () => new Promise((r) => setImmediate(r));

function follow(
  controlling: boolean,
  pairs: FakePair[],
  inUse: FakePair,
): { agent: FakeAgent; path: FakePath; followed: number[] } {
  const agent = new FakeAgent(pairs, controlling);
  agent.nominated = inUse;
  const path = new FakePath(agent, inUse);
  const followed: number[] = [];
  followPeer(path as unknown as IcePath, controlling, noGuard, log, () => followed.push(performance.now()));
  return { agent, path, followed };
}

/** A path on a relay pair, with a direct pair of the same agent in `directState`. */
function onRelayWithDirect(controlling: boolean, directState = CandidatePairState.IN_PROGRESS) {
  const relay = pairOf("relay", "srflx", 10, CandidatePairState.SUCCEEDED);
  const direct = pairOf("host", "srflx", 500, directState);
  return { relay, direct, ...follow(controlling, [relay, direct], relay) };
}

describe("the controlling side leaves a relay for a direct pair of its generation", () => {
  it("moves once a direct pair's check succeeds, to the best such pair, and tells the session", async () => {
    const relay = pairOf("relay", "srflx", 10, CandidatePairState.SUCCEEDED);
    const srflx = pairOf("host", "srflx", 500, CandidatePairState.IN_PROGRESS);
    const host = pairOf("host", "host", 900, CandidatePairState.IN_PROGRESS);
    const { agent, path, followed } = follow(true, [host, srflx, relay], relay);
    await settle();
    expect(path.moves).toEqual([]); // nothing validated yet

    agent.complete(host, CandidatePairState.FAILED);
    await settle();
    expect(path.moves).toEqual([]);

    agent.complete(srflx, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([srflx]);
    expect(agent.nominated).toBe(srflx); // consent and liveness follow the pair in use
    expect(followed).toHaveLength(1);

    // On a direct path already: a better direct pair validating later is left alone.
    agent.complete(host, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([srflx]);
  });

  it("takes the best validated direct pair at once when one validated before it looked", async () => {
    const relay = pairOf("host", "relay", 10, CandidatePairState.SUCCEEDED);
    const low = pairOf("host", "srflx", 400, CandidatePairState.SUCCEEDED);
    const high = pairOf("host", "host", 800, CandidatePairState.SUCCEEDED);
    const { path } = follow(true, [relay, low, high], relay);
    expect(path.moves).toEqual([high]);
  });

  it("a relay pair's success, or another relay's, does not move it", async () => {
    const relay = pairOf("relay", "srflx", 10, CandidatePairState.SUCCEEDED);
    const other = pairOf("relay", "host", 20, CandidatePairState.IN_PROGRESS);
    const { agent, path } = follow(true, [relay, other], relay);
    agent.complete(other, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([]);
  });

  it("moves at most once per follow interval: a second move waits for it, then happens", async () => {
    const { relay, direct, agent, path, followed } = onRelayWithDirect(true);
    agent.complete(direct, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([direct]);
    // The path went back to the relay (pair following: the direct pair fell silent), and a direct
    // pair validates again at once.
    path.pair = relay;
    agent.complete(direct, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([direct]);
    await new Promise((r) => setTimeout(r, FOLLOW_INTERVAL_MS + 100));
    expect(path.moves).toEqual([direct, direct]);
    expect(followed[1]! - followed[0]!).toBeGreaterThanOrEqual(FOLLOW_INTERVAL_MS - 1);
  });

  it("nothing once the path is closed", async () => {
    const { direct, agent, path } = onRelayWithDirect(true);
    path.closed = true;
    agent.complete(direct, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([]);
  });

  it("the controlled side never moves on its own checks: it follows the controlling side's nominations", async () => {
    const { direct, agent, path } = onRelayWithDirect(false, CandidatePairState.SUCCEEDED);
    agent.complete(direct, CandidatePairState.SUCCEEDED);
    await settle();
    expect(path.moves).toEqual([]);
  });
});
