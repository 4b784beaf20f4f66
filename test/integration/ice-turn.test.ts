import { createSocket, Socket as DgramSocket, type RemoteInfo } from "node:dgram";
import { type AddressInfo, connect, createServer, type Socket } from "node:net";
import { PerformanceObserver } from "node:perf_hooks";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  Candidate,
  type CandidatePair,
  CandidatePairState,
  Connection,
  classes,
  createTurnClient,
  type IceOptions,
  Message,
  methods,
  type TurnProtocol,
} from "werift-ice";
import { describePair, IcePath } from "../../src/ice/ice-path.js";
import { IceSession, type IceSessionOptions } from "../../src/ice/ice-session.js";
import type { IceSignal } from "../../src/ice/ice-signal.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { turnRestCredentials } from "../lab/coturn.js";
import {
  connect as connectLoopbackPair,
  makePair as makeLoopbackPair,
} from "../support/ice-loopback-pair.js";
import { type LoopbackCoturn, startLoopbackCoturn } from "../support/loopback-coturn.js";
import { waitFor } from "../support/wait-for.js";

/** coturn logs allocation refreshes with it: a test checks allocations are released. */
const VERBOSE = "verbose";

// --- sessions --------------------------------------------------------------------------------------

const loopbackOnly = (addr: string) => !addr.startsWith("127.");
const sessions: IceSession[] = [];

function makePair(extra: Partial<IceSessionOptions>): { a: IceSession; b: IceSession } {
  const pair = {} as { a: IceSession; b: IceSession };
  const send = (to: () => IceSession) => (m: IceSignal) => {
    const copy = JSON.parse(JSON.stringify(m)) as unknown;
    setImmediate(() => to().handleSignal(copy));
  };
  const common = { stunUrls: [], excludeAddresses: loopbackOnly, ipv6: false, ...extra };
  pair.a = new IceSession({ ...common, controlling: true, sendSignal: send(() => pair.b) });
  pair.b = new IceSession({ ...common, controlling: false, sendSignal: send(() => pair.a) });
  sessions.push(pair.a, pair.b);
  return pair;
}

function nextPath(session: IceSession, timeoutMs = 15_000): Promise<PeerPath> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no path in time")), timeoutMs);
    session.once("path", (p) => {
      clearTimeout(timer);
      resolve(p);
    });
  });
}

async function exchange(from: PeerPath, to: PeerPath, count: number, tag: string): Promise<string[]> {
  const got: string[] = [];
  to.onDatagram = (d) => got.push(d.toString());
  for (let i = 0; i < count; i++) from.send(Buffer.from(`${tag}:${i}:`.padEnd(200, "x")));
  const deadline = Date.now() + 3000;
  while (got.length < count && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  return got;
}

let coturn: LoopbackCoturn;

beforeAll(async () => {
  coturn = await startLoopbackCoturn({ extra: [VERBOSE], stunTimeoutMs: 5000 });
});

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await coturn?.stop();
});

