// The introduction servers of a client: their order, one server per address of a name, which close
// codes move on, and the envelopes held while moving.
import { describe, expect, it } from "vitest";
import { parseRunArgs, type RunConfig } from "../../src/commands/run.js";
import { IntroOutbox } from "../../src/intro-client/outbox.js";
import { RecentEnvelopes } from "../../src/intro-client/recent-envelopes.js";
import { closeVerdict, expandServers, IntroServerList } from "../../src/intro-client/server-list.js";
import { CloseCode } from "../../src/signalling/protocol.js";

const sealed = (c: string) => ({ n: "n", c });

describe("IntroServerList", () => {
  it("starts at the first server and moves to the next, wrapping around", () => {
    const list = new IntroServerList(["ws://127.0.0.1:1", "ws://127.0.0.2:2", "wss://[::1]:3"]);
    expect(list.size).toBe(3);
    expect(list.needsRefresh).toBe(false);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) {
      seen.push(`${list.current.url} ${list.current.address}`);
      list.advance();
    }
    expect(seen).toEqual([
      "ws://127.0.0.1:1 127.0.0.1",
      "ws://127.0.0.2:2 127.0.0.2",
      "wss://[::1]:3 ::1",
      "ws://127.0.0.1:1 127.0.0.1",
    ]);
    expect(list.describe()).toEqual(["ws://127.0.0.1:1", "ws://127.0.0.2:2", "wss://[::1]:3"]);
  });

  it("makes one server of each address of a name, in the resolver's order, and keeps the name", async () => {
    const asked: string[] = [];
    const list = new IntroServerList(["wss://intro.test:8443", "ws://127.0.0.9:1"], async (host) => {
      asked.push(host);
      return [
        { address: "192.0.2.2", family: 4 },
        { address: "2001:db8::1", family: 6 },
      ];
    });
    expect(list.needsRefresh).toBe(true);
    await list.refresh();
    expect(asked).toEqual(["intro.test"]);
    expect(list.size).toBe(3);
    expect(list.current).toEqual({
      url: "wss://intro.test:8443",
      host: "intro.test",
      address: "192.0.2.2",
      family: 4,
    });
    list.advance();
    expect(list.current).toMatchObject({ host: "intro.test", address: "2001:db8::1", family: 6 });
    expect(list.describe()).toEqual([
      "wss://intro.test:8443 (192.0.2.2)",
      "wss://intro.test:8443 (2001:db8::1)",
      "ws://127.0.0.9:1",
    ]);
    // Resolved again only once the list wraps around; the current server is kept when still there.
    expect(list.needsRefresh).toBe(false);
    list.advance();
    list.advance();
    expect(list.needsRefresh).toBe(true);
    await list.refresh();
    expect(asked).toEqual(["intro.test", "intro.test"]);
    expect(list.current.address).toBe("192.0.2.2");
  });

  it("keeps a name that does not resolve as one server, so that its own error shows", async () => {
    const list = new IntroServerList(["ws://nowhere.test:1"], async () => {
      throw new Error("ENOTFOUND");
    });
    await list.refresh();
    expect(list.size).toBe(1);
    expect(list.current).toEqual({
      url: "ws://nowhere.test:1",
      host: "nowhere.test",
      address: null,
      family: null,
    });
  });

  it("drops duplicates and refuses what is not ws:// or wss://", () => {
    expect(expandServers(["ws://127.0.0.1:1", "ws://127.0.0.1:1"], new Map())).toHaveLength(1);
    expect(() => new IntroServerList(["http://127.0.0.1:1"])).toThrow(/ws:\/\/ or wss:\/\//);
    expect(() => new IntroServerList([])).toThrow(/no introduction server/);
  });

  it("moves on when a server goes away or refuses us, but not when another process holds our key", () => {
    for (const code of [
      CloseCode.serverShutdown,
      1006,
      1001,
      1000,
      CloseCode.idleTimeout,
      CloseCode.tooManyConnections,
    ])
      expect(closeVerdict(code)).toBe("move");
    for (const code of [CloseCode.notMember, CloseCode.authFailed, CloseCode.unsupportedVersion])
      expect(closeVerdict(code)).toBe("refused");
    expect(closeVerdict(CloseCode.replaced)).toBe("stay");
  });
});

