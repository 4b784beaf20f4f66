// The STUN responder against werift-ice's gatherer, and the issued TURN credentials against a real
// coturn (Debian `turnserver`, use-auth-secret) on loopback.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Connection,
  classes,
  createTurnClient,
  Message,
  makeIntegrityKey,
  methods,
  parseMessage,
} from "werift-ice";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { issueTurnCredentials } from "../../intro-server/turn-credentials.js";
import { IntroClient, type ServerInfo } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { newKey, sleep, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");

function hostPort(url: string): [string, number] {
  const match = /^(?:stun|turn):([^:?]+):(\d+)/.exec(url);
  if (!match) throw new Error(`cannot parse ${url}`);
  return [match[1]!, Number(match[2])];
}

/** True if nobody holds UDP 127.0.0.1:port (coturn uses SO_REUSEPORT, so a plain bind detects it). */
async function udpPortFree(port: number): Promise<boolean> {
  const socket = createSocket("udp4");
  return new Promise((resolve) => {
    socket.once("error", () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, "127.0.0.1", () => socket.close(() => resolve(true)));
  });
}

/** A random block of `count` consecutive free UDP ports in [low, high). */
async function freePortBlock(count: number, low: number, high: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = low + Math.floor(Math.random() * (high - low - count));
    let free = true;
    for (let port = base; port < base + count && free; port++) free = await udpPortFree(port);
    if (free) return base;
  }
  throw new Error("no free UDP port block");
}

async function stunBindingAnswered(port: number): Promise<boolean> {
  const socket = createSocket("udp4");
  const request = new Message(methods.BINDING, classes.REQUEST);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      socket.close();
      resolve(false);
    }, 200);
    socket.on("message", (data) => {
      const response = parseMessage(data);
      if (response?.transactionId.equals(request.transactionId)) {
        clearTimeout(timer);
        socket.close();
        resolve(true);
      }
    });
    socket.send(request.bytes, port, "127.0.0.1");
  });
}

type AllocateOutcome =
  | { outcome: "allocated" }
  | { outcome: "refused"; code: number }
  | { outcome: "no answer" };

/**
 * One TURN Allocate by hand (RFC 8656 long-term credentials): a first request for the realm and
 * nonce, then the authenticated one. (werift's client does not surface the second 401 and waits
 * for its retransmission timeout instead, which is why refusals are checked by hand.)
 */
async function allocateOnce(
  port: number,
  username: string,
  password: string,
  timeoutMs = 1_500,
): Promise<AllocateOutcome> {
  const socket = createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const responses: Message[] = [];
  let wake: (() => void) | undefined;
  socket.on("message", (data) => {
    const message = parseMessage(data);
    if (message) responses.push(message);
    wake?.();
  });
  const exchange = async (request: Message): Promise<Message | undefined> => {
    socket.send(request.bytes, port, "127.0.0.1");
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const answer = responses.find((message) => message.transactionId.equals(request.transactionId));
      if (answer) return answer;
      if (Date.now() >= deadline) return undefined;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 50);
      });
    }
  };
  const request = () =>
    new Message(methods.ALLOCATE, classes.REQUEST)
      .setAttribute("LIFETIME", 60)
      .setAttribute("REQUESTED-TRANSPORT", 0x11000000);
  try {
    const challenge = await exchange(request());
    const realm = challenge?.getAttributeValue("REALM") as string | undefined;
    const nonce = challenge?.getAttributeValue("NONCE") as Buffer | undefined;
    if (!realm || !nonce) throw new Error("coturn sent no realm/nonce challenge");
    const authenticated = request()
      .setAttribute("USERNAME", username)
      .setAttribute("REALM", realm)
      .setAttribute("NONCE", nonce)
      .addMessageIntegrity(makeIntegrityKey(username, realm, password))
      .addFingerprint();
    const answer = await exchange(authenticated);
    if (!answer) return { outcome: "no answer" };
    if (answer.messageClass === classes.RESPONSE) return { outcome: "allocated" };
    return { outcome: "refused", code: (answer.getAttributeValue("ERROR-CODE") as [number, string])[0] };
  } finally {
    socket.close();
  }
}

interface Coturn {
  process: ChildProcess;
  port: number;
  minPort: number;
  maxPort: number;
  secret: string;
  stop(): Promise<void>;
}

async function startCoturn(dir: string): Promise<Coturn> {
  const port = await freePortBlock(1, 20_000, 30_000);
  const minPort = await freePortBlock(16, 40_000, 50_000);
  const maxPort = minPort + 15;
  const secret = randomBytes(24).toString("hex");
  const config = join(dir, "turnserver.conf");
  writeFileSync(
    config,
    [
      "listening-ip=127.0.0.1",
      "relay-ip=127.0.0.1",
      `listening-port=${port}`,
      `min-port=${minPort}`,
      `max-port=${maxPort}`,
      "use-auth-secret",
      `static-auth-secret=${secret}`,
      "realm=tunnelbore.test",
      "fingerprint",
      "no-tls",
      "no-dtls",
      "no-tcp-relay",
      "allow-loopback-peers", // the test's peer socket is on loopback too
      "no-multicast-peers",
      "simple-log",
      `log-file=${join(dir, "turnserver.log")}`,
      `pidfile=${join(dir, "turnserver.pid")}`,
      `userdb=${join(dir, "turndb")}`,
      "",
    ].join("\n"),
  );
  const child = spawn("turnserver", ["-c", config, "--no-cli"], { stdio: "ignore" });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const coturn: Coturn = {
    process: child,
    port,
    minPort,
    maxPort,
    secret,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGTERM");
      await Promise.race([exited, sleep(2_000)]);
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, "SIGKILL");
      await exited;
    },
  };
  for (let i = 0; i < 50; i++) {
    if (child.exitCode !== null) throw new Error(`turnserver exited with ${child.exitCode}`);
    if (await stunBindingAnswered(port)) return coturn;
  }
  await coturn.stop();
  throw new Error("turnserver did not answer STUN within 10 s");
}

