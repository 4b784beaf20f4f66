// A key the server does not serve (close 4013 not-member) is a configuration problem, not a network
// one: the client says so in one error line naming its public key, retries slowly instead of its
// normal backoff, shows "not-member" in its status, and connects once the key is allowed.
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger, type Logger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const NOT_MEMBER_RETRY_MS = 300;

let server: IntroServer | undefined;
let client: IntroClient | undefined;

afterEach(async () => {
  await client?.stop();
  await server?.close();
  client = undefined;
  server = undefined;
});

function capturingLogger(): { logger: Logger; lines: Array<{ level: number; msg: string }> } {
  const lines: Array<{ level: number; msg: string }> = [];
  const logger = pino({ level: "debug" }, { write: (line: string) => void lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe("a key the introduction server does not serve", () => {
  it("is said once, naming our key, retried slowly, shown in status, and connects once allowed", async () => {
    const member = newKey();
    const stranger = newKey();
    server = await startIntroServer({
      port: 0,
      stun: false,
      logger: silent,
      allowedKeys: new Set([member.publicKey]),
    });
    const { logger, lines } = capturingLogger();
    client = new IntroClient({
      url: server.url,
      keys: new LocalKeyAgreement(stranger.privateKey),
      logger,
      // The normal backoff would retry within 20 ms: the refusals below come at the slow interval.
      reconnect: { initialDelayMs: 10, maxDelayMs: 20, notMemberRetryMs: NOT_MEMBER_RETRY_MS },
    });
    const started = performance.now();
    client.start();
    await waitFor(() => client!.connectionStatus.failures >= 3, {
      what: "three refused attempts",
      timeoutMs: 20_000,
    });
    // Two waits between three attempts, each at least the slow interval (never the normal 10-20 ms).
    expect(performance.now() - started).toBeGreaterThanOrEqual(2 * NOT_MEMBER_RETRY_MS);
    expect(server.stats().closes[CloseCode.notMember]).toBeGreaterThanOrEqual(3);

    const status = client.connectionStatus;
    expect(status.state).toBe("not-member");
    expect(status.lastError).toContain(stranger.publicKey);

    const errors = lines.filter((line) => line.level >= 50);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.msg).toContain(stranger.publicKey);
    expect(errors[0]!.msg).toMatch(/allowed keys/);

    // Allowed now: the next slow retry gets in.
    const connected = waitForEvent(client, "connected", () => true, 20_000);
    server.setAllowedKeys(new Set([member.publicKey, stranger.publicKey]));
    await connected;
    expect(client.connectionStatus).toMatchObject({ state: "connected", failures: 0 });

    // Removed while online: closed with 4013, said again (a new streak), and shown again.
    server.setAllowedKeys(new Set([member.publicKey]));
    await waitFor(() => client!.connectionStatus.state === "not-member", {
      what: "not-member again",
      timeoutMs: 20_000,
    });
    expect(lines.filter((line) => line.level >= 50)).toHaveLength(2);
  });

  it("is tried again at once when asked (SIGHUP), not a minute later", async () => {
    const stranger = newKey();
    server = await startIntroServer({ port: 0, stun: false, logger: silent, allowedKeys: new Set() });
    client = new IntroClient({
      url: server.url,
      keys: new LocalKeyAgreement(stranger.privateKey),
      logger: silent,
      reconnect: { notMemberRetryMs: 60_000 },
    });
    expect(client.retryNow()).toBe(false); // stopped: nothing to retry
    client.start();
    await waitFor(() => client!.connectionStatus.state === "not-member", {
      what: "not-member",
      timeoutMs: 10_000,
    });
    server.setAllowedKeys(new Set([stranger.publicKey]));
    const connected = waitForEvent(client, "connected", () => true, 10_000);
    expect(client.retryNow()).toBe(true);
    await connected;
    expect(client.connectionStatus).toMatchObject({ state: "connected", failures: 0 });
    expect(client.retryNow()).toBe(false); // connected: nothing to retry
  });
});