describe("IceSession over TURN (coturn on loopback, relay forced)", () => {
  it("nominates a relay pair, carries datagrams both ways on the fast path, never logs credentials", async () => {
    const { username, password: credential } = turnRestCredentials(coturn.secret, "peer-a", 600);
    let logs = "";
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logs += chunk.toString();
        done();
      },
    });
    const logger = pino({ level: "debug" }, sink);
    const { a, b } = makePair({
      forceRelay: true,
      turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=udp`], username, credential },
      logger,
    });
    const t0 = performance.now();
    const paths = Promise.all([nextPath(a), nextPath(b)]);
    b.start();
    a.start();
    const [pa, pb] = await paths;
    console.log(
      `TURN relay connect (start -> path on both sides): ${(performance.now() - t0).toFixed(1)} ms`,
    );

    expect(pa.kind).toBe("relay");
    expect(pb.kind).toBe("relay");
    expect(a.selectedPair).toMatchObject({ localType: "relay", remoteType: "relay", relayed: true });
    expect((pa as IcePath).fastPath).toBe(true);
    expect(await exchange(pa, pb, 100, "a")).toHaveLength(100);
    expect(await exchange(pb, pa, 100, "b")).toHaveLength(100);

    // A restart over TURN makes a new allocation and a new relay pair.
    const next = Promise.all([nextPath(a), nextPath(b)]);
    a.restart("upgrade attempt");
    const [na, nb] = await next;
    expect(na.kind).toBe("relay");
    expect(na.remote).not.toBe(pa.remote);
    expect(await exchange(na, nb, 20, "new")).toHaveLength(20);

    const lines = logs
      .trim()
      .split("\n")
      .map((line) => JSON.parse(line) as { component?: string; level?: number });
    expect(lines.some((line) => line.component === "ice" && line.level === 20)).toBe(true); // debug on
    expect(logs).not.toContain(credential);
    expect(logs).not.toContain(coturn.secret);

    // Every allocation (two per generation) is released on close, not left to expire in 10 minutes;
    // coturn's verbose log is its only view of allocations (a user quota or a small relay port range
    // cannot tell a released allocation from an abandoned one: tried).
    await Promise.all([a.close(), b.close()]);
    const released = coturn.output().split(`username=<${username}>, lifetime=0`).length - 1;
    expect(released).toBe(4);
  });

  it("works over TURN/TCP (werift's own data path, slower)", async () => {
    const { username, password: credential } = turnRestCredentials(coturn.secret, "peer-tcp", 600);
    const { a, b } = makePair({
      forceRelay: true,
      turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=tcp`], username, credential },
    });
    const paths = Promise.all([nextPath(a), nextPath(b)]);
    b.start();
    a.start();
    const [pa, pb] = await paths;
    expect(pa.kind).toBe("relay");
    expect((pa as IcePath).fastPath).toBe(false);
    expect(await exchange(pa, pb, 50, "a")).toHaveLength(50);
    expect(await exchange(pb, pa, 50, "b")).toHaveLength(50);
  });

  it("fails (before the connect timeout) when the TURN credentials are wrong", async () => {
    const { username } = turnRestCredentials(coturn.secret, "bad", 600);
    const { a, b } = makePair({
      forceRelay: true,
      connectTimeoutMs: 40_000,
      turn: { urls: [`turn:127.0.0.1:${coturn.port}`], username, credential: "d3Jvbmc=" },
    });
    const failure = new Promise((r) => a.once("failed", r));
    b.start();
    a.start();
    // coturn answers the signed Allocate with a 401 that carries no MESSAGE-INTEGRITY; werift (patched,
    // patches/README.md) takes it as the final answer, over UDP then TCP, and gathering ends without a
    // relay candidate (unpatched it retransmitted until its transactions timed out: ~13 s).
    expect(await failure).toMatchObject({ generation: 0, reason: "checks-failed", pathLost: true });
  });
});

// --- werift's TURN client when the server forgets (patches/werift-ice+0.2.3.patch) ----------------

/** What werift's TransactionFailed carries (not exported): the error response. */
interface FailedTransaction {
  readonly response?: Message;
}

function errorCodeOf(err: unknown): number | undefined {
  const code: unknown = (err as FailedTransaction).response?.getAttributeValue("ERROR-CODE");
  return Array.isArray(code) && typeof code[0] === "number" ? code[0] : undefined;
}

/** A Refresh of `turn`'s allocation (what werift sends every 500 s), with its nonce handling. */
async function refreshAllocation(turn: TurnProtocol): Promise<void> {
  const request = new Message(methods.REFRESH, classes.REQUEST).setAttribute("LIFETIME", 600);
  await turn.requestWithRetry(request, turn.server);
}

