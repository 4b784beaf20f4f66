import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { IntroOfflineError } from "../../src/intro-client/intro-errors.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { writeSelfSignedCertificate } from "../support/self-signed-certificate.js";
import {
  newKey,
  RawIntroConnection,
  runIntroServerCli,
  type SpawnedIntroServer,
  spawnIntroServerProcess,
  type TestKey,
  waitForEvent,
} from "./intro-support.js";

const silent = createLogger("test", "silent");
const servers: SpawnedIntroServer[] = [];
const clients: IntroClient[] = [];

async function spawnServer(args: string[]): Promise<SpawnedIntroServer> {
  const server = await spawnIntroServerProcess(args);
  servers.push(server);
  return server;
}

function client(url: string, key: TestKey, peers: string[], tls?: { ca: Buffer }): IntroClient {
  const intro = new IntroClient({
    url,
    keys: new LocalKeyAgreement(key.privateKey),
    logger: silent,
    reconnect: { initialDelayMs: 100, maxDelayMs: 1_000 },
    tls,
  });
  intro.setPeers(peers);
  clients.push(intro);
  return intro;
}

/** Two clients that declared each other, both seeing the other online. */
async function onlinePair(url: string, tls?: { ca: Buffer }) {
  const aliceKey = newKey();
  const bobKey = newKey();
  const alice = client(url, aliceKey, [bobKey.publicKey], tls);
  const bob = client(url, bobKey, [aliceKey.publicKey], tls);
  const online = Promise.all([waitForEvent(alice, "peer-online"), waitForEvent(bob, "peer-online")]);
  alice.start();
  bob.start();
  await online;
  return { alice, bob };
}

async function exchange(alice: IntroClient, bob: IntroClient, label: string): Promise<void> {
  const atBob = waitForEvent<[string, unknown]>(
    bob,
    "envelope",
    (_from, payload) => payload === `${label} a->b`,
  );
  const atAlice = waitForEvent<[string, unknown]>(
    alice,
    "envelope",
    (_from, payload) => payload === `${label} b->a`,
  );
  alice.send(bob.publicKey, `${label} a->b`);
  bob.send(alice.publicKey, `${label} b->a`);
  expect((await atBob)[0]).toBe(alice.publicKey);
  expect((await atAlice)[0]).toBe(bob.publicKey);
}

afterEach(async () => {
  for (const intro of clients.splice(0)) await intro.stop();
  for (const server of servers.splice(0)) await server.stop("SIGKILL");
});

describe("intro server process", () => {
  it("relays envelopes between two clients", async () => {
    const server = await spawnServer(["--listen", "127.0.0.1:0", "--no-stun"]);
    const { alice, bob } = await onlinePair(server.url);
    await exchange(alice, bob, "hello");
    // A burst in both directions arrives complete and in order.
    const got: unknown[] = [];
    bob.on("envelope", (_from, payload) => got.push(payload));
    for (let i = 0; i < 200; i++) alice.send(bob.publicKey, i);
    await waitForEvent(bob, "envelope", (_from, payload) => payload === 199);
    expect(got).toEqual(Array.from({ length: 200 }, (_, i) => i));
    // All the while under the syscall filter (src/syscall-filter.ts), on every thread.
    const pid = server.process.pid ?? -1;
    const modes = readdirSync(`/proc/${pid}/task`).map(
      (tid) => /^Seccomp:\s*(\d)/m.exec(readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8"))?.[1],
    );
    expect(modes.length).toBeGreaterThan(4);
    expect(modes.every((mode) => mode === "2")).toBe(true);
  });

  it("clients reconnect and presence comes back after the server is killed and restarted", async () => {
    const first = await spawnServer(["--listen", "127.0.0.1:0", "--no-stun"]);
    const { alice, bob } = await onlinePair(first.url);
    await exchange(alice, bob, "before");

    const aliceLost = waitForEvent(alice, "peer-offline");
    const bobDisconnected = waitForEvent(bob, "disconnected");
    await first.stop("SIGKILL");
    await Promise.all([aliceLost, bobDisconnected]);
    expect(alice.isOnline(bob.publicKey)).toBe(false);
    expect(() => alice.send(bob.publicKey, "into the void")).toThrow(IntroOfflineError);

    const back = Promise.all([
      waitForEvent(alice, "peer-online", () => true, 10_000),
      waitForEvent(bob, "peer-online", () => true, 10_000),
    ]);
    const second = await spawnServer(["--listen", `127.0.0.1:${first.port}`, "--no-stun"]);
    expect(second.port).toBe(first.port);
    await back;
    expect(alice.connected && bob.connected).toBe(true);
    await exchange(alice, bob, "after");
  });

  it("SIGTERM closes clients with 4011 and exits 0", async () => {
    const server = await spawnServer(["--listen", "127.0.0.1:0", "--no-stun"]);
    const raw = await RawIntroConnection.open(server.url);
    expect(await server.stop("SIGTERM")).toBe(0);
    expect((await raw.closed).code).toBe(CloseCode.serverShutdown);
  });

  describe("over TLS", () => {
    const dir = mkdtempSync(join(tmpdir(), "tbt-intro-tls-"));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("serves wss:// with --tls-cert/--tls-key", async () => {
      const cert = join(dir, "cert.pem");
      const key = join(dir, "key.pem");
      writeSelfSignedCertificate(
        { cert, key },
        { cn: "localhost", subjectAltName: "IP:127.0.0.1,DNS:localhost" },
        1,
      );
      const server = await spawnServer([
        "--listen",
        "127.0.0.1:0",
        "--no-stun",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
      ]);
      expect(server.url).toMatch(/^wss:\/\//);
      const { alice, bob } = await onlinePair(server.url, { ca: readFileSync(cert) });
      await exchange(alice, bob, "tls");
    });
  });
});

describe("intro-server command line", () => {
  let blocker: Server | undefined;
  afterAll(() => blocker?.close());

  it("prints help and exits 0", async () => {
    const result = await runIntroServerCli(["--help"]);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain("--listen HOST:PORT");
  });

  it("exits 2 with a message saying what to fix on bad usage", async () => {
    const result = await runIntroServerCli(["--listen", "127.0.0.1:0", "--turn-url", "turn:127.0.0.1:3479"]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("--turn-url and --turn-secret (or --turn-secret-file) go together");
  });

  it("exits 1 when the port is busy", async () => {
    blocker = createServer();
    await new Promise<void>((resolve) => blocker!.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as { port: number }).port;
    const result = await runIntroServerCli(["--listen", `127.0.0.1:${port}`, "--no-stun"]);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/port busy/);
  });
});
