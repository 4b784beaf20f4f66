// A peer that does not answer our signalling (IceSession's "stalled") has the link check its connection
// to the introduction server, never reconnect it blindly: a reconnect costs every other peer its
// signalling. Only a ping left unanswered (the client then replaces the connection) makes the stalled
// peer restart ICE once it is back online. The IntroClient is a fake the test drives.
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { IceSessionFactory } from "../../src/ice/ice-session-factory.js";
import { IntroLink, linkSignalling } from "../../src/intro-client/intro-link.js";
import { Peer, type PeerSignalling } from "../../src/peer/peer.js";
import { publicKeyOf } from "../../src/signalling/signalling-crypto.js";
import { FakeClock } from "../support/fake-clock.js";
import { FakePath, FakeSignalling } from "../support/fake-ice-session.js";

const fake = vi.hoisted(() => {
  type Listener = (...args: unknown[]) => void;
  /** What IntroLink uses of IntroClient; the test plays the server and the network. */
  class FakeIntroClient {
    static readonly made: FakeIntroClient[] = [];
    readonly publicKey: string;
    readonly servers = { size: 1 };
    readonly online = new Set<string>();
    connected = false;
    starts = 0;
    stops = 0;
    /** Every checkAlive: why, and how the test answers it. */
    readonly checks: Array<{ why: string; answer: (alive: boolean) => void }> = [];
    private readonly listeners = new Map<string, Listener[]>();

    constructor(options: { keys: { publicKey: string } }) {
      this.publicKey = options.keys.publicKey;
      FakeIntroClient.made.push(this);
    }

    on(event: string, listener: Listener): this {
      this.listeners.set(event, [...(this.listeners.get(event) ?? []), listener]);
      return this;
    }

    emit(event: string, ...args: unknown[]): void {
      for (const listener of this.listeners.get(event) ?? []) listener(...args);
    }

    start(): void {
      this.starts++;
    }

    stop(): Promise<void> {
      this.stops++;
      return Promise.resolve();
    }

    isOnline(key: string): boolean {
      return this.online.has(key);
    }

    setPeers(): void {}
    send(): void {}

    checkAlive(_timeoutMs: number, why: string): Promise<boolean> {
      return new Promise((resolve) => this.checks.push({ why, answer: resolve }));
    }

    /** The server welcomed us and says `key` is online. */
    comeOnline(key: string): void {
      this.connected = true;
      this.emit("connected", { stunUrls: [] });
      this.online.add(key);
      this.emit("peer-online", key);
    }

    /** The connection is gone (as a terminate after an unanswered ping): every peer offline. */
    connectionLost(): void {
      this.connected = false;
      for (const key of this.online) this.emit("peer-offline", key);
      this.online.clear();
      this.emit("disconnected", { code: 1006, reason: "", cause: "no answer to a ping", server: "fake" });
    }
  }
  return { FakeIntroClient };
});

vi.mock("../../src/intro-client/intro-client.js", () => ({ IntroClient: fake.FakeIntroClient }));

const silent = pino({ level: "silent" });
const ownKey = publicKeyOf(Buffer.alloc(32, 1));
const peerKey = publicKeyOf(Buffer.alloc(32, 2));
const otherKey = publicKeyOf(Buffer.alloc(32, 3));

/** Lets promise continuations run (the link's check, the peer's reaction to it). */
const settled = () => new Promise((resolve) => setImmediate(resolve));

let now = 0;
let link: IntroLink | undefined;

beforeEach(() => {
  now = 1_000_000;
  vi.spyOn(performance, "now").mockImplementation(() => now);
  fake.FakeIntroClient.made.length = 0;
});

afterEach(async () => {
  await link?.stop();
  link = undefined;
  vi.restoreAllMocks();
});

