// Type=notify as systemd runs it: `run` and `intro-server` say READY=1 once they serve, RELOADING=1 and
// READY=1 around SIGHUP, STOPPING=1 at SIGTERM, on the socket in NOTIFY_SOCKET (socat stands in for
// systemd); no process they start (the worker) inherits the socket.
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, generateKeyPair, spawnInNamespace, teardownAll, uniqueTag } from "../lab/netns.js";
import { childrenOf } from "../lab/process-tree.js";
import { CLI, startTunnelbore, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

let ns: string;
let wg: WireGuardInterface;
let dirs: TunnelboreDirs;
let tmp: string;
const receivers: ChildProcess[] = [];

beforeAll(async () => {
  ns = await createNamespace(`tbt-notify-${uniqueTag()}`);
  const keys = await generateKeyPair();
  wg = await startWireGuard(ns, { privateKey: keys.privateKey, listenPort: 51820, address: "10.97.0.1/24" });
  dirs = tunnelboreDirs();
  tmp = mkdtempSync(join(tmpdir(), "tbt-notify-"));
});

afterEach(() => {
  for (const r of receivers.splice(0)) r.kill("SIGKILL");
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** A stand-in for systemd's notification socket: every datagram socat receives, in order. */
async function notifySocket(name: string): Promise<{ path: string; received: () => string }> {
  const path = join(tmp, name);
  let out = "";
  const socat = spawn("socat", ["-u", `UNIX-RECV:${path}`, "-"], { stdio: ["ignore", "pipe", "inherit"] });
  socat.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
  });
  receivers.push(socat);
  await waitFor(() => existsSync(path), { what: "the notification socket" });
  return { path, received: () => out };
}

describe("systemd notifications (Type=notify)", () => {
  it("run: READY once serving, RELOADING and READY around SIGHUP, STOPPING at SIGTERM; the worker never sees the socket", async () => {
    const notify = await notifySocket("run.sock");
    const tb = await startTunnelbore(ns, wg.name, dirs, [], { NOTIFY_SOCKET: notify.path });
    await waitFor(() => notify.received().includes("READY=1"), { what: "READY=1" });
    expect(notify.received()).toBe("READY=1\nSTATUS=tunnelbore running");
    expect((await tb.status()).ready).toBe(true);

    const workers = childrenOf(tb.process.child.pid ?? -1).filter((p) => p.comm === "node");
    expect(workers).toHaveLength(1);
    expect(readFileSync(`/proc/${workers[0]!.pid}/environ`, "latin1")).not.toContain("NOTIFY_SOCKET");

    tb.process.child.kill("SIGHUP");
    await waitFor(() => notify.received().endsWith("RELOADING=1READY=1"), { what: "RELOADING then READY" });
    expect(await tb.stop("SIGTERM")).toBe(0);
    expect(notify.received()).toMatch(/STOPPING=1$/);
  }, 60_000);

  it("intro-server: READY with the address it listens on, STOPPING at SIGTERM", async () => {
    const notify = await notifySocket("intro.sock");
    const server = spawnInNamespace(
      ns,
      process.execPath,
      [CLI, "intro-server", "--listen", "127.0.0.1:0", "--no-stun"],
      { NOTIFY_SOCKET: notify.path },
    );
    await waitFor(() => notify.received().includes("READY=1"), { what: "READY=1" });
    expect(notify.received()).toMatch(/^READY=1\nSTATUS=listening on ws:\/\/127\.0\.0\.1:\d+/);
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(notify.received()).toMatch(/STOPPING=1$/);
  }, 30_000);
});
