// Two IceSessions in one process, connected by an in-memory signalling channel, on loopback only:
// candidates are restricted to 127.0.0.1 (the filter excludes every real interface), no STUN server.
import { createSocket } from "node:dgram";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { CandidatePairState } from "werift-ice";
import { IceAgent, type IceAgentContext } from "../../src/ice/ice-agent.js";
import type { IcePath } from "../../src/ice/ice-path.js";
import { weriftOptionSets } from "../../src/ice/ice-server-url.js";
import { type IceFailureReason, IceSession } from "../../src/ice/ice-session.js";
import { type IceSignal, MAX_REMOTE_CANDIDATES } from "../../src/ice/ice-signal.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { connect, loopbackOnly, makePair, nextPath, sessions } from "../support/ice-loopback-pair.js";
import { waitFor } from "../support/wait-for.js";

/** Sends `count` datagrams from `from` and resolves with what `to` delivered. */
async function exchange(
  from: PeerPath,
  to: PeerPath,
  count: number,
  tag: string,
  waitMs = 2000,
): Promise<string[]> {
  const got: string[] = [];
  to.onDatagram = (d) => got.push(d.toString());
  for (let i = 0; i < count; i++) from.send(Buffer.from(`${tag}:${i}:`.padEnd(64, "x")));
  const deadline = Date.now() + waitMs;
  while (got.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return got;
}

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

describe("IceSession on loopback", () => {
  it("nominates a direct pair and carries datagrams both ways, only from the nominated remote", async () => {
    const pair = makePair();
    const states: string[] = [];
    pair.a.on("state", (s) => states.push(s));
    const { pa, pb, ms } = await connect(pair);
    console.log(`loopback connect (start -> path on both sides): ${ms.toFixed(1)} ms`);
    expect(states).toEqual(["connecting", "connected"]);
    expect(pa.kind).toBe("direct");
    expect(pb.kind).toBe("direct");
    const selA = pair.a.selectedPair!;
    const selB = pair.b.selectedPair!;
    expect(selA).toMatchObject({ localType: "host", remoteType: "host", relayed: false, generation: 0 });
    expect(pa.remote).toBe(selB.local);
    expect(pb.remote).toBe(selA.local);

    expect(await exchange(pa, pb, 50, "a")).toHaveLength(50);
    const back = await exchange(pb, pa, 50, "b");
    expect(back).toEqual(Array.from({ length: 50 }, (_, i) => `b:${i}:`.padEnd(64, "x")));

    // A stranger writing to A's ICE socket is not delivered, nor is STUN-framed traffic from the remote.
    const delivered: string[] = [];
    pa.onDatagram = (d) => delivered.push(d.toString());
    const stranger = createSocket("udp4");
    await new Promise<void>((r) => stranger.bind(0, "127.0.0.1", () => r()));
    const [, aPort] = selA.local.split(":");
    // Once send's callback ran, the stranger's datagram waits in A's socket (loopback), ahead of B's.
    await new Promise<void>((resolve, reject) =>
      stranger.send(
        Buffer.from("not from the nominated remote".padEnd(64, "!")),
        Number(aPort),
        "127.0.0.1",
        (err) => (err ? reject(err) : resolve()),
      ),
    );
    const stun = Buffer.alloc(20);
    stun.writeUInt16BE(0x0001, 0); // binding request, no attributes
    stun.writeUInt32BE(0x2112a442, 4);
    pb.send(stun);
    pb.send(Buffer.from("real".padEnd(64, ".")));
    await waitFor(() => delivered.length > 0, { what: "a datagram is delivered" });
    stranger.close();
    expect(delivered).toEqual(["real".padEnd(64, ".")]);
    expect(pair.a.stats.signalsMalformed + pair.a.stats.signalsStale).toBe(0);
  });

  it("probes the pair in use: answered while the peer's agent lives, null once it is gone", async () => {
    const pair = makePair();
    const { pa } = await connect(pair);
    const path = pa as IcePath;
    expect(await path.probe(1000)).toEqual(expect.any(Number));
    await pair.b.close();
    expect(await path.probe(200)).toBeNull();
    expect(path.stats).toMatchObject({ probesSent: 2, probesAnswered: 1 });
  });

  it("each side's path notes the peer's probe of the pair in use (liveness lets it stand in for its own)", async () => {
    const pair = makePair();
    const { pa, pb } = await connect(pair);
    const a = pa as IcePath;
    const b = pb as IcePath;
    // The connect's own checks may have stamped them: each probe must move the other side's stamp.
    for (const [prober, peer] of [
      [a, b],
      [b, a],
    ] as const) {
      const before = peer.peerCheckedAt;
      await new Promise((r) => setTimeout(r, 5));
      const sentAt = Date.now();
      expect(await prober.probe(1000)).toEqual(expect.any(Number));
      expect(peer.peerCheckedAt).toBeGreaterThan(before);
      expect(peer.peerCheckedAt).toBeGreaterThanOrEqual(sentAt);
      expect(peer.peerCheckedAt).toBeLessThanOrEqual(Date.now());
    }
  });

  it("restarts onto a new pair, keeping the old path working until the new one is nominated", async () => {
    const pair = makePair({ previousPathGraceMs: 300 });
    const { pa: oldA, pb: oldB } = await connect(pair);

    // Hold B's signals so the restart cannot complete while we use the old path.
    pair.deliver.b = false;
    const newPaths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.a.restart("test");
    expect(pair.a.state).toBe("restarting");
    expect(await exchange(oldA, oldB, 20, "old-a")).toHaveLength(20);
    expect(await exchange(oldB, oldA, 20, "old-b")).toHaveLength(20);
    expect(pair.a.selectedPair?.generation).toBe(0);

    pair.deliver.b = true;
    for (const m of pair.toB.splice(0)) pair.b.handleSignal(m);
    const t0 = performance.now();
    const [newA, newB] = await newPaths;
    console.log(`loopback restart (offer delivered -> new path): ${(performance.now() - t0).toFixed(1)} ms`);
    expect(pair.a.state).toBe("connected");
    expect(pair.a.selectedPair?.generation).toBe(1);
    expect(pair.b.selectedPair?.generation).toBe(1);
    expect(newA.remote).not.toBe(oldA.remote); // new agents, new sockets
    expect(newB.remote).not.toBe(oldB.remote);
    expect(await exchange(newA, newB, 20, "new-a")).toHaveLength(20);
    expect(await exchange(newB, newA, 20, "new-b")).toHaveLength(20);

    // The old path still delivers during the grace period, then its agent is closed.
    expect(await exchange(oldA, oldB, 5, "grace")).toHaveLength(5);
    const [oldPathA, oldPathB] = [oldA as IcePath, oldB as IcePath];
    await waitFor(() => oldPathA.closed && oldPathB.closed, { what: "the old paths are closed" });
    const sentBefore = oldPathA.stats.datagramsSent;
    oldA.send(Buffer.alloc(64));
    expect(oldPathA.stats.datagramsSent).toBe(sentBefore);
    expect(await exchange(newA, newB, 5, "still")).toHaveLength(5);
  });

  it("restarts when the controlled side asks, once per request", async () => {
    const pair = makePair({ minRemoteRestartIntervalMs: 0 });
    await connect(pair);
    const next = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.b.restart("suspect");
    pair.b.restart("suspect again"); // same generation: satisfied by the first
    await next;
    expect(pair.a.selectedPair?.generation).toBe(1);
    expect(pair.b.selectedPair?.generation).toBe(1);
    await waitFor(() => pair.a.stats.restartRequestsIgnored > 0, { what: "the second request is ignored" });
    expect(pair.a.stats.restartRequestsIgnored).toBe(1);
    expect(pair.a.stats.generations).toBe(2);
  });

  it("the controlled side follows the pair the controlling side sends on (asymmetric nomination)", async () => {
    // Two host sockets per side; werift's aggressive nomination can leave the sides on different
    // pairs. Reproduce that deterministically: validate a second pair, and move only A to it.
    const pair = makePair({ extraHostAddresses: ["127.0.0.1", "127.0.0.2"] });
    const { pa, pb } = await connect(pair);
    const ia = pa as IcePath;
    const ib = pb as IcePath;
    const connA = ia.conn;
    const first = ia.pair!;
    const bBefore = pair.b.selectedPair!;
    // B's view of an A pair: local = the pair's remote, remote = A's socket (answers to 127.0.0.1 come
    // from 127.0.0.1: werift binds its sockets to the wildcard address).
    const mirror = (p: typeof first) => ({
      local: p.remoteAddr[1],
      remote: `127.0.0.1:${p.localCandidate.port}`,
    });
    const second = connA.checkList.find((p) => {
      const m = mirror(p);
      return (
        p !== first &&
        p.remoteAddr[0] === "127.0.0.1" &&
        (m.remote !== bBefore.remote || !bBefore.local.endsWith(`:${m.local}`))
      );
    });
    if (!second) throw new Error("no second pair");
    await connA.checkStart(second).awaitable; // a check (with USE-CANDIDATE) B answers and re-checks
    expect(second.state).toBe(CandidatePairState.SUCCEEDED);
    const m2 = mirror(second);
    await waitFor(
      () =>
        ib.conn.checkList.some(
          (p) =>
            p.state === CandidatePairState.SUCCEEDED &&
            p.localCandidate.port === m2.local &&
            `${p.remoteAddr[0]}:${p.remoteAddr[1]}` === m2.remote,
        ),
      { what: "B's triggered check on the second pair succeeded" },
    );
    let newPaths = 0;
    pair.b.on("path", () => newPaths++);

    ia.switchTo(second); // A now sends on a pair B did not nominate
    expect(await exchange(pa, pb, 10, "a")).toHaveLength(10); // accepted: a validated pair
    const bAfter = pair.b.selectedPair!;
    expect(bAfter.remote).toBe(mirror(second).remote);
    expect(bAfter.local.endsWith(`:${mirror(second).local}`)).toBe(true);
    expect(await exchange(pb, pa, 10, "b")).toHaveLength(10);
    expect(newPaths).toBe(0); // the same path object, moved
    expect(ib.stats.datagramsReceived).toBeGreaterThanOrEqual(10);
  });

  it("one generation at a time: a full restart while one is gathering or young joins it, a replace does not", async () => {
    const pair = makePair();
    pair.deliver.b = false;
    pair.a.start(); // generation 0: gathering, its offer held
    pair.a.restart("retry after failure");
    pair.a.restart("peer: suspect");
    expect(pair.a.stats.generations).toBe(1);
    expect(pair.a.stats.restartsJoined).toBe(2);
    pair.a.restart("local network changed", "replace");
    expect(pair.a.stats.generations).toBe(2);
    // The controlled side asks for nothing while the generation it accepted is under way...
    pair.toB.length = 0;
    pair.deliver.b = true;
    const paths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.a.restart("connect", "replace");
    await waitFor(() => pair.b.stats.generations === 1, { what: "b accepted the offer" });
    pair.b.restart("no reply from peer");
    expect(pair.toA.some((m) => m.t === "restart")).toBe(false);
    expect(pair.b.stats.restartsJoined).toBe(1);
    await paths;
    expect(pair.a.selectedPair?.generation).toBe(2);
    // ...and once connected, a restart is a new generation again.
    const next = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.b.restart("no reply from peer");
    await next;
    expect(pair.a.selectedPair?.generation).toBe(3);
  });

  it("a path in use and a newer generation under way: the controlled side asks, naming the path's generation", async () => {
    const pair = makePair();
    await connect(pair);
    pair.deliver.a = false; // b's answer is held: generation 1 stays under way on both sides
    pair.a.restart("peer online again");
    await waitFor(() => pair.b.stats.generations === 2, { what: "b accepted generation 1" });
    pair.b.restart("no reply from peer");
    const request = pair.toA.filter((m) => m.t === "restart").at(-1);
    expect(request).toMatchObject({ t: "restart", generation: 0 });
  });

  it("a request naming the path's generation while an upgrade attempt is under way starts a full one", async () => {
    // A TURN server makes upgrade attempts possible (none answers: the attempt only has to be under way).
    const pair = makePair({ turn: { urls: ["turn:127.0.0.1:9"], username: "1:u", credential: "c" } });
    await connect(pair);
    pair.deliver.b = false;
    pair.a.restart("upgrade to a direct path", "upgrade");
    expect(pair.a.upgrading).toBe(true);
    const generations = pair.a.stats.generations;
    const offer = pair.toB.find((m) => m.t === "offer");
    const epoch = offer?.t === "offer" ? offer.epoch : "";
    // What the controlled side sends when its path (generation 0) stops answering meanwhile.
    pair.a.handleSignal({ t: "restart", epoch, generation: 0, reason: "no reply from peer" });
    expect(pair.a.stats.generations).toBe(generations + 1);
    expect(pair.a.upgrading).toBe(false);
  });

  it("an upgrade attempt is no repair: the controlled side's pending restart request waits for a full generation", async () => {
    const pair = makePair({ turn: { urls: ["turn:127.0.0.1:9"], username: "1:u", credential: "c" } });
    await connect(pair);
    // b asks for a restart that never reaches a (lost, or ignored by a busy peer)...
    pair.deliver.a = false;
    pair.b.restart("no reply from peer");
    expect(pair.toA.some((m) => m.t === "restart")).toBe(true);
    pair.deliver.a = true;
    // ...then a's routine upgrade attempt arrives: it says so, and b does not take it for the repair.
    pair.a.restart("upgrade to a direct path", "upgrade");
    expect(pair.toB.filter((m) => m.t === "offer").at(-1)).toMatchObject({ mode: "upgrade" });
    await waitFor(() => pair.b.stats.generations === 2, { what: "b accepted the upgrade offer" });
    expect(pair.b.state).toBe("restarting");
    expect(pair.b.repairing).toBe(false);
    // A full generation is the answer to the request: that one is a repair.
    pair.a.restart("peer: no reply from peer", "replace");
    await waitFor(() => pair.b.stats.generations === 3, { what: "b accepted the full offer" });
    expect(pair.toB.filter((m) => m.t === "offer").at(-1)).not.toHaveProperty("mode");
    expect(pair.b.repairing).toBe(true);
  });

  it("a restart request answered by the peer's own restart is not pending any more when its path comes", async () => {
    const pair = makePair({ turn: { urls: ["turn:127.0.0.1:9"], username: "1:u", credential: "c" } });
    await connect(pair);
    // a restarts on its own; b, doubting the old path meanwhile, asks too (a ignores it: its offer answers).
    const paths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.a.restart("no reply from peer");
    await waitFor(() => pair.b.stats.generations === 2, { what: "b accepted a's offer" });
    pair.b.restart("no reply from peer");
    await paths;
    // The next upgrade attempt is an upgrade attempt, not the answer to b's old request.
    pair.a.restart("upgrade to a direct path", "upgrade");
    await waitFor(() => pair.b.stats.generations === 3, { what: "b accepted the upgrade offer" });
    expect(pair.b.repairing).toBe(false);
  });

  it("ignores late candidates of an abandoned generation and connects on the newest", async () => {
    const pair = makePair();
    pair.deliver.b = false;
    pair.a.start();
    pair.b.start();
    await waitFor(() => pair.toB.some((m) => m.t === "end-of-candidates"), {
      what: "generation 0 is gathered",
    });
    const gen0 = pair.toB.splice(0);
    expect(gen0.some((m) => m.t === "candidate")).toBe(true);
    pair.deliver.b = true;
    const paths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.a.restart("superseded", "replace");
    await paths;
    // Generation 0's offer and candidates arrive late: all stale.
    const before = pair.b.stats.signalsStale;
    for (const m of gen0) pair.b.handleSignal(m);
    expect(pair.b.stats.signalsStale - before).toBe(gen0.length);
    expect(pair.b.selectedPair?.generation).toBe(1);
  });

  it("drops hostile signals without throwing and still connects", async () => {
    const pair = makePair();
    const { pa, pb } = await connect(pair);
    const offer = pair.toB.find((m) => m.t === "offer")!;
    const epoch = offer.t === "offer" ? offer.epoch : "";
    const hostile: unknown[] = [
      undefined,
      null,
      42,
      "offer",
      [],
      { t: "offer" },
      { t: "answer", epoch, generation: 0, ufrag: "x", pwd: "y" },
      { t: "candidate", epoch, generation: 0, candidate: "1 1 udp 1 evil.example.com 9 typ host" },
      {
        t: "candidate",
        epoch,
        generation: 0,
        candidate: `1 1 udp 1 127.0.0.1 9 typ host ${"x ".repeat(200)}`,
      },
      { t: "end-of-candidates", epoch, generation: -1 },
      { t: "restart", reason: "a".repeat(1000) },
      JSON.parse('{"t":"offer","__proto__":{"polluted":true}}'),
    ];
    for (const h of hostile) {
      expect(() => pair.a.handleSignal(h)).not.toThrow();
      expect(() => pair.b.handleSignal(h)).not.toThrow();
    }
    expect(pair.a.stats.signalsMalformed).toBe(hostile.length);
    expect(pair.b.stats.signalsMalformed).toBe(hostile.length);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();

    // Well-formed but out of turn or stale: a replayed offer, an answer to the controlled side,
    // candidates for an unknown epoch, an excluded address, a generation from the past.
    const replayed = JSON.parse(JSON.stringify(offer)) as IceSignal;
    pair.b.handleSignal(replayed);
    pair.b.handleSignal({ ...replayed, t: "answer" });
    pair.a.handleSignal(replayed);
    pair.a.handleSignal({
      t: "candidate",
      epoch: "ffffffffffffffff",
      generation: 7,
      candidate: "f 1 udp 1 127.0.0.1 9 typ host",
    });
    pair.b.handleSignal({
      t: "candidate",
      epoch,
      generation: 0,
      candidate: "f 1 udp 1 192.0.2.99 9 typ host",
    });
    expect(pair.b.stats.remoteCandidatesRejected).toBeGreaterThanOrEqual(1);
    expect(pair.a.stats.signalsStale + pair.b.stats.signalsStale).toBeGreaterThanOrEqual(4);

    // The path is unaffected.
    expect(pair.a.selectedPair?.generation).toBe(0);
    expect(await exchange(pa, pb, 10, "after")).toHaveLength(10);
    expect(await exchange(pb, pa, 10, "after")).toHaveLength(10);
  });

  it("caps the candidates accepted per generation", async () => {
    const pair = makePair();
    pair.deliver.b = false;
    pair.a.start(); // sends the offer at once
    const offer = pair.toB.find((m) => m.t === "offer")!;
    if (offer.t !== "offer") throw new Error("no offer");
    pair.b.handleSignal(offer);
    const flood = 100;
    for (let i = 0; i < flood; i++) {
      const candidate = `f${i} 1 udp 1 127.0.0.${(i % 200) + 2} ${1000 + i} typ host`;
      pair.b.handleSignal({ t: "candidate", epoch: offer.epoch, generation: offer.generation, candidate });
    }
    expect(pair.b.stats.remoteCandidatesRejected).toBe(flood - MAX_REMOTE_CANDIDATES);
    expect(pair.b.stats.signalsMalformed).toBe(0);
  });

  it("fails a generation that gets no answer, and recovers by restart", async () => {
    const pair = makePair({ connectTimeoutMs: 400 });
    pair.deliver.b = false;
    const failure = new Promise((r) => pair.a.once("failed", r));
    pair.a.start();
    expect(await failure).toEqual({ generation: 0, reason: "timeout", pathLost: true });
    expect(pair.a.state).toBe("failed");
    pair.toB.length = 0;
    pair.deliver.b = true;
    pair.b.start();
    const paths = Promise.all([nextPath(pair.a), nextPath(pair.b)]);
    pair.a.restart("retry");
    await paths;
    expect(pair.a.state).toBe("connected");
  });

  it("a throwing listener or sendSignal does not break the session", async () => {
    const pair = makePair();
    pair.a.on("state", () => {
      throw new Error("listener bug");
    });
    const { pa, pb } = await connect(pair);
    expect(await exchange(pa, pb, 5, "ok")).toHaveLength(5);
    const lonely = new IceSession({
      controlling: true,
      stunUrls: [],
      extraHostAddresses: ["127.0.0.1"],
      excludeAddresses: loopbackOnly,
      ipv6: false,
      sendSignal: () => {
        throw new Error("channel down");
      },
    });
    sessions.push(lonely);
    expect(() => lonely.start()).not.toThrow();
  });

  it("closes cleanly: no path, state closed, sockets released", async () => {
    const pair = makePair();
    const { pa } = await connect(pair);
    await pair.a.close();
    expect(pair.a.state).toBe("closed");
    expect(pair.a.selectedPair).toBeNull();
    expect(() => pa.send(Buffer.alloc(64))).not.toThrow();
    expect(() => pair.a.handleSignal({ t: "restart", reason: "x" })).not.toThrow();
  });
});

// --- one generation on its own -------------------------------------------------------------------

interface AgentSide {
  readonly agent: IceAgent;
  readonly signals: IceSignal[];
  readonly path: Promise<IcePath>;
  readonly failures: IceFailureReason[];
}

const agents: IceAgent[] = [];

/** Two IceAgents wired to each other as their sessions would (no session around them). */
function agentPair(current: { a: boolean; b: boolean } = { a: true, b: true }): {
  a: AgentSide;
  b: AgentSide;
} {
  const sides = {} as { a: AgentSide; b: AgentSide };
  const make = (name: "a" | "b", peer: () => AgentSide): AgentSide => {
    const signals: IceSignal[] = [];
    const failures: IceFailureReason[] = [];
    let nominated: (path: IcePath) => void = () => {};
    const path = new Promise<IcePath>((resolve) => {
      nominated = resolve;
    });
    const context: IceAgentContext = {
      controlling: name === "a",
      werift: weriftOptionSets(
        { stunUrls: [], extraHostAddresses: ["127.0.0.1"], ipv6: false },
        loopbackOnly,
      ),
      exclude: loopbackOnly,
      log: pino({ enabled: false }),
      stats: { remoteCandidatesRejected: 0, localCandidatesFiltered: 0 },
      turnHint: undefined,
      socketBufferBytes: undefined,
      connectTimeoutMs: 10_000,
      upgradeTimeoutMs: 10_000,
      isCurrent: () => current[name],
      signal: (message) => {
        signals.push(message);
        setImmediate(() => peer().agent.applyRemote(message));
      },
      nominated: (_agent, p) => nominated(p),
      followed: () => {},
      failed: (agent, reason) => {
        failures.push(reason);
        void agent.close();
      },
    };
    const agent = new IceAgent(context, {
      epoch: "0123456789abcdef",
      generation: 0,
      reason: "test",
      mode: "full",
      repair: false,
    });
    agents.push(agent);
    return { agent, signals, path, failures };
  };
  sides.a = make("a", () => sides.b);
  sides.b = make("b", () => sides.a);
  const credentials = (agent: IceAgent) =>
    ({
      t: "offer",
      epoch: agent.epoch,
      generation: agent.generation,
      ufrag: agent.conn.localUsername,
      pwd: agent.conn.localPassword,
    }) as const;
  sides.a.agent.describeRemote(credentials(sides.b.agent));
  sides.b.agent.describeRemote(credentials(sides.a.agent));
  return sides;
}

describe("IceAgent on loopback", () => {
  afterEach(async () => {
    await Promise.all(agents.splice(0).map((a) => a.close()));
  });

  it("lives through gathering, checking, nominated, retiring and closed", async () => {
    const { a, b } = agentPair();
    expect([a.agent.phase, b.agent.phase]).toEqual(["gathering", "gathering"]);
    for (const side of [a, b]) {
      side.agent.gather();
      side.agent.connect();
    }
    expect([a.agent.phase, b.agent.phase]).toEqual(["checking", "checking"]);
    const [pa, pb] = await Promise.all([a.path, b.path]);
    expect([a.agent.phase, b.agent.phase]).toEqual(["nominated", "nominated"]);
    expect(a.agent.path).toBe(pa);
    expect(pa.kind).toBe("direct");
    expect(await exchange(pa, pb, 10, "nominated")).toHaveLength(10);

    a.agent.retire();
    expect(a.agent.phase).toBe("retiring");
    expect(await exchange(pa, pb, 10, "retiring")).toHaveLength(10); // still delivers meanwhile

    let cleanups = 0;
    a.agent.onClose(() => cleanups++);
    await a.agent.close();
    expect(a.agent.phase).toBe("closed");
    expect(pa.closed).toBe(true);
    expect(cleanups).toBe(1);
    expect([...a.failures, ...b.failures]).toEqual([]);
  });

  it("closes itself, reporting no path, when a newer generation took over while its checks ran", async () => {
    const current = { a: true, b: true };
    const { a, b } = agentPair(current);
    let reported = false;
    void a.path.then(() => {
      reported = true;
    });
    for (const side of [a, b]) {
      side.agent.gather();
      side.agent.connect();
    }
    current.a = false; // overtaken: what it trickles from now on is dropped too
    await waitFor(() => a.agent.phase === "closed", { what: "the overtaken agent closed" });
    await b.path;
    expect(reported).toBe(false);
    expect(a.failures).toEqual([]);
  });

  it("lets werift hear the peer's end-of-candidates only after our own gathering finished", async () => {
    const { a } = agentPair({ a: true, b: false });
    a.agent.applyRemote({ t: "end-of-candidates", epoch: a.agent.epoch, generation: 0 });
    expect(a.agent.conn.remoteCandidatesEnd).toBe(false);
    a.agent.gather();
    await waitFor(() => a.signals.some((m) => m.t === "end-of-candidates"), {
      what: "our gathering finished",
    });
    expect(a.agent.conn.remoteCandidatesEnd).toBe(true);
  });
});