let dir: string;
let coturn: Coturn;
let server: IntroServer;
let intro: IntroClient;
let serverInfo: ServerInfo;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tbt-intro-turn-"));
  coturn = await startCoturn(dir);
  server = await startIntroServer({
    port: 0,
    stun: { port: 0 },
    turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=udp`], secret: coturn.secret, ttlSeconds: 600 },
    logger: silent,
  });
  intro = new IntroClient({
    url: server.url,
    keys: new LocalKeyAgreement(newKey().privateKey),
    logger: silent,
  });
  const connected = waitForEvent<[ServerInfo]>(intro, "connected");
  intro.start();
  [serverInfo] = await connected;
});

afterAll(async () => {
  await intro?.stop();
  await server?.close();
  await coturn?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("built-in STUN responder", () => {
  it("is announced to clients and gives werift-ice a server-reflexive candidate", async () => {
    // The primary port first (werift gathers with it), then the alternate (NAT mapping behaviour).
    expect(server.stunAltPort).toBeDefined();
    expect(serverInfo.stunUrls).toEqual([
      `stun:127.0.0.1:${server.stunPort}`,
      `stun:127.0.0.1:${server.stunAltPort}`,
    ]);
    const agent = new Connection(true, { stunServer: hostPort(serverInfo.stunUrls[0]!), useIpv6: false });
    try {
      await agent.gatherCandidates();
      const reflexive = agent.localCandidates.filter((candidate) => candidate.type === "srflx");
      expect(reflexive.length).toBeGreaterThan(0);
      // On loopback the mapped address is the agent's own socket, seen from 127.0.0.1.
      expect(reflexive[0]!.host).toBe("127.0.0.1");
      expect(reflexive[0]!.port).toBe(reflexive[0]!.relatedPort);
    } finally {
      await agent.close();
    }
  });
});

describe("TURN credentials", () => {
  it("are accepted by coturn (use-auth-secret), which allocates a relay that carries data", async () => {
    const turn = serverInfo.turn!;
    expect(turn.urls).toEqual([`turn:127.0.0.1:${coturn.port}?transport=udp`]);
    expect(turn.ttlSeconds).toBe(600);
    const client = await createTurnClient({
      address: hostPort(turn.urls[0]!),
      username: turn.username,
      password: turn.credential,
    });
    let peer: Socket | undefined;
    try {
      const [relayHost, relayPort] = client.relayedAddress;
      expect(relayHost).toBe("127.0.0.1");
      expect(relayPort).toBeGreaterThanOrEqual(coturn.minPort);
      expect(relayPort).toBeLessThanOrEqual(coturn.maxPort);

      peer = createSocket("udp4");
      await new Promise<void>((resolve) => peer!.bind(0, "127.0.0.1", resolve));
      const arrived = new Promise<[Buffer, number]>((resolve) =>
        peer!.once("message", (data, from) => resolve([data, from.port])),
      );
      await client.sendData(Buffer.from("through the relay"), ["127.0.0.1", peer.address().port]);
      const [data, fromPort] = await arrived;
      expect(data.toString()).toBe("through the relay");
      expect(fromPort).toBe(relayPort);
    } finally {
      peer?.close();
      await client.close();
    }
  });

  it("signed with another secret, or expired, are refused by coturn", async () => {
    const key = newKey().publicKey;
    const urls = serverInfo.turn!.urls;
    const genuine = issueTurnCredentials({ urls, secret: coturn.secret, ttlSeconds: 600 }, key);
    const forged = issueTurnCredentials({ urls, secret: "not the secret", ttlSeconds: 600 }, key);
    const expired = issueTurnCredentials(
      { urls, secret: coturn.secret, ttlSeconds: 600 },
      key,
      Date.now() - 3_600_000,
    );
    const [withGenuine, withForged, withExpired] = await Promise.all(
      [genuine, forged, expired].map((credentials) =>
        allocateOnce(coturn.port, credentials.username, credentials.credential),
      ),
    );
    expect(withGenuine).toEqual({ outcome: "allocated" });
    expect(withForged).toEqual({ outcome: "refused", code: 401 });
    expect(withExpired).toEqual({ outcome: "refused", code: 401 });
  });

  it("are refreshed before they expire", async () => {
    const shortLived = await startIntroServer({
      port: 0,
      stun: false,
      turn: { urls: [`turn:127.0.0.1:${coturn.port}`], secret: coturn.secret, ttlSeconds: 2 },
      logger: silent,
    });
    const client = new IntroClient({
      url: shortLived.url,
      keys: new LocalKeyAgreement(newKey().privateKey),
      logger: silent,
    });
    try {
      const connected = waitForEvent<[ServerInfo]>(client, "connected");
      client.start();
      const [first] = await connected;
      // Asked for at 80% of the 2 s lifetime: a fresh expiry at least a second later.
      const [refreshed] = await waitForEvent<[ServerInfo]>(client, "server-info", () => true, 4_000);
      expect(refreshed.turn!.username).not.toBe(first.turn!.username);
      expect(client.serverInfo).toEqual(refreshed);
    } finally {
      await client.stop();
      await shortLived.close();
    }
  });
});
