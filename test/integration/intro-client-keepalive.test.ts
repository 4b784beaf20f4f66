// The client's own keepalive: it pings the server every keepaliveSeconds/2 once online, a pong counts as
// hearing from the server, and total silence for 2.5 intervals makes it reconnect.
// A fake server is used because the real one has no hook to see pings and always pings by itself,
// which would keep the client alive whatever the client does. The keepalive runs on fake interval
// timers and a fake clock, advanced tick by tick; sockets and reconnect timers are real. Between ticks
// the test waits until the server got that tick's ping: by then the client has also read every pong
// sent before (one process, one event loop: the pong was in its socket buffer first).
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { WebSocketServer } from "ws";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import {
  type ChallengeMessage,
  clientMessageSchemas,
  PROTOCOL_VERSION,
  type WelcomeMessage,
} from "../../src/signalling/protocol.js";
import { generateX25519KeyPair } from "../../src/signalling/signalling-crypto.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const KEEPALIVE_MS = 200;
/** The client pings (and checks for silence) every half keepalive. */
const TICK_MS = KEEPALIVE_MS / 2;

interface FakeConnection {
  /** Pings received from the client. */
  pings: number;
  /** Pings received before the welcome went out. */
  pingsBeforeWelcome: number;
  /** The client sent its auth: the welcome can go out (see `welcome`). */
  authenticated: boolean;
  welcomed: boolean;
  closed: boolean;
}

interface FakeServer {
  url: string;
  connections: FakeConnection[];
  /** Sends the welcome on every connection that authenticated and has none yet. */
  welcome(): void;
  close(): Promise<void>;
}

/**
 * Speaks just enough of the protocol to bring a client online (it does not check the proof), then says
 * nothing and never pings. `autoPong: false` also leaves the client's pings unanswered; `holdWelcome`
 * keeps the welcome until `welcome()` is called.
 */
