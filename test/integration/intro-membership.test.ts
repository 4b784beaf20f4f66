// Red-team attack 1, an open TURN relay: any fresh key authenticated and got TURN credentials, and
// `turn-refresh` renewed them forever. With an allowed-keys list, a key not on it learns nothing.
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { MAX_TURN_TTL_SECONDS } from "../../intro-server/turn-credentials.js";
import { createLogger } from "../../src/log.js";
import { CloseCode, type ServerMessage } from "../../src/signalling/protocol.js";
import { newKey, RawIntroConnection, sleep, type TestKey } from "./intro-support.js";

const silent = createLogger("test", "silent");
const turn = { urls: ["turn:127.0.0.1:3478"], secret: "membership-test-secret", ttlSeconds: 600 };
let server: IntroServer | undefined;

afterEach(async () => {
  await server?.close();
  server = undefined;
});

async function start(allowed: TestKey[] | undefined, ttlSeconds = turn.ttlSeconds) {
  server = await startIntroServer({
    port: 0,
    stun: false,
    logger: silent,
    turn: { ...turn, ttlSeconds },
    allowedKeys: allowed ? new Set(allowed.map((key) => key.publicKey)) : undefined,
  });
  return server;
}

async function member(url: string, key: TestKey, peers: TestKey[]) {
  const raw = await RawIntroConnection.open(url);
  await raw.authenticate(key.privateKey);
  const welcome = await raw.next("welcome");
  raw.send({ type: "peers", op: "replace", peers: peers.map((peer) => peer.publicKey) });
  return { raw, welcome };
}

const types = (messages: ServerMessage[]) => messages.map((message) => message.type);

describe("intro server membership (--allowed-keys)", () => {
  it("closes a key that is not listed right after authentication, before any welcome or TURN credentials", async () => {
    const alice = newKey();
    const mallory = newKey();
    const { url } = await start([alice]);
    const { raw: aliceRaw } = await member(url, alice, [mallory]);

    const raw = await RawIntroConnection.open(url);
    await raw.authenticate(mallory.privateKey);
    // Even if it manages to send more before the close lands, it gets nothing for it.
    raw.send({ type: "peers", op: "replace", peers: [alice.publicKey] });
    raw.send({ type: "turn-refresh" });
    const closed = await raw.closed;
    expect(closed.code).toBe(CloseCode.notMember);
    expect(closed.reason).toMatch(/not .*allowed/);
    expect(types(raw.received)).toEqual([]); // nothing after the challenge

    // Alice, who declared Mallory, never hears of her.
    aliceRaw.send({ type: "ping" });
    await aliceRaw.next("pong");
    expect(aliceRaw.received.filter((message) => message.type === "presence")).toEqual([]);
    aliceRaw.close();
  });

  it("serves listed keys: presence, envelopes and TURN credentials", async () => {
    const alice = newKey();
    const bob = newKey();
    const { url } = await start([alice, bob]);
    const a = await member(url, alice, [bob]);
    const b = await member(url, bob, [alice]);
    expect(a.welcome.turn?.username).toMatch(/^\d+:[0-9a-f]{16}$/);
    expect(b.welcome.turn).toBeDefined();
    expect(await a.raw.next("presence")).toMatchObject({ peer: bob.publicKey, online: true });
    a.raw.close();
    b.raw.close();
  });

  it("a key removed from the list is closed at once, its peers see it go offline, and it gets no more credentials", async () => {
    const alice = newKey();
    const bob = newKey();
    const introServer = await start([alice, bob]);
    const a = await member(introServer.url, alice, [bob]);
    const b = await member(introServer.url, bob, [alice]);
    expect(await a.raw.next("presence")).toMatchObject({ peer: bob.publicKey, online: true });

    introServer.setAllowedKeys(new Set([alice.publicKey]));
    // A refresh racing the removal is not answered either.
    b.raw.send({ type: "turn-refresh" });
    const closed = await b.raw.closed;
    expect(closed.code).toBe(CloseCode.notMember);
    expect(types(b.raw.received)).not.toContain("turn-credentials");
    expect(await a.raw.next("presence")).toMatchObject({ peer: bob.publicKey, online: false });

    // Coming back does not help: no welcome, no credentials.
    const again = await RawIntroConnection.open(introServer.url);
    await again.authenticate(bob.privateKey);
    expect((await again.closed).code).toBe(CloseCode.notMember);
    expect(types(again.received)).toEqual([]);

    // Added back: served again, without a restart.
    introServer.setAllowedKeys(new Set([alice.publicKey, bob.publicKey]));
    const back = await member(introServer.url, bob, [alice]);
    expect(back.welcome.turn).toBeDefined();
    expect(await a.raw.next("presence")).toMatchObject({ peer: bob.publicKey, online: true });
    a.raw.close();
    back.raw.close();
  });

  it("without a list the server is public (every key is served)", async () => {
    const { url } = await start(undefined);
    const anyone = await member(url, newKey(), []);
    expect(anyone.welcome.turn).toBeDefined();
    anyone.raw.close();
  });
});

describe("TURN credentials are bounded", () => {
  it("caps a credential's lifetime however long the configured TTL", async () => {
    const { url } = await start(undefined, 30 * 86_400);
    const { raw, welcome } = await member(url, newKey(), []);
    const nowSeconds = Math.floor(Date.now() / 1000);
    expect(welcome.turn!.ttlSeconds).toBeLessThanOrEqual(MAX_TURN_TTL_SECONDS);
    const expiry = Number(welcome.turn!.username.split(":")[0]);
    expect(expiry).toBeLessThanOrEqual(nowSeconds + MAX_TURN_TTL_SECONDS + 1);
    raw.close();
  });

  it("does not extend a credential that is not yet half spent, however often refresh is asked", async () => {
    const { url } = await start(undefined);
    const { raw, welcome } = await member(url, newKey(), []);
    await sleep(1_100); // a new expiry second: a fresh credential would have another username
    raw.send({ type: "turn-refresh" });
    const refreshed = await raw.next("turn-credentials");
    expect(refreshed.turn.username).toBe(welcome.turn!.username);
    expect(refreshed.turn.credential).toBe(welcome.turn!.credential);
    raw.close();
  });

  it("renews a credential once half of its lifetime is spent", async () => {
    const { url } = await start(undefined, 2);
    const { raw, welcome } = await member(url, newKey(), []);
    await sleep(1_100);
    raw.send({ type: "turn-refresh" });
    const refreshed = await raw.next("turn-credentials");
    expect(Number(refreshed.turn.username.split(":")[0])).toBeGreaterThan(
      Number(welcome.turn!.username.split(":")[0]),
    );
    raw.close();
  });
});