describe("werift's TURN client against a server that forgets (patched, see patches/README.md)", () => {
  let forgetful: LoopbackCoturn;
  const clients: TurnProtocol[] = [];

  beforeAll(async () => {
    // Nonces live 1 s: a refresh soon meets 438 Stale Nonce, which carries no MESSAGE-INTEGRITY.
    forgetful = await startLoopbackCoturn({ extra: [VERBOSE, "stale-nonce=1"], stunTimeoutMs: 5000 });
  });

  afterAll(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
    await forgetful?.stop();
  });

  async function allocate(user: string): Promise<TurnProtocol> {
    const { username, password } = turnRestCredentials(forgetful.secret, user, 600);
    const turn = await createTurnClient({ address: ["127.0.0.1", forgetful.port], username, password });
    clients.push(turn);
    return turn;
  }

  it("keeps its allocation past an expired nonce: the 438 brings a new nonce, the refresh succeeds", async () => {
    const turn = await allocate("stale");
    const first = Buffer.from(turn.nonce ?? []);
    // Every refresh must succeed; once the first nonce has expired one of them meets the 438 and
    // retries with the nonce it names (unpatched: the 438 is dropped and every refresh times out).
    await waitFor(
      async () => {
        await refreshAllocation(turn);
        return turn.nonce !== undefined && !turn.nonce.equals(first);
      },
      { what: "a refresh under a new nonce", timeoutMs: 15_000, intervalMs: 250 },
    );
    await refreshAllocation(turn);
  });

  it("learns that a restarted server forgot its allocation (437), instead of timing out", async () => {
    const turn = await allocate("restart");
    await forgetful.restart();
    // The new server process answers 438 (it never issued our nonce), then 437 to the retry.
    const outcome = await refreshAllocation(turn).then(
      () => "refreshed",
      (err: unknown) => errorCodeOf(err) ?? "no error response",
    );
    expect(outcome).toBe(437);
  });

  it("over TCP: the server ending the connection while nothing listens leaves no unhandled rejection", async () => {
    const rejections: unknown[] = [];
    const onRejection = (err: unknown) => rejections.push(err);
    process.on("unhandledRejection", onRejection);
    // A TCP front for coturn that the test closes with a FIN once nothing listens behind it: werift
    // reconnects on "end", and that reconnect is refused.
    const fronted = new Set<Socket>();
    const front = createServer((client) => {
      const upstream = connect(forgetful.port, "127.0.0.1");
      client.pipe(upstream).pipe(client);
      client.on("error", () => upstream.destroy());
      upstream.on("error", () => client.destroy());
      fronted.add(client);
    });
    try {
      await new Promise<void>((resolve) => front.listen(0, "127.0.0.1", resolve));
      const { port } = front.address() as AddressInfo;
      const { username, password } = turnRestCredentials(forgetful.secret, "tcp-end", 600);
      const turn = await createTurnClient(
        { address: ["127.0.0.1", port], username, password },
        { transport: "tcp" },
      );
      clients.push(turn);
      const stream = (turn.transport as unknown as { stream: { client: Socket } }).stream;
      const first = stream.client;
      front.close();
      for (const client of fronted) client.end();
      await waitFor(() => stream.client !== first && stream.client.destroyed, {
        what: "werift's reconnect refused",
      });
      // unhandledRejection is emitted once the microtasks of the turn that rejected have run.
      await new Promise((resolve) => setImmediate(resolve));
      await new Promise((resolve) => setImmediate(resolve));
      expect(rejections).toEqual([]);
    } finally {
      process.off("unhandledRejection", onRejection);
      front.close();
    }
  });
});

// --- data path cost -------------------------------------------------------------------------------

/** Two werift agents connected directly (no signalling layer), for comparing data paths. */
async function weriftPair(options: Partial<IceOptions>): Promise<[Connection, Connection]> {
  const make = (controlling: boolean) => {
    const c = new Connection(controlling, { useIpv6: false, ...options });
    c.stunServer = undefined;
    return c;
  };
  const a = make(true);
  const b = make(false);
  const relay = (to: Connection) => (c: Candidate) => {
    if (c.host.startsWith("127.")) void to.addRemoteCandidate(Candidate.fromSdp(c.toSdp()));
  };
  a.onIceCandidate.subscribe(relay(b));
  b.onIceCandidate.subscribe(relay(a));
  a.setRemoteParams({ iceLite: false, usernameFragment: b.localUsername, password: b.localPassword });
  b.setRemoteParams({ iceLite: false, usernameFragment: a.localUsername, password: a.localPassword });
  await Promise.all([a.gatherCandidates(), b.gatherCandidates()]);
  await Promise.all([a.addRemoteCandidate(undefined), b.addRemoteCandidate(undefined)]);
  await Promise.all([a.connect(), b.connect()]);
  return [a, b];
}

interface Cost {
  delivered: number;
  cpuUsPerDatagram: number;
  gcs: number;
}

/** Sends `count` 1452-byte datagrams (a full WireGuard data message at MTU 1420) in paced batches. */
async function measure(
  count: number,
  send: (d: Buffer) => void,
  onReceive: (cb: () => void) => void,
  pace: () => Promise<unknown>,
): Promise<Cost> {
  let delivered = 0;
  onReceive(() => {
    delivered++;
  });
  const datagram = Buffer.alloc(1452, 7);
  datagram.writeUInt32LE(4, 0); // WireGuard transport data
  const warmUp = 1000;
  for (let i = 0; i < warmUp; i++) {
    send(datagram);
    if (i % 8 === 7) await pace();
  }
  const warmDeadline = Date.now() + 3000;
  while (delivered < warmUp && Date.now() < warmDeadline) await new Promise((r) => setImmediate(r));
  delivered = 0;
  let gcs = 0;
  const observer = new PerformanceObserver((list) => {
    gcs += list.getEntries().length;
  });
  observer.observe({ entryTypes: ["gc"] });
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < count; i++) {
    send(datagram);
    if (i % 8 === 7) await pace();
  }
  const deadline = Date.now() + 3000;
  while (delivered < count && Date.now() < deadline) await new Promise((r) => setImmediate(r));
  const cpu = process.cpuUsage(cpu0);
  await new Promise((r) => setTimeout(r, 20)); // GC entries reach the observer asynchronously
  observer.disconnect();
  return { delivered, cpuUsPerDatagram: (cpu.user + cpu.system) / count, gcs };
}

