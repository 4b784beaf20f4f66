// More peers than the server lets one key declare: the client declares a fixed subset (the smallest
// keys) instead of being closed 4009 on every reconnect, says so once, and those peers are introduced.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger, type Logger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, sleep, type TestKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const CAP = 3;
let server: IntroServer | undefined;
const clients: IntroClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await server?.close();
  server = undefined;
});

function client(key: TestKey, peers: string[], logger: Logger = silent): IntroClient {
  const c = new IntroClient({ url: server!.url, keys: new LocalKeyAgreement(key.privateKey), logger });
  c.setPeers(peers);
  clients.push(c);
  return c;
}

describe("a client with more peers than the server's cap on declarations", () => {
  it("declares the smallest keys, stays connected, says so once, and those peers come online", async () => {
    server = await startIntroServer({
      port: 0,
      stun: false,
      logger: silent,
      limits: { maxDeclaredPeers: CAP },
    });
    const hub = newKey();
    const peers = Array.from({ length: 5 }, () => newKey()).sort((a, b) =>
      a.publicKey < b.publicKey ? -1 : 1,
    );
    const lines: Array<{ level: number; msg: string }> = [];
    const logger = pino({ level: "debug" }, { write: (l: string) => void lines.push(JSON.parse(l)) });
    const hubClient = client(
      hub,
      peers.map((p) => p.publicKey),
      logger,
    );
    const peerClients = peers.map((p) => client(p, [hub.publicKey]));
    for (const c of peerClients) c.start();
    hubClient.start();

    const introduced = peers.slice(0, CAP).map((p) => p.publicKey);
    await waitFor(() => introduced.every((key) => hubClient.isOnline(key)), {
      what: "the first three peers online at the hub",
      timeoutMs: 15_000,
    });
    await sleep(500);
    for (const p of peers.slice(CAP)) expect(hubClient.isOnline(p.publicKey)).toBe(false);
    expect(server.stats().closes[CloseCode.tooManyPeers] ?? 0).toBe(0);
    expect(hubClient.connectionStatus).toMatchObject({ state: "connected", failures: 0 });
    expect(hubClient.undeclaredPeers).toBe(2);

    // An envelope to an introduced peer gets through.
    const delivered = waitForEvent<[string, unknown]>(peerClients[0]!, "envelope");
    hubClient.send(peers[0]!.publicKey, { hello: 1 });
    expect((await delivered)[0]).toBe(hub.publicKey);

    // Dropping a peer makes room: the next key is declared and introduced.
    hubClient.setPeers(peers.slice(1).map((p) => p.publicKey));
    await waitFor(() => hubClient.isOnline(peers[CAP]!.publicKey), {
      what: "the fourth peer online once there is room",
      timeoutMs: 15_000,
    });
    expect(hubClient.undeclaredPeers).toBe(1);
    expect(lines.filter((l) => l.level >= 50 && /max-peers-per-key/.test(l.msg))).toHaveLength(2);
  });
});
