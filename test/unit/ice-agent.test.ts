// IceAgent's phases and its handling of the peer's candidates, without a network: the werift Connection
// never gathers here (no sockets). The whole life over loopback is in test/integration/ice-session.test.ts.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { Candidate, CandidatePairState, classes, Message, methods, StunProtocol } from "werift-ice";
import { IceAgent, type IceAgentContext, type IceAgentIdentity } from "../../src/ice/ice-agent.js";
import { weriftOptionSets } from "../../src/ice/ice-server-url.js";
import type { IceFailureReason } from "../../src/ice/ice-session.js";
import { type IceOffer, MAX_REMOTE_CANDIDATES } from "../../src/ice/ice-signal.js";
import { connectionInternals } from "../../src/ice/werift-internals.js";

const EPOCH = "0123456789abcdef";
const excluded = (address: string) => address.startsWith("10.7.");
const agents: IceAgent[] = [];

interface Harness {
  readonly context: IceAgentContext;
  readonly stats: IceAgentContext["stats"];
  /** Resolves with the first failure reported. */
  readonly failure: Promise<IceFailureReason>;
}

function harness(extra: Partial<IceAgentContext> = {}, turn = false): Harness {
  const stats: IceAgentContext["stats"] = { remoteCandidatesRejected: 0, localCandidatesFiltered: 0 };
  let reportFailure: (reason: IceFailureReason) => void = () => {};
  const failure = new Promise<IceFailureReason>((resolve) => {
    reportFailure = resolve;
  });
  const werift = weriftOptionSets(
    {
      stunUrls: [],
      ipv6: false,
      turn: turn ? { urls: ["turn:192.0.2.50"], username: "1:u", credential: "c" } : undefined,
    },
    excluded,
  );
  const context: IceAgentContext = {
    controlling: true,
    werift,
    exclude: excluded,
    log: pino({ enabled: false }),
    stats,
    turnHint: undefined,
    socketBufferBytes: undefined,
    connectTimeoutMs: 60_000,
    upgradeTimeoutMs: 60_000,
    isCurrent: () => true,
    signal: () => {},
    nominated: () => {},
    followed: () => {},
    // As the session does: a failed agent is closed.
    failed: (agent, reason) => {
      reportFailure(reason);
      void agent.close();
    },
    ...extra,
  };
  return { context, stats, failure };
}

function agent(context: IceAgentContext, identity: Partial<IceAgentIdentity> = {}): IceAgent {
  const made = new IceAgent(context, {
    epoch: EPOCH,
    generation: 0,
    reason: "test",
    mode: "full",
    repair: false,
    ...identity,
  });
  agents.push(made);
  return made;
}

function offerOf(peer: IceAgent): IceOffer {
  return {
    t: "offer",
    epoch: EPOCH,
    generation: 0,
    ufrag: peer.conn.localUsername,
    pwd: peer.conn.localPassword,
  };
}

const host = (n: number, address = `192.0.2.${(n % 250) + 1}`) =>
  `f${n} 1 udp 2130706431 ${address} ${4000 + n} typ host`;

/** Whether the agent's werift answers a connectivity check with this USERNAME from this address. */
function answers(a: IceAgent, username: string | null, address: string): boolean {
  const check = new Message(methods.BINDING, classes.REQUEST);
  if (username !== null) check.setAttribute("USERNAME", username);
  const protocol = undefined as never; // the filter does not look at it
  return a.conn.options.filterStunResponse?.(check, [address, 4000], protocol) ?? true;
}

afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.close()));
});

describe("IceAgent phases", () => {
  it("starts gathering, with strong credentials and no STUN server it was not given", () => {
    const a = agent(harness().context);
    expect(a.phase).toBe("gathering");
    expect(a.remoteDescribed).toBe(false);
    expect(a.path).toBeNull();
    expect(a.conn.localUsername).toMatch(/^[0-9a-f]{8}$/);
    expect(a.conn.localPassword).toMatch(/^[0-9a-f]{32}$/);
    expect(Object.keys(a.conn.userHistory)).toEqual([a.conn.localUsername]);
    expect(a.conn.stunServer).toBeUndefined();
  });

  it("moves to checking on connect(), once; checks that cannot run fail it and it closes", async () => {
    const { context, failure } = harness();
    const a = agent(context);
    const peer = agent(context);
    a.describeRemote(offerOf(peer));
    expect(a.remoteDescribed).toBe(true);
    a.connect();
    expect(a.phase).toBe("checking");
    a.connect();
    expect(a.phase).toBe("checking");
    // werift refuses to check before gathering: the agent reports it like any failed checks.
    expect(await failure).toBe("checks-failed");
    expect(a.phase).toBe("closed");
  });

  it("fails with timeout when nothing is nominated in time; upgrade attempts have their own limit", async () => {
    const full = harness({ connectTimeoutMs: 10 });
    agent(full.context);
    expect(await full.failure).toBe("timeout");
    const upgrade = harness({ upgradeTimeoutMs: 10 });
    const u = agent(upgrade.context, { mode: "upgrade" });
    expect(await upgrade.failure).toBe("timeout");
    expect(u.phase).toBe("closed");
  });

  it("retires only once nominated; close ends any phase once and runs the onClose cleanups", async () => {
    const a = agent(harness().context);
    let cleanups = 0;
    a.onClose(() => cleanups++);
    a.retire();
    expect(a.phase).toBe("gathering");
    await a.close();
    expect(a.phase).toBe("closed");
    await a.close();
    a.connect();
    expect(a.phase).toBe("closed");
    expect(cleanups).toBe(1);
  });
});