describe("data path cost (send + receive, both ends in this process)", () => {
  const immediate = () => new Promise((r) => setImmediate(r));
  const millisecond = () => new Promise((r) => setTimeout(r, 1));
  const rows: string[] = [];
  const report = (name: string, n: number, c: Cost) => {
    rows.push(
      `${name.padEnd(30)} ${String(c.delivered).padStart(6)}/${n}  ${c.cpuUsPerDatagram.toFixed(2).padStart(6)} us CPU/datagram  ${String(c.gcs).padStart(4)} GCs`,
    );
  };
  /** The other engineers' tests share the CPUs: alternate the contenders and keep each one's best round. */
  async function contest(rounds: number, contenders: Array<() => Promise<Cost>>): Promise<Cost[]> {
    const best: Cost[] = [];
    for (let r = 0; r < rounds; r++) {
      for (const [i, run] of contenders.entries()) {
        const cost = await run();
        const prev = best[i];
        if (!prev || cost.cpuUsPerDatagram < prev.cpuUsPerDatagram) best[i] = cost;
      }
    }
    return best;
  }

  afterAll(() => {
    console.log(`data path cost (best of 3 rounds, 1452-byte datagrams):\n${rows.join("\n")}`);
  });

  it("direct: raw dgram vs werift Connection.send/onData vs IcePath", async () => {
    const n = 20_000;
    const s1 = createSocket("udp4");
    const s2 = createSocket("udp4");
    await new Promise<void>((r) => s1.bind(0, "127.0.0.1", () => r()));
    await new Promise<void>((r) => s2.bind(0, "127.0.0.1", () => r()));
    const port2 = s2.address().port;
    let rawReceive: () => void = () => {};
    s2.on("message", () => rawReceive());

    const host = { additionalHostAddresses: ["127.0.0.1"] };
    const [wa, wb] = await weriftPair(host);
    let weriftReceive: () => void = () => {};
    wb.onData.subscribe(() => weriftReceive());
    const [ia, ib] = await weriftPair(host);
    const pa = new IcePath(ia, ia.nominated!, 0);
    const pb = new IcePath(ib, ib.nominated!, 0);

    const [raw, werift, ours] = await contest(3, [
      () =>
        measure(
          n,
          (d) => s1.send(d, port2, "127.0.0.1"),
          (cb) => (rawReceive = cb),
          immediate,
        ),
      () =>
        measure(
          n,
          (d) => void wa.send(d),
          (cb) => (weriftReceive = cb),
          immediate,
        ),
      () =>
        measure(
          n,
          (d) => pa.send(d),
          (cb) => (pb.onDatagram = cb),
          immediate,
        ),
    ]);
    report("raw dgram (floor)", n, raw!);
    report("werift direct", n, werift!);
    report("IcePath direct", n, ours!);
    s1.close();
    s2.close();
    pa.close();
    pb.close();
    await Promise.all([wa.close(), wb.close(), ia.close(), ib.close()]);
    expect(werift!.delivered).toBeGreaterThan(0);
    expect(ours!.delivered).toBeGreaterThan(n * 0.9);
  });

  it("relay (TURN/UDP): werift Connection.send/onData vs IcePath", async () => {
    const n = 8000;
    const { username, password: credential } = turnRestCredentials(coturn.secret, "bench", 600);
    const turn: Partial<IceOptions> = {
      forceTurn: true,
      turnServer: ["127.0.0.1", coturn.port],
      turnUsername: username,
      turnPassword: credential,
    };
    const [wa, wb] = await weriftPair(turn);
    let weriftReceive: () => void = () => {};
    wb.onData.subscribe(() => weriftReceive());
    const [ia, ib] = await weriftPair(turn);
    const pa = new IcePath(ia, ia.nominated!, 0);
    const pb = new IcePath(ib, ib.nominated!, 0);
    expect(pa.fastPath).toBe(true);
    const [werift, ours] = await contest(3, [
      () =>
        measure(
          n,
          (d) => void wa.send(d),
          (cb) => (weriftReceive = cb),
          millisecond,
        ),
      () =>
        measure(
          n,
          (d) => pa.send(d),
          (cb) => (pb.onDatagram = cb),
          millisecond,
        ),
    ]);
    report("werift relay", n, werift!);
    report("IcePath relay (ChannelData)", n, ours!);
    pa.close();
    pb.close();
    await Promise.all([wa.close(), wb.close(), ia.close(), ib.close()]);
    expect(ours!.delivered).toBeGreaterThan(n * 0.9);
  });
});