/** A link on the fake client, with a Peer for `peerKey` whose ICE sessions are fakes. */
function setup() {
  const peers = new Map<string, Peer>();
  link = new IntroLink(
    {
      url: "ws://127.0.0.1:1",
      keys: { publicKey: ownKey, x25519: () => Promise.resolve(Buffer.alloc(32)) },
      logger: silent,
    },
    {
      peerOnline: (key) => peers.get(key)?.onPeerOnline(),
      peerOffline: (key) => peers.get(key)?.onPeerOffline(),
      signal: (key, signal) => peers.get(key)?.onSignal(signal),
    },
  );
  link.start();
  const client = fake.FakeIntroClient.made[0]!;
  // The factory is never asked: the fakes make the sessions.
  const unusedFactory = new IceSessionFactory({
    excludeInterfaces: [],
    excludeAddresses: [],
    stunUrls: () => [],
    turn: () => undefined,
    logger: silent,
  });
  const sessions = new FakeSignalling();
  const signalling: PeerSignalling = {
    ...linkSignalling(link, unusedFactory),
    createSession: (key, controlling, handlers) => sessions.createSession(key, controlling, handlers),
  };
  const peer = new Peer(peerKey, {
    clock: new FakeClock(),
    logger: silent,
    dataPlane: { setPath: () => {}, setDormant: () => {} },
    signalling,
  });
  peers.set(peerKey, peer);
  return { client, signalling, peer, session: () => sessions.session() };
}

describe("IntroLink: stalled signalling", () => {
  it("checks a live connection with a ping and keeps it: the peer is not answering", async () => {
    const t = setup();
    t.client.comeOnline(peerKey);
    const verdict = t.signalling.stalled(peerKey, "offer unanswered");
    expect(t.client.checks.map((c) => c.why)).toEqual(["signalling went unanswered"]);
    t.client.checks[0]!.answer(true);
    expect(await verdict).toBe(false);
    expect(t.client.stops).toBe(0);
    expect(t.client.starts).toBe(1);
  });

  it("a peer that keeps ignoring us costs at most one ping every 5 s, and never a reconnect", async () => {
    const t = setup();
    t.client.comeOnline(peerKey);
    t.client.online.add(otherKey);
    // Two stalls while a check is under way share it.
    const first = t.signalling.stalled(peerKey, "offer unanswered");
    const second = t.signalling.stalled(otherKey, "restart request unanswered");
    t.client.checks[0]!.answer(true);
    expect(await Promise.all([first, second])).toEqual([false, false]);
    // Stalls every second: no ping until 5 s after the last one.
    for (let i = 1; i < 5; i++) {
      now += 1000;
      expect(await t.signalling.stalled(peerKey, "offer unanswered")).toBe(false);
    }
    expect(t.client.checks).toHaveLength(1);
    now += 1000;
    const later = t.signalling.stalled(peerKey, "offer unanswered");
    expect(t.client.checks).toHaveLength(2);
    t.client.checks[1]!.answer(true);
    expect(await later).toBe(false);
    expect(t.client.stops).toBe(0);
  });

  it("nothing is checked for a peer that is offline, or while we are", async () => {
    const t = setup();
    expect(await t.signalling.stalled(peerKey, "offer unanswered")).toBe(false);
    t.client.comeOnline(otherKey);
    expect(await t.signalling.stalled(peerKey, "offer unanswered")).toBe(false);
    expect(t.client.checks).toHaveLength(0);
  });

  it("a dead connection (the ping unanswered) is replaced, and the stalled peer restarts ICE when back", async () => {
    const t = setup();
    t.client.comeOnline(peerKey);
    const path = new FakePath("direct", "198.51.100.7:40000");
    t.session().nominate(path);
    t.session().stall("restart request unanswered");
    expect(t.client.checks).toHaveLength(1);
    // The client terminates the silent connection (its own reconnect follows, not the link's).
    t.client.checks[0]!.answer(false);
    await settled();
    t.client.connectionLost();
    t.client.comeOnline(peerKey);
    expect(t.client.stops).toBe(0);
    expect(t.session().restarts.at(-1)).toEqual({
      reason: "signalling stalled: restart request unanswered",
      mode: "replace",
    });
  });

  it("after a stall on a live connection, the peer's own reconnect brings no stall restart", async () => {
    const t = setup();
    t.client.comeOnline(peerKey);
    t.session().nominate(new FakePath("direct", "198.51.100.7:40000"));
    t.session().stall("restart request unanswered");
    t.client.checks[0]!.answer(true);
    await settled();
    // The peer reconnects to the server by itself, much later.
    t.client.online.delete(peerKey);
    t.client.emit("peer-offline", peerKey);
    t.client.online.add(peerKey);
    t.client.emit("peer-online", peerKey);
    expect(t.session().restarts.map((r) => r.reason)).not.toContain(
      "signalling stalled: restart request unanswered",
    );
  });
});