describe("IceAgent remote candidates", () => {
  it("passes allowed candidates to werift without werift's generation and ufrag", () => {
    const a = agent(harness().context);
    a.applyRemote({
      t: "candidate",
      epoch: EPOCH,
      generation: 0,
      candidate: `${host(1)} generation 3 ufrag abcd`,
    });
    expect(a.conn.remoteCandidates).toHaveLength(1);
    expect(a.conn.remoteCandidates[0]).toMatchObject({
      host: "192.0.2.2",
      generation: undefined,
      ufrag: undefined,
    });
  });

  it("rejects excluded addresses, candidates over the limit and after end-of-candidates", () => {
    const { context, stats } = harness();
    const a = agent(context);
    a.applyRemote({ t: "candidate", epoch: EPOCH, generation: 0, candidate: host(0, "10.7.0.1") });
    for (let n = 1; n <= MAX_REMOTE_CANDIDATES + 3; n++) {
      a.applyRemote({ t: "candidate", epoch: EPOCH, generation: 0, candidate: host(n) });
    }
    expect(a.conn.remoteCandidates).toHaveLength(MAX_REMOTE_CANDIDATES);
    expect(stats.remoteCandidatesRejected).toBe(1 + 3);

    const b = agent(context);
    b.applyDescriptionCandidates({ ...offerOf(a), candidates: [host(1)], endOfCandidates: true });
    b.applyRemote({ t: "candidate", epoch: EPOCH, generation: 0, candidate: host(2) });
    expect(b.conn.remoteCandidates).toHaveLength(1);
    expect(stats.remoteCandidatesRejected).toBe(4 + 1);
  });

  it("holds the peer's end-of-candidates back from werift while our gathering has not finished", () => {
    const a = agent(harness().context);
    a.applyRemote({ t: "end-of-candidates", epoch: EPOCH, generation: 0 });
    expect(a.conn.remoteCandidatesEnd).toBe(false);
  });

  it("answers only checks for its own ufrag and from allowed addresses", () => {
    const a = agent(harness().context);
    const ours = `${a.conn.localUsername}:peer`;
    expect(answers(a, ours, "192.0.2.9")).toBe(true);
    expect(answers(a, ours, "10.7.0.9")).toBe(false);
    expect(answers(a, "deadbeef:peer", "192.0.2.9")).toBe(false);
    expect(answers(a, null, "192.0.2.9")).toBe(false);
  });

  it("upgrade attempts neither pair relay candidates nor answer checks from relays or the TURN server", () => {
    const { context, stats } = harness({}, true);
    const u = agent(context, { mode: "upgrade" });
    const relay = "r1 1 udp 16777215 198.51.100.7 5000 typ relay raddr 192.0.2.1 rport 4000";
    u.applyRemote({ t: "candidate", epoch: EPOCH, generation: 0, candidate: relay });
    expect(u.conn.remoteCandidates).toHaveLength(0);
    expect(stats.remoteCandidatesRejected).toBe(0);
    const ours = `${u.conn.localUsername}:peer`;
    expect(answers(u, ours, "198.51.100.7")).toBe(false);
    expect(answers(u, ours, "192.0.2.50")).toBe(false); // our TURN server
    expect(answers(u, ours, "192.0.2.9")).toBe(true);
    // A full attempt pairs relay candidates like any other.
    const f = agent(context);
    f.applyRemote({ t: "candidate", epoch: EPOCH, generation: 0, candidate: relay });
    expect(f.conn.remoteCandidates).toHaveLength(1);
  });
});

describe("IceAgent STUN gate", () => {
  /** A werift transport of the agent's (never opened): what werift does with a request it receives. */
  function transportOf(a: IceAgent): StunProtocol {
    const protocol = new StunProtocol();
    connectionInternals(a.conn).ensureProtocol(protocol);
    return protocol;
  }

  const roleSwap = () =>
    new Message(methods.BINDING, classes.REQUEST).setAttribute("ICE-CONTROLLING", 2n ** 64n - 1n);

  it("werift never sees an unsigned ICE-CONTROLLING; the same request signed by the peer reaches its role logic", () => {
    const a = agent(harness().context);
    const peer = agent(harness().context);
    a.describeRemote(offerOf(peer));
    const protocol = transportOf(a);
    const from: [string, number] = ["192.0.2.9", 4000];

    const unsigned = roleSwap();
    protocol.onRequestReceived.execute(unsigned, from, unsigned.bytes);
    const sniffed = roleSwap().setAttribute("USERNAME", `${a.conn.localUsername}:${peer.conn.localUsername}`);
    sniffed.addMessageIntegrity(Buffer.from(peer.conn.localPassword, "utf8")); // a key that is not ours
    protocol.onRequestReceived.execute(sniffed, from, sniffed.bytes);
    expect(a.conn.iceControlling).toBe(true);
    expect(a.stunGuard.stats.dropped).toMatchObject({ "wrong-username": 1, "bad-integrity": 1 });

    const signed = roleSwap().setAttribute("USERNAME", `${a.conn.localUsername}:${peer.conn.localUsername}`);
    signed.addMessageIntegrity(Buffer.from(a.conn.localPassword, "utf8")).addFingerprint();
    protocol.onRequestReceived.execute(signed, from, signed.bytes);
    expect(a.conn.iceControlling).toBe(false); // RFC 8445 7.3.1.1: the peer won the role conflict
    expect(a.stunGuard.stats.admitted).toBe(1);
  });
});