describe("the controlled side on a relay, the controlling side direct (crossed checks at a busy hub)", () => {
  /** A (controlling) and B, with host candidates on 127.0.0.1 as well as TURN: the direct pair wins. */
  async function connectWithTurn(user: string): Promise<{ a: IcePath; b: IcePath; bSession: IceSession }> {
    const { username, password: credential } = turnRestCredentials(coturn.secret, user, 600);
    const pair = makeLoopbackPair({
      turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=udp`], username, credential },
    });
    sessions.push(pair.a, pair.b);
    const { pa, pb } = await connectLoopbackPair(pair);
    const [a, b] = [pa as IcePath, pb as IcePath];
    expect([a.kind, b.kind]).toEqual(["direct", "direct"]);
    return { a, b, bSession: pair.b };
  }

  /** A pair of `side` from its relay to the peer's host candidate, checked until it succeeded. */
  async function validatedRelayedPair(side: IcePath): Promise<CandidatePair> {
    const relayed = await waitFor(
      () => side.conn.checkList.find((p) => describePair(p).relayed && p.remoteCandidate.type === "host"),
      { what: "a pair from the relay to the peer's host candidate" },
    );
    await side.conn.checkStart(relayed).awaitable;
    expect(relayed.state).toBe(CandidatePairState.SUCCEEDED);
    return relayed;
  }

  it("follows the peer's nomination of a validated direct pair without waiting for data", async () => {
    const { a, b, bSession } = await connectWithTurn("steer");
    const direct = b.pair!;
    const moved: IcePath[] = [];
    bSession.on("path-moved", (path) => moved.push(path));
    // B moves onto a validated relayed pair, as werift's controlled side does when the relay's check
    // succeeds first while the direct checks cross: the two sides now send on different pairs.
    b.switchTo(await validatedRelayedPair(b));
    expect(b.kind).toBe("relay");
    // Past the connect checks' nominations, and no data either way: only A's probe (which nominates the
    // pair A sends on) can move B.
    await new Promise((r) => setTimeout(r, 1500));
    expect(b.kind).toBe("relay");
    const sentBefore = [a.stats.datagramsSent, b.stats.datagramsSent];
    expect(await a.probe(1000)).not.toBeNull();
    await waitFor(() => b.pair === direct, { what: "B back on the direct pair", timeoutMs: 2000 });
    expect(b.kind).toBe("direct");
    expect(moved).toEqual([b]); // the session tells the peer (its state and upgrades follow the kind)
    expect([a.stats.datagramsSent, b.stats.datagramsSent]).toEqual(sentBefore);
    expect(await exchange(b, a, 20, "b")).toHaveLength(20);
  });

  it("a nomination of a relayed pair alone does not move a direct controlled side", async () => {
    const { a, b } = await connectWithTurn("steer2");
    const direct = b.pair!;
    // A moves onto a validated relayed pair (its move nominates it), sending nothing.
    const relayed = await validatedRelayedPair(a);
    await new Promise((r) => setTimeout(r, 1500));
    a.switchTo(relayed);
    expect(await a.probe(1000)).not.toBeNull();
    await new Promise((r) => setTimeout(r, 500));
    expect(b.pair).toBe(direct);
  });
});

describe("a relay pair that won the nomination race (aggressive nomination)", () => {
  /** A STUN binding request carrying USE-CANDIDATE: a check of the controlling side (werift's are all nominating). */
  function isNominatingCheck(msg: Buffer): boolean {
    if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0001 || msg.readUInt32BE(4) !== 0x2112a442) return false;
    for (let at = 20; at + 4 <= msg.length; at += 4 + Math.ceil(msg.readUInt16BE(at + 2) / 4) * 4)
      if (msg.readUInt16BE(at) === 0x0025) return true;
    return false;
  }

  /** Loses the datagrams `drop` picks before any UDP socket of this process sees them (the network does). */
  function loseArriving(drop: (msg: Buffer, from: RemoteInfo) => boolean): () => void {
    const emit = DgramSocket.prototype.emit;
    DgramSocket.prototype.emit = function (this: DgramSocket, event: string | symbol, ...args: unknown[]) {
      if (event === "message" && drop(args[0] as Buffer, args[1] as RemoteInfo)) return true;
      return Reflect.apply(emit, this, [event, ...args]) as boolean;
    } as typeof emit;
    return () => {
      DgramSocket.prototype.emit = emit;
    };
  }

  interface RelayFirst {
    a: IcePath;
    b: IcePath;
    /** The paths A's session reported as moved to another pair. */
    moved: IcePath[];
    /** A's direct pair (host to host). */
    direct: CandidatePair;
    lift: () => void;
  }

  /**
   * A (controlling) and B with host candidates and TURN, while A's checks from its host socket are lost on
   * the way to B, as the first checks are at a peer's NAT until the peer's own check opens it: the relay
   * pair is nominated. B's checks of A arrive. `lift` ends the loss.
   */
  async function connectRelayFirst(user: string): Promise<RelayFirst> {
    const { username, password: credential } = turnRestCredentials(coturn.secret, user, 600);
    const pair = makeLoopbackPair({
      turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=udp`], username, credential },
    });
    sessions.push(pair.a, pair.b);
    const moved: IcePath[] = [];
    pair.a.on("path-moved", (path) => moved.push(path));
    const [low, high] = coturn.relayPorts;
    const relayed = (port: number) => port === coturn.port || (port >= low && port <= high);
    let lost = 0;
    const lift = loseArriving((msg, from) => {
      const drop = !relayed(from.port) && isNominatingCheck(msg);
      if (drop) lost++;
      return drop;
    });
    try {
      const { pa, pb } = await connectLoopbackPair(pair);
      const [a, b] = [pa as IcePath, pb as IcePath];
      expect([a.kind, b.kind]).toEqual(["relay", "relay"]);
      expect(lost).toBeGreaterThan(0);
      const direct = a.conn.checkList.find((p) => !describePair(p).relayed);
      if (!direct) throw new Error("A has no direct pair");
      expect(direct.state).not.toBe(CandidatePairState.SUCCEEDED);
      return { a, b, moved, direct, lift };
    } catch (err) {
      lift();
      throw err;
    }
  }

  async function expectMovedToDirect({ a, b, moved, direct }: RelayFirst): Promise<void> {
    await waitFor(() => a.kind === "direct", { what: "A off the relay", timeoutMs: 4000 });
    expect(a.pair).toBe(direct);
    expect(a.generation).toBe(0); // the same agent: no upgrade attempt, no new generation
    expect(moved).toEqual([a]); // the session tells the peer (its state, upgrades, the kernel path)
    // B follows the nomination A's move sent (its own check validated the direct pair).
    await waitFor(() => b.kind === "direct", { what: "B off the relay", timeoutMs: 3000 });
    expect(await exchange(a, b, 20, "a")).toHaveLength(20);
    expect(await exchange(b, a, 20, "b")).toHaveLength(20);
  }

  it("the controlling side moves onto the direct pair when its check in flight is answered", async () => {
    const relayFirst = await connectRelayFirst("race-1");
    relayFirst.lift();
    await expectMovedToDirect(relayFirst);
  });

  it("the direct pair whose check failed is checked again after the relay's nomination, and the path moves", async () => {
    const relayFirst = await connectRelayFirst("race-2");
    try {
      // Past the last retransmission of A's first check (sent 750 ms after it): only a new check can
      // validate the pair now, the one B's check (answered while A's was in progress) calls for.
      await new Promise((r) => setTimeout(r, 1500));
    } finally {
      relayFirst.lift();
    }
    await expectMovedToDirect(relayFirst);
    expect(relayFirst.direct.requestsSent).toBeGreaterThanOrEqual(2); // its first check, then the recheck
  });

  it("neither side leaves the relay while the direct pair stays unanswered", async () => {
    const { a, b, moved, lift } = await connectRelayFirst("race-3");
    try {
      await new Promise((r) => setTimeout(r, 2500));
      // B validated the direct pair with its own check, but follows the controlling side only.
      expect(
        b.conn.checkList.some((p) => !describePair(p).relayed && p.state === CandidatePairState.SUCCEEDED),
      ).toBe(true);
      expect([a.kind, b.kind]).toEqual(["relay", "relay"]);
      expect(moved).toEqual([]);
    } finally {
      lift();
    }
  });
});