async function startFakeServer(options: { autoPong: boolean; holdWelcome?: boolean }): Promise<FakeServer> {
  const wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: options.autoPong });
  await once(wss, "listening");
  const connections: FakeConnection[] = [];
  const pending: Array<() => void> = [];
  wss.on("connection", (ws) => {
    const connection: FakeConnection = {
      pings: 0,
      pingsBeforeWelcome: 0,
      authenticated: false,
      welcomed: false,
      closed: false,
    };
    connections.push(connection);
    ws.on("ping", () => {
      connection.pings++;
      if (!connection.welcomed) connection.pingsBeforeWelcome++;
    });
    ws.on("close", () => {
      connection.closed = true;
    });
    ws.on("message", (data) => {
      const auth = clientMessageSchemas.auth.safeParse(JSON.parse(data.toString()));
      if (!auth.success) return;
      connection.authenticated = true;
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
      const send = () => {
        connection.welcomed = true;
        ws.send(JSON.stringify(welcome));
      };
      if (options.holdWelcome) pending.push(send);
      else send();
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
    welcome: () => {
      for (const send of pending.splice(0)) send();
    },
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
    keys: new LocalKeyAgreement(newKey().privateKey),
    logger: silent,
    reconnect: { initialDelayMs: 50, maxDelayMs: 100 },
  });
}

/** Starts `client` against `server` and waits until it is online. */
async function online(c: IntroClient): Promise<void> {
  const connected = waitForEvent(c, "connected");
  c.start();
  await connected;
}

/** One keepalive tick; then waits until `connection` got its ping (the `expected`-th in all). */
async function tickAndPing(connection: FakeConnection, expected: number): Promise<void> {
  vi.advanceTimersByTime(TICK_MS);
  await waitFor(() => connection.pings >= expected, {
    what: `ping ${expected}`,
    timeoutMs: 5_000,
    intervalMs: 5,
  });
}

beforeEach(() => {
  // Only the keepalive's interval and the clock it reads: timeouts (reconnects, ws) stay real.
  vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
});

afterEach(async () => {
  vi.useRealTimers();
  await client?.stop();
  await server?.close();
  client = undefined;
  server = undefined;
});

describe("intro client keepalive", () => {
  it("pings the server every keepaliveSeconds/2 once online, not before", async () => {
    server = await startFakeServer({ autoPong: true, holdWelcome: true });
    client = newClient(server.url);
    const connected = waitForEvent(client, "connected");
    client.start();
    const connection = await waitFor(() => server?.connections[0]?.authenticated && server.connections[0], {
      what: "the client's auth",
    });
    // Four ticks' time before the welcome: a client that pinged before being online would ping now.
    vi.advanceTimersByTime(4 * TICK_MS);
    server.welcome();
    await connected;
    for (let i = 1; i <= 3; i++) await tickAndPing(connection, i);
    // Its close frame comes after every ping it sent: closed, the count is final.
    await client.stop();
    await waitFor(() => connection.closed, { what: "the client's close" });
    expect(connection.pingsBeforeWelcome).toBe(0);
    expect(connection.pings).toBe(3);
    expect(server.connections).toHaveLength(1);
  });

  it("reconnects after 2.5 keepalive intervals when the server goes silent", async () => {
    server = await startFakeServer({ autoPong: false });
    client = newClient(server.url);
    await online(client);
    const connection = server.connections[0]!;
    let disconnected: { code: number } | undefined;
    client.once("disconnected", (closed: { code: number }) => {
      disconnected = closed;
    });
    // 2.5 intervals (five ticks) of silence are tolerated: the client pings on each...
    for (let i = 1; i <= 5; i++) await tickAndPing(connection, i);
    expect(disconnected).toBeUndefined();
    // ...and at the sixth it gives up on the connection instead.
    const reconnected = waitForEvent(client, "connected", () => true, 5_000);
    vi.advanceTimersByTime(TICK_MS);
    await waitFor(() => disconnected, { what: "the client's disconnect" });
    expect(disconnected?.code).toBe(1006); // terminated, not closed by either side
    expect(connection.pings).toBe(5);
    await reconnected;
    expect(server.connections).toHaveLength(2);
  });

  it("stays connected on pongs alone, well past 2.5 intervals", async () => {
    // The server never pings nor speaks: only the automatic pongs to the client's pings are heard.
    server = await startFakeServer({ autoPong: true });
    client = newClient(server.url);
    await online(client);
    const connection = server.connections[0]!;
    let disconnects = 0;
    client.on("disconnected", () => disconnects++);
    // Seven keepalive intervals: a client deaf to pongs would give up at the sixth tick.
    for (let i = 1; i <= 14; i++) await tickAndPing(connection, i);

    expect(disconnects).toBe(0);
    expect(client.connected).toBe(true);
    expect(server.connections).toHaveLength(1);
    expect(connection.closed).toBe(false);
  });
});

describe("intro client check of life (a path went suspect)", () => {
  it("replaces a connection whose server does not answer a ping at once, long before the keepalive would", async () => {
    server = await startFakeServer({ autoPong: false });
    client = newClient(server.url);
    await online(client);
    const reconnected = waitForEvent(client, "connected", () => true, 5_000);
    // No keepalive tick is advanced: only the check can see the silence.
    const verdict = client.checkAlive(50, "a test");
    await reconnected;
    expect(await verdict).toBe(false);
    expect(server.connections).toHaveLength(2);
    expect(server.connections[0]?.closed).toBe(true);
    expect(client.connectionStatus.lastError).toMatch(/no answer to a ping/);
  });

  it("keeps a connection whose server answers", async () => {
    server = await startFakeServer({ autoPong: true });
    client = newClient(server.url);
    await online(client);
    const connection = server.connections[0]!;
    const verdict = client.checkAlive(50, "a test");
    await waitFor(() => connection.pings >= 1, { what: "the check's ping", timeoutMs: 5_000, intervalMs: 5 });
    // A second check, sent after the first one's time is up, is answered on the same connection.
    await new Promise((resolve) => setTimeout(resolve, 100)); // past the first check's 50 ms
    const second = client.checkAlive(50, "a test");
    await waitFor(() => connection.pings >= 2, { what: "the second ping", timeoutMs: 5_000, intervalMs: 5 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect([await verdict, await second]).toEqual([true, true]);
    expect(server.connections).toHaveLength(1);
    expect(connection.closed).toBe(false);
    expect(client.connected).toBe(true);
  });
});