describe("IceAgent checks crossing the peer's", () => {
  /** One of our checks werift sent; the test answers it or lets it time out. */
  interface SentCheck {
    readonly to: readonly [string, number];
    answer(): void;
    timeOut(): void;
  }

  /** A host transport of the agent's that never opens: its checks wait for the test. */
  function transportOf(a: IceAgent): { protocol: StunProtocol; sent: SentCheck[] } {
    const protocol = new StunProtocol();
    protocol.localCandidate = new Candidate("h1", 1, "udp", 2130706431, "192.0.2.1", 5000, "host");
    const sent: SentCheck[] = [];
    protocol.sendStun = async () => {};
    protocol.request = (request, to) =>
      new Promise((resolve, reject) => {
        const response = new Message(methods.BINDING, classes.RESPONSE, request.transactionId);
        sent.push({
          to,
          answer: () => resolve([response, to]),
          timeOut: () => reject(new Error("transaction timed out")),
        });
      });
    const internals = connectionInternals(a.conn);
    internals.ensureProtocol(protocol);
    internals.protocols.push(protocol);
    return { protocol, sent };
  }

  /** The controlling peer's check, signed, nominating the pair (aggressive nomination, as werift's). */
  function nominatingCheck(a: IceAgent, peer: IceAgent): Message {
    return new Message(methods.BINDING, classes.REQUEST)
      .setAttribute("USERNAME", `${a.conn.localUsername}:${peer.conn.localUsername}`)
      .setAttribute("PRIORITY", 1_853_824_767)
      .setAttribute("ICE-CONTROLLING", 1n)
      .setAttribute("USE-CANDIDATE", null)
      .addMessageIntegrity(Buffer.from(a.conn.localPassword, "utf8"))
      .addFingerprint();
  }

  const peerAddress: [string, number] = ["198.51.100.7", 6000];
  const settle = () => new Promise((resolve) => setImmediate(resolve));

  /** A controlled agent with one pair to the peer, our check on it sent and unanswered. */
  function checking() {
    const a = agent(harness({ controlling: false }).context);
    const peer = agent(harness().context);
    a.describeRemote(offerOf(peer));
    const { protocol, sent } = transportOf(a);
    a.applyRemote({
      t: "candidate",
      epoch: EPOCH,
      generation: 0,
      candidate: `s1 1 udp 1694498815 ${peerAddress[0]} ${peerAddress[1]} typ srflx raddr 10.0.0.2 rport 6000`,
    });
    const pair = a.conn.checkList[0]!;
    pair.handle = a.conn.checkStart(pair);
    expect(pair.state).toBe(CandidatePairState.IN_PROGRESS);
    expect(sent).toHaveLength(1);
    return { a, peer, protocol, sent, pair };
  }

  it("a nomination that arrives while our check is in progress is not lost when that check times out", async () => {
    const { a, peer, protocol, sent, pair } = checking();
    // The peer's check comes through (its NAT is open for us now) and is answered: the peer nominates.
    const check = nominatingCheck(a, peer);
    protocol.onRequestReceived.execute(check, peerAddress, check.bytes);
    expect(a.stunGuard.stats.admitted).toBe(1);
    // Our check's last retransmission left before that: it times out.
    sent[0]!.timeOut();
    await settle();
    // The pair is checked again at once, and nominated as soon as the peer answers.
    expect(sent).toHaveLength(2);
    expect(sent[1]!.to).toEqual(peerAddress);
    sent[1]!.answer();
    await settle();
    expect(pair.state).toBe(CandidatePairState.SUCCEEDED);
    expect(a.conn.nominated).toBe(pair);
  });

  it("a check in progress that is answered is not repeated; nor is one without the peer's check meanwhile", async () => {
    const answered = checking();
    const check = nominatingCheck(answered.a, answered.peer);
    answered.protocol.onRequestReceived.execute(check, peerAddress, check.bytes);
    answered.sent[0]!.answer();
    await settle();
    expect(answered.a.conn.nominated).toBe(answered.pair);
    expect(answered.sent).toHaveLength(1);

    const unheard = checking();
    unheard.sent[0]!.timeOut();
    await settle();
    expect(unheard.pair.state).toBe(CandidatePairState.FAILED);
    expect(unheard.sent).toHaveLength(1);
  });
});
