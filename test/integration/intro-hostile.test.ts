// Hostile and broken connections each get a clear close code; the server keeps serving everyone else.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { newKey, RawIntroConnection, type TestKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
let server: IntroServer;
let alice: IntroClient;
let bob: IntroClient;

async function stillServing(): Promise<void> {
  const nonce = Math.random();
  const delivered = waitForEvent<[string, unknown]>(bob, "envelope", (_from, payload) => {
    return (payload as { nonce?: number }).nonce === nonce;
  });
  alice.send(bob.publicKey, { nonce });
  await delivered;
  expect(alice.isOnline(bob.publicKey)).toBe(true);
}

async function authenticated(key: TestKey = newKey(), options: { autoPong?: boolean } = {}) {
  const raw = await RawIntroConnection.open(server.url, options);
  await raw.authenticate(key.privateKey);
  await raw.next("welcome");
  return raw;
}

beforeAll(async () => {
  server = await startIntroServer({
    port: 0,
    stun: false,
    logger: silent,
    limits: {
      authTimeoutMs: 300,
      idleTimeoutMs: 600,
      pingIntervalMs: 200,
      messagesPerSecond: 50,
      messageBurst: 100,
      maxDeclaredPeers: 100,
    },
  });
  const aliceKey = newKey();
  const bobKey = newKey();
  alice = new IntroClient({
    url: server.url,
    keys: new LocalKeyAgreement(aliceKey.privateKey),
    logger: silent,
  });
  bob = new IntroClient({ url: server.url, keys: new LocalKeyAgreement(bobKey.privateKey), logger: silent });
  alice.setPeers([bobKey.publicKey]);
  bob.setPeers([aliceKey.publicKey]);
  const online = Promise.all([waitForEvent(alice, "peer-online"), waitForEvent(bob, "peer-online")]);
  alice.start();
  bob.start();
  await online;
});

afterAll(async () => {
  await alice?.stop();
  await bob?.stop();
  await server?.close();
});

describe("intro server against hostile input", () => {
  it("closes on malformed JSON with 4000", async () => {
    const raw = await RawIntroConnection.open(server.url);
    raw.send("{not json");
    expect(await raw.closed).toMatchObject({ code: CloseCode.malformedJson, reason: "malformed JSON" });
    await stillServing();
  });

  it("closes on a binary frame with 4001", async () => {
    const raw = await RawIntroConnection.open(server.url);
    raw.ws.send(Buffer.from([1, 2, 3]), { binary: true });
    expect((await raw.closed).code).toBe(CloseCode.binaryFrame);
    await stillServing();
  });

  it("closes on an oversized frame with 1009 without reading it", async () => {
    const raw = await RawIntroConnection.open(server.url);
    raw.send(JSON.stringify({ type: "ping", pad: "x".repeat(70_000) }));
    expect((await raw.closed).code).toBe(CloseCode.messageTooBig);
    await stillServing();
  });

  it("closes on an unknown type with 4003, on a bad shape with 4002", async () => {
    const unknown = await RawIntroConnection.open(server.url);
    unknown.send({ type: "subscribe-all" });
    expect(await unknown.closed).toMatchObject({ code: CloseCode.unknownType });
    expect((await unknown.closed).reason).toContain("subscribe-all");

    for (const bad of [[1, 2], "just a string", { type: 7 }, { type: "auth", version: 1 }, null]) {
      const raw = await RawIntroConnection.open(server.url);
      raw.send(JSON.stringify(bad));
      expect((await raw.closed).code).toBe(CloseCode.invalidMessage);
    }
    const authed = await authenticated();
    authed.send({ type: "send", to: bob.publicKey, envelope: { n: "AAAA", c: "" } });
    const closed = await authed.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/^invalid send: envelope\.n/);
    await stillServing();
  });

  it("closes a message out of order with 4004 and a wrong version with 4012", async () => {
    const early = await RawIntroConnection.open(server.url);
    early.send({ type: "peers", op: "replace", peers: [] });
    expect(await early.closed).toMatchObject({
      code: CloseCode.unexpectedMessage,
      reason: "peers before auth",
    });

    const twice = await authenticated();
    twice.send({
      type: "auth",
      version: 1,
      publicKey: alice.publicKey,
      proof: Buffer.alloc(32).toString("base64"),
    });
    expect((await twice.closed).code).toBe(CloseCode.unexpectedMessage);

    const future = await RawIntroConnection.open(server.url);
    await future.next("challenge");
    future.send({
      type: "auth",
      version: 2,
      publicKey: alice.publicKey,
      proof: Buffer.alloc(32).toString("base64"),
    });
    expect((await future.closed).code).toBe(CloseCode.unsupportedVersion);
    expect(alice.connected).toBe(true);
    await stillServing();
  });

  it("closes a connection that never authenticates with 4006", async () => {
    const raw = await RawIntroConnection.open(server.url);
    // The code and reason say which timer closed it (authTimeoutMs, 300 ms here).
    expect(await raw.closed).toMatchObject({
      code: CloseCode.authTimeout,
      reason: "authentication timed out",
    });
    await stillServing();
  });

  it("closes an authenticated connection that stops answering pings with 4007", async () => {
    const raw = await authenticated(newKey(), { autoPong: false });
    expect((await raw.closed).code).toBe(CloseCode.idleTimeout);
    await stillServing();
  });

  it("closes a flood with 4008", async () => {
    const raw = await authenticated();
    for (let i = 0; i < 500; i++) raw.send({ type: "ping" });
    expect(await raw.closed).toMatchObject({ code: CloseCode.rateLimited, reason: "rate limit exceeded" });
    await stillServing();
  });

  it("closes a declaration beyond the peer limit with 4009", async () => {
    const raw = await authenticated();
    const peers = Array.from({ length: 101 }, () => newKey().publicKey);
    raw.send({ type: "peers", op: "replace", peers });
    expect((await raw.closed).code).toBe(CloseCode.tooManyPeers);
    await stillServing();
  });

  it("survives all of it at once", async () => {
    const attacks = await Promise.all(
      Array.from({ length: 30 }, async (_, i) => {
        const raw = await RawIntroConnection.open(server.url);
        const frames: Array<() => void> = [
          () => raw.send("]]]"),
          () => raw.ws.send(Buffer.alloc(10), { binary: true }),
          () => raw.send({ type: "nope" }),
          () => raw.send({ type: "send" }),
          () => raw.send("x".repeat(100_000)),
          () => raw.send("\u0000"),
        ];
        frames[i % frames.length]!();
        return raw.closed;
      }),
    );
    for (const closed of attacks) expect(closed.code).toBeGreaterThanOrEqual(1009);
    await stillServing();
    expect(server.stats().authenticated).toBe(2);
  });

  it("still answers a well-behaved raw client and plain HTTP", async () => {
    const raw = await authenticated();
    raw.send({ type: "ping" });
    await raw.next("pong");
    raw.close();
    const response = await fetch(server.url.replace("ws:", "http:"));
    expect(response.status).toBe(426);
    await stillServing();
  });
});
