// The introduction server's listening socket takes a burst of connections (a cluster node died and its
// clients arrive at once) without the kernel dropping SYNs, which clients would resend only after 1-7 s.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { afterEach, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { createLogger } from "../../src/log.js";

let server: IntroServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});

it("listens with a backlog of 4,096 (or the kernel's cap), not Node's 511", async () => {
  server = await startIntroServer({ stun: false, logger: createLogger("test", "silent") });
  const somaxconn = Number(readFileSync("/proc/sys/net/core/somaxconn", "utf8").trim());
  // For a listening socket `ss` shows the backlog as Send-Q.
  const line = execFileSync("ss", ["-ltnH", `sport = :${server.port}`], { encoding: "utf8" }).trim();
  const backlog = Number(line.split(/\s+/)[2]);
  expect(backlog).toBe(Math.min(4_096, somaxconn));
});
