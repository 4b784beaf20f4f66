// Red-team attack 2, no resource caps: 1,500 unauthenticated connections from one address were all
// accepted, one connection could declare 16,000 keys, and a key with bit 255 set was a second
// identity of the same private key. Every cap refuses with a clear code; everyone else is served.
import { randomBytes } from "node:crypto";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  DEFAULT_LIMITS,
  type IntroServer,
  type IntroServerOptions,
  startIntroServer,
} from "../../intro-server/server.js";
import { createLogger } from "../../src/log.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { publicKeyOf } from "../../src/signalling/signalling-crypto.js";
import { newKey, RawIntroConnection, sleep, type TestKey } from "./intro-support.js";

const silent = createLogger("test", "silent");
let server: IntroServer | undefined;
const opened: RawIntroConnection[] = [];

afterEach(async () => {
  for (const raw of opened.splice(0)) raw.close();
  await server?.close();
  server = undefined;
});

async function start(options: IntroServerOptions = {}) {
  server = await startIntroServer({ port: 0, stun: false, logger: silent, ...options });
  return server;
}

async function authenticated(url: string, key: TestKey = newKey()) {
  const raw = await RawIntroConnection.open(url);
  opened.push(raw);
  await raw.authenticate(key.privateKey);
  await raw.next("welcome");
  return raw;
}

/** Opens a WebSocket; resolves with it, or with the HTTP status that refused it. */
async function tryOpen(url: string): Promise<RawIntroConnection | { refused: string }> {
  try {
    const raw = await RawIntroConnection.open(url);
    opened.push(raw);
    return raw;
  } catch (error) {
    return { refused: (error as Error).message };
  }
}

/** `count` distinct canonical keys (random bytes with bit 255 clear: declaring needs no private key). */
const keys = (count: number) =>
  Array.from({ length: count }, () => {
    const bytes = randomBytes(32);
    bytes[31]! &= 0x7f;
    return bytes.toString("base64");
  });

/** The same X25519 public key with bit 255 set: x25519 ignores that bit, so it proves just as well. */
function withBit255(publicKey: string): string {
  const bytes = Buffer.from(publicKey, "base64");
  bytes[31]! |= 0x80;
  return bytes.toString("base64");
}

async function stillServes(url: string): Promise<void> {
  const raw = await authenticated(url);
  raw.send({ type: "ping" });
  await raw.next("pong");
}

