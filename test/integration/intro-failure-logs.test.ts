// An operator reads why the introduction server cannot be reached from one warn line: the URL and the
// cause (the transport error, or the close code and reason), not a bare "disconnected".
import { createServer } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroLink } from "../../src/intro-client/intro-link.js";
import type { Logger } from "../../src/log.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { waitFor } from "../support/wait-for.js";
import { newKey } from "./intro-support.js";

interface Line {
  level: number;
  msg: string;
  url?: string;
  cause?: string;
  error?: string;
}

let server: IntroServer | undefined;
let link: IntroLink | undefined;

afterEach(async () => {
  await link?.stop();
  await server?.close();
  link = undefined;
  server = undefined;
});

function capture(): { lines: Line[]; logger: Logger } {
  const lines: Line[] = [];
  const logger: Logger = pino(
    { level: "debug" },
    { write: (line: string) => void lines.push(JSON.parse(line)) },
  );
  return { lines, logger };
}

const handlers = { peerOnline: () => undefined, peerOffline: () => undefined, signal: () => undefined };

/** A port nothing listens on (bound, then closed). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as { port: number };
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe("introduction server failures in the log", () => {
  it("an unreachable server is a warning naming the URL and the refused connection", async () => {
    const url = `ws://127.0.0.1:${await closedPort()}`;
    const { lines, logger } = capture();
    link = new IntroLink({ url, keys: new LocalKeyAgreement(newKey().privateKey), logger }, handlers);
    link.start();
    await waitFor(() => lines.some((l) => l.level === 40), { what: "a warning", timeoutMs: 10_000 });
    const warning = lines.find((l) => l.level === 40)!;
    expect(warning.url).toBe(url);
    expect(warning.error).toMatch(/ECONNREFUSED/);
    expect(warning.msg).toContain(url);
    expect(warning.msg).toMatch(/ECONNREFUSED/);
  });

  it("a lost connection is one warning with the URL and the cause", async () => {
    server = await startIntroServer({ port: 0, stun: false, logger: createLogger("test", "silent") });
    const { url } = server;
    const { lines, logger } = capture();
    link = new IntroLink({ url, keys: new LocalKeyAgreement(newKey().privateKey), logger }, handlers);
    link.start();
    await waitFor(() => link!.status().state === "connected", { what: "connected" });
    await server.close();
    server = undefined;
    await waitFor(() => lines.some((l) => l.level === 40 && /connection lost/.test(l.msg)), {
      what: "the lost-connection warning",
      timeoutMs: 10_000,
    });
    const lost = lines.filter((l) => l.level === 40 && /connection lost/.test(l.msg));
    expect(lost).toHaveLength(1);
    expect(lost[0]!.url).toBe(url);
    expect(lost[0]!.cause).toMatch(/closed 10\d\d|server/);
    expect(lost[0]!.msg).toContain(lost[0]!.cause!);
    // Said once, at warn: the reconnect policy's own line about it stays at debug.
    expect(lines.filter((l) => l.level >= 30 && /disconnected from the introduction/.test(l.msg))).toEqual(
      [],
    );
  });
});
