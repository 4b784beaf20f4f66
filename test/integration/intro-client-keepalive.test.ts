// The client's own keepalive: it pings the server every keepaliveSeconds/2 once online, a pong counts as
// hearing from the server, and total silence for 2.5 intervals makes it reconnect.
// A fake server is used because the real one has no hook to see pings and always pings by itself,
// which would keep the client alive whatever the client does.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer } from "ws";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import {
  type ChallengeMessage,
  clientMessageSchemas,
  PROTOCOL_VERSION,
  type WelcomeMessage,
} from "../../src/signalling/protocol.js";
import { generateX25519KeyPair } from "../../src/signalling/signalling-crypto.js";
import { eventually, newKey, sleep, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const KEEPALIVE_MS = 200;

interface FakeConnection {
  /** When the server received each ping from the client. */
  pings: number[];
  /** When the welcome went out: the client is online from then on. */
  welcomeAt?: number;
  /** Pings received before the welcome. */
  pingsBeforeWelcome: number;
  closedAt?: number;
}

interface FakeServer {
  url: string;
  connections: FakeConnection[];
  close(): Promise<void>;
}

/**
 * Speaks just enough of the protocol to bring a client online (it does not check the proof), then says
 * nothing and never pings. `autoPong: false` also leaves the client's pings unanswered.
 */
async function startFakeServer(options: { autoPong: boolean; welcomeDelayMs?: number }): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: options.autoPong });
  await once(wss, "listening");
  const connections: FakeConnection[] = [];
  wss.on("connection", (ws) => {
    const connection: FakeConnection = { pings: [], pingsBeforeWelcome: 0 };
    connections.push(connection);
    ws.on("ping", () => {
      connection.pings.push(Date.now());
      if (connection.welcomeAt === undefined) connection.pingsBeforeWelcome++;
    });
    ws.on("close", () => {
      connection.closedAt = Date.now();
    });
    ws.on("message", (data) => {
      const auth = clientMessageSchemas.auth.safeParse(JSON.parse(data.toString()));
      if (!auth.success) return;
      const welcome = {
        type: "welcome",
        publicKey: auth.data.publicKey,
        keepaliveSeconds: KEEPALIVE_MS / 1000,
        stunUrls: [],
        limits: {
          maxMessageBytes: 65_536,
          maxPeersPerMessage: 100,
          maxDeclaredPeers: 100,
          messagesPerSecond: 50,
          messageBurst: 100,
          bytesPerSecond: 1_000_000,
          byteBurst: 1_000_000,
        },
      } satisfies WelcomeMessage;
      setTimeout(() => {
        connection.welcomeAt = Date.now();
        ws.send(JSON.stringify(welcome));
      }, options.welcomeDelayMs ?? 0);
    });
    ws.send(
      JSON.stringify({
        type: "challenge",
        version: PROTOCOL_VERSION,
        serverKey: generateX25519KeyPair().publicKey.toString("base64"),
        nonce: Buffer.alloc(32, 7).toString("base64"),
      } satisfies ChallengeMessage),
    );
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}`,
    connections,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

let server: FakeServer | undefined;
let client: IntroClient | undefined;

function newClient(url: string): IntroClient {
  return new IntroClient({
    url,
    privateKey: newKey().privateKey,
    logger: silent,
    reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
  });
}

afterEach(async () => {
  await client?.stop();
  await server?.close();
  client = undefined;
  server = undefined;
});

describe("intro client keepalive", () => {
  it("pings the server every keepaliveSeconds/2 once online, not before", async () => {
    // The welcome is held back longer than a ping interval, so pinging before online would show.
    server = await startFakeServer({ autoPong: true, welcomeDelayMs: KEEPALIVE_MS * 1.5 });
    client = newClient(server.url);
    const connected = waitForEvent(client, "connected");
    client.start();
    await connected;
    const connection = server.connections[0]!;
    await eventually(() => connection.pings.length >= 2, KEEPALIVE_MS * 3, "two pings");
    await sleep(KEEPALIVE_MS * 2);

    expect(connection.pingsBeforeWelcome).toBe(0);
    const { pings } = connection;
    // No faster than every keepaliveMs/2 on average (timers fire late, never early; allow some slack).
    const meanGap = (pings.at(-1)! - pings[0]!) / (pings.length - 1);
    expect(meanGap).toBeGreaterThanOrEqual((KEEPALIVE_MS / 2) * 0.8);
    expect(meanGap).toBeLessThan(KEEPALIVE_MS);
    expect(server.connections).toHaveLength(1);
  });

  it("reconnects after about 2.5 keepalive intervals when the server goes silent", async () => {
    server = await startFakeServer({ autoPong: false });
    client = newClient(server.url);
    const connected = waitForEvent(client, "connected");
    client.start();
    await connected;
    const onlineAt = Date.now();
    const [closed] = await waitForEvent<[{ code: number }]>(client, "disconnected", () => true, 3_000);
    const silentFor = Date.now() - onlineAt;

    expect(closed.code).toBe(1006); // terminated, not closed by either side
    expect(silentFor).toBeGreaterThanOrEqual(KEEPALIVE_MS * 2.5);
    expect(silentFor).toBeLessThan(KEEPALIVE_MS * 2.5 + 1_000);
    await waitForEvent(client, "connected", () => true, 3_000);
    expect(server.connections).toHaveLength(2);
  });

  it("stays connected on pongs alone, well past 2.5 intervals", async () => {
    // The server never pings nor speaks: only the automatic pongs to the client's pings are heard.
    server = await startFakeServer({ autoPong: true });
    client = newClient(server.url);
    const connected = waitForEvent(client, "connected");
    client.start();
    await connected;
    let disconnects = 0;
    client.on("disconnected", () => disconnects++);
    await sleep(KEEPALIVE_MS * 7);

    expect(disconnects).toBe(0);
    expect(client.connected).toBe(true);
    expect(server.connections).toHaveLength(1);
    expect(server.connections[0]!.closedAt).toBeUndefined();
    expect(server.connections[0]!.pings.length).toBeGreaterThanOrEqual(5);
  });
});