describe("intro server caps", () => {
  it("refuses unauthenticated connections from one address beyond the cap (1,500 tried)", async () => {
    const { url } = await start();
    const results = await Promise.all(Array.from({ length: 1_500 }, () => tryOpen(url)));
    const accepted = results.filter((result) => result instanceof RawIntroConnection);
    const refused = results.filter((result) => !(result instanceof RawIntroConnection));
    expect(accepted.length).toBeLessThanOrEqual(DEFAULT_LIMITS.maxPreAuthPerAddress);
    expect(accepted.length).toBeGreaterThan(0);
    expect(refused.length).toBe(1_500 - accepted.length);
    expect((refused[0] as { refused: string }).refused).toMatch(/503/);
    for (const raw of accepted) (raw as RawIntroConnection).close();
    await expect.poll(() => server!.stats().unauthenticated, { timeout: 10_000 }).toBe(0);
    await stillServes(url);
  }, 60_000);

  it("caps unauthenticated connections in total", async () => {
    const { url } = await start({ limits: { maxPreAuthPerAddress: 100, maxPreAuthTotal: 5 } });
    const results = await Promise.all(Array.from({ length: 20 }, () => tryOpen(url)));
    expect(results.filter((result) => result instanceof RawIntroConnection)).toHaveLength(5);
  });

  it("counts a connection as unauthenticated only until it authenticates", async () => {
    const { url } = await start({ limits: { maxPreAuthPerAddress: 2 } });
    for (let i = 0; i < 6; i++) await authenticated(url);
  });

  it("closes authenticated connections beyond the per-address cap with 4014", async () => {
    const { url } = await start({ limits: { maxAuthenticatedPerAddress: 3 } });
    for (let i = 0; i < 3; i++) await authenticated(url);
    const raw = await RawIntroConnection.open(url);
    opened.push(raw);
    await raw.authenticate(newKey().privateKey);
    const closed = await raw.closed;
    expect(closed.code).toBe(CloseCode.tooManyConnections);
    expect(closed.reason).toMatch(/address/);
    expect(raw.received).toEqual([]); // nothing after the challenge
    // A slot freed is a slot to take.
    opened[0]!.close();
    await expect.poll(() => server!.stats().authenticated, { timeout: 5_000 }).toBe(2);
    await authenticated(url);
  });

  it("closes authenticated connections beyond the total cap with 4014", async () => {
    const { url } = await start({ limits: { maxAuthenticatedTotal: 2 } });
    await authenticated(url);
    await authenticated(url);
    const raw = await RawIntroConnection.open(url);
    opened.push(raw);
    await raw.authenticate(newKey().privateKey);
    const closed = await raw.closed;
    expect(closed.code).toBe(CloseCode.tooManyConnections);
    expect(closed.reason).toMatch(/server/);
  });

  it("a key reconnecting at the per-address cap replaces its old connection", async () => {
    const { url } = await start({ limits: { maxAuthenticatedPerAddress: 1 } });
    const key = newKey();
    const first = await authenticated(url, key);
    await authenticated(url, key);
    expect((await first.closed).code).toBe(CloseCode.replaced);
  });

  it("refuses a connection declaring 16,000 keys with 4009 (1,024 per key by default)", async () => {
    const { url } = await start();
    expect(DEFAULT_LIMITS.maxDeclaredPeers).toBe(1_024);
    const raw = await authenticated(url);
    const declared = keys(16_000);
    for (let i = 0; i < declared.length; i += 1_000) {
      raw.send({ type: "peers", op: i === 0 ? "replace" : "add", peers: declared.slice(i, i + 1_000) });
    }
    expect((await raw.closed).code).toBe(CloseCode.tooManyPeers);
    await stillServes(url);
  });

  it("caps declared keys per address across connections", async () => {
    const { url } = await start({ limits: { maxDeclaredPeers: 100, maxDeclaredPeersPerAddress: 250 } });
    const first = await authenticated(url);
    const second = await authenticated(url);
    const third = await authenticated(url);
    first.send({ type: "peers", op: "replace", peers: keys(100) });
    second.send({ type: "peers", op: "replace", peers: keys(100) });
    for (const raw of [first, second]) {
      raw.send({ type: "ping" });
      await raw.next("pong");
    }
    third.send({ type: "peers", op: "replace", peers: keys(100) });
    const closed = await third.closed;
    expect(closed.code).toBe(CloseCode.tooManyPeers);
    expect(closed.reason).toMatch(/address/);
    // Shrinking a declaration frees its share.
    first.send({ type: "peers", op: "replace", peers: keys(10) });
    const fourth = await authenticated(url);
    fourth.send({ type: "peers", op: "replace", peers: keys(100) });
    fourth.send({ type: "ping" });
    await fourth.next("pong");
  });

  it("refuses to authenticate a public key with bit 255 set (a second encoding of the same key)", async () => {
    const { url } = await start();
    const key = newKey();
    const raw = await RawIntroConnection.open(url);
    opened.push(raw);
    await raw.authenticate(key.privateKey, withBit255(publicKeyOf(key.privateKey)));
    const closed = await raw.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/canonical/);
    expect(raw.received).toEqual([]); // nothing after the challenge
  });

  it("refuses to declare a public key with bit 255 set", async () => {
    const { url } = await start();
    const raw = await authenticated(url);
    raw.send({ type: "peers", op: "replace", peers: [withBit255(newKey().publicKey)] });
    const closed = await raw.closed;
    expect(closed.code).toBe(CloseCode.invalidMessage);
    expect(closed.reason).toMatch(/canonical/);
  });
});

describe("intro server HTTP limits", () => {
  function rawHttp(port: number, request: string): { socket: Socket; response: Promise<string> } {
    const socket = connect(port, "127.0.0.1");
    socket.write(request);
    const response = new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (chunk) => {
        text += chunk.toString();
      });
      socket.on("error", () => {});
      socket.on("close", () => resolve(text));
    });
    return { socket, response };
  }

  it("drops a connection that never finishes its request headers", async () => {
    const { port } = await start({ limits: { headersTimeoutMs: 1_000 } });
    const started = Date.now();
    const { response } = rawHttp(port, "GET / HTTP/1.1\r\nHost: x\r\n");
    await response;
    expect(Date.now() - started).toBeLessThan(8_000);
  }, 15_000);

  it("the HTTP timeouts do not touch an upgraded WebSocket", async () => {
    const { url } = await start({ limits: { headersTimeoutMs: 300, requestTimeoutMs: 500 } });
    const raw = await authenticated(url);
    await sleep(2_500);
    raw.send({ type: "ping" });
    await raw.next("pong");
  });

  it("answers 431 to request headers over the size cap", async () => {
    const { port } = await start();
    const { response } = rawHttp(
      port,
      `GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ${"a".repeat(12_000)}\r\nConnection: close\r\n\r\n`,
    );
    expect(await response).toMatch(/^HTTP\/1\.1 431/);
  });
});
