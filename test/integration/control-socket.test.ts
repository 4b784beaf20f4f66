// The control socket answers "release" (which rewrites WireGuard's endpoints): only root may reach it,
// whatever umask `tunnelbore run` was started with.
import { spawn } from "node:child_process";
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ControlServer, requestStatus } from "../../src/control/control-socket.js";
import type { StatusReport } from "../../src/control/status.js";

const NOBODY = 65534;
let base: string;
let server: ControlServer | null = null;
let savedUmask: number;

const handlers = {
  status: () => ({ interface: "wg0" }) as unknown as StatusReport,
  release: async () => ({ restored: 0 }),
};

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "tbt-control-"));
  chmodSync(base, 0o755); // so that the socket's own mode is what keeps nobody out
  savedUmask = process.umask(0o000);
});

afterEach(async () => {
  process.umask(savedUmask);
  await server?.close();
  server = null;
  rmSync(base, { recursive: true, force: true });
});

/** Tries to connect to `path` as uid 65534 and says what happened ("connected" or the errno code). */
function connectAsNobody(path: string): Promise<string> {
  const script = `const c = require("node:net").connect(${JSON.stringify(path)});
c.on("connect", () => { console.log("connected"); c.destroy(); });
c.on("error", (e) => console.log(e.code));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["-e", script], { uid: NOBODY, gid: NOBODY });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("exit", () => resolve(out.trim()));
  });
}

describe("ControlServer", () => {
  it("creates its socket 0600 under umask 000, so another user cannot connect", async () => {
    const runDir = join(base, "run");
    const path = join(runDir, "wg0.sock");
    server = new ControlServer(path, handlers);
    await server.listen();
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(runDir).mode & 0o022).toBe(0);
    expect(await connectAsNobody(path)).toBe("EACCES");
    // Root still gets its answer.
    expect(await requestStatus(path)).toEqual({ interface: "wg0" });
  });

  it("restores the process umask after listening", async () => {
    server = new ControlServer(join(base, "run", "wg0.sock"), handlers);
    await server.listen();
    expect(process.umask()).toBe(0);
  });

  it.each([
    ["writable by others", (dir: string) => chmodSync(dir, 0o777), /writable by others/],
    ["owned by another user", (dir: string) => chownSync(dir, NOBODY, NOBODY), /owned by uid 65534/],
  ])("refuses a run directory %s (they could swap the socket)", async (_what, spoil, message) => {
    const runDir = join(base, "run");
    mkdirSync(runDir, { mode: 0o755 });
    spoil(runDir);
    server = new ControlServer(join(runDir, "wg0.sock"), handlers);
    const listening = server.listen();
    await expect(listening).rejects.toMatchObject({ code: "unsafe-directory" });
    await expect(listening).rejects.toThrow(message);
    server = null;
  });
});