describe("IntroOutbox", () => {
  it("holds for peers that were online when the connection ended, until they are back", () => {
    let now = 0;
    const outbox = new IntroOutbox({ graceMs: 1_000, now: () => now });
    expect(outbox.expects("a")).toBe(false);
    outbox.connectionLost(["a"]);
    outbox.resend("a", { sealed: [{ at: 0, sealed: sealed("old") }], payloads: [] });
    outbox.hold("a", 1);
    now = 29_000; // no deadline while we are away ourselves, but stale envelopes go
    outbox.hold("a", 2);
    now = 31_000; // away longer than an envelope lives: nothing more is held
    expect(outbox.expects("a")).toBe(false);
    outbox.connectionBack();
    expect(outbox.expects("a")).toBe(true);
    expect(outbox.take("a")).toEqual([{ payload: 2 }]);
    expect(outbox.expects("a")).toBe(false);
    expect(outbox.size).toBe(0);
  });

  it("keeps the order: what was sent before the end, then what was held", () => {
    const outbox = new IntroOutbox();
    outbox.connectionLost(["a"]);
    outbox.hold("a", "later");
    outbox.resend("a", {
      sealed: [
        { at: Date.now(), sealed: sealed("1") },
        { at: Date.now(), sealed: sealed("2") },
      ],
      payloads: [{ at: Date.now(), payload: "unsealed" }],
    });
    expect(outbox.take("a")).toEqual([
      { sealed: sealed("1") },
      { sealed: sealed("2") },
      { payload: "unsealed" },
      { payload: "later" },
    ]);
  });

  it("gives up on a peer not back within the grace", () => {
    let now = 0;
    const outbox = new IntroOutbox({ graceMs: 1_000, now: () => now });
    outbox.peerLeft("a");
    outbox.hold("a", 1);
    now = 999;
    expect(outbox.expects("a")).toBe(true);
    now = 1_001;
    expect(outbox.sweep()).toBe(1);
    expect(outbox.expects("a")).toBe(false);
    expect(() => outbox.hold("a", 2)).toThrow(/not expected/);
  });

  it("is bounded per peer and in total", () => {
    const outbox = new IntroOutbox({ maxPerPeer: 2, maxTotal: 3 });
    outbox.connectionLost(["a", "b"]);
    outbox.hold("a", 1);
    outbox.hold("a", 2);
    expect(() => outbox.hold("a", 3)).toThrow(/too many envelopes held/);
    outbox.hold("b", 1);
    expect(() => outbox.hold("b", 2)).toThrow(/too many envelopes held/);
    expect(outbox.size).toBe(3);
    outbox.drop("a");
    expect(outbox.size).toBe(1);
  });
});

describe("RecentEnvelopes", () => {
  it("keeps the last window's envelopes by peer, oldest first, and the payloads waiting for an epoch", () => {
    let now = 0;
    const recent = new RecentEnvelopes(1_000, 3, () => now);
    recent.record("a", sealed("0"));
    now = 500;
    recent.record("b", sealed("1"));
    recent.record("a", sealed("2"));
    recent.recordUnsealed("b", "waits");
    now = 1_200;
    recent.record("a", sealed("3"));
    const byPeer = recent.takeAll();
    expect(byPeer.get("a")?.sealed.map((s) => s.sealed.c)).toEqual(["2", "3"]);
    expect(byPeer.get("b")?.sealed.map((s) => s.sealed.c)).toEqual(["1"]);
    expect(byPeer.get("b")?.payloads.map((p) => p.payload)).toEqual(["waits"]);
    expect(recent.takeAll().size).toBe(0);
    recent.record("a", sealed("4"));
    recent.recordUnsealed("a", "sent once the epoch is known");
    recent.epochKnown("a");
    recent.record("b", sealed("5"));
    expect(recent.takePeer("a")).toEqual({ sealed: [{ at: 1_200, sealed: sealed("4") }], payloads: [] });
    expect([...recent.takeAll().keys()]).toEqual(["b"]);
  });
});

describe("run --intro", () => {
  const config = (argv: string[], env: NodeJS.ProcessEnv = {}): RunConfig => {
    const parsed = parseRunArgs(["--interface", "wg0", ...argv], env);
    if (parsed === "help") throw new Error("help");
    return parsed;
  };

  it("is repeatable, in order; the environment takes a list separated by commas", () => {
    expect(config(["--intro", "ws://a.example:1", "--intro", "wss://b.example"]).intro).toMatchObject({
      url: "ws://a.example:1",
      urls: ["ws://a.example:1", "wss://b.example"],
    });
    expect(config([], { TUNNELBORE_INTRO: "ws://a.example:1,ws://b.example:2" }).intro?.urls).toEqual([
      "ws://a.example:1",
      "ws://b.example:2",
    ]);
  });

  it("refuses any of them that is not a ws:// or wss:// URL", () => {
    expect(() => config(["--intro", "ws://a.example:1", "--intro", "http://b.example"])).toThrow(
      /--intro "http:\/\/b.example" must be a ws:\/\/ or wss:\/\/ URL/,
    );
  });
});
