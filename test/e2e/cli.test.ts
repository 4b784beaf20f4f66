// The `tunnelbore` command line: help, exit codes and messages that say what to fix.
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, generateKeyPair, teardownAll, uniqueTag } from "../lab/netns.js";
import { CLI, startTunnelbore, type TunnelboreDirs, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";

const execFileAsync = promisify(execFile);

async function cli(
  args: string[],
  prefix: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [cmd, ...rest] = [...prefix, process.execPath, CLI, ...args];
  try {
    const { stdout, stderr } = await execFileAsync(cmd as string, rest, { timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let ns: string;
let wg: WireGuardInterface;
let dirs: TunnelboreDirs;

beforeAll(async () => {
  ns = await createNamespace(`tbt-cli-${uniqueTag()}`);
  const keys = await generateKeyPair();
  wg = await startWireGuard(ns, { privateKey: keys.privateKey, listenPort: 51820, address: "10.98.0.1/24" });
  dirs = tunnelboreDirs();
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
});

describe("tunnelbore CLI", () => {
  it("prints help and the version with exit 0", async () => {
    const help = await cli(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/run\s+proxy a WireGuard interface/);
    expect((await cli(["run", "--help"])).stdout).toMatch(/--interface IF/);
    expect((await cli(["--version"])).stdout).toMatch(/^tunnelbore \d+\.\d+\.\d+/);
  });

  it.each([
    [["frobnicate"], /unknown command "frobnicate"/],
    // Without --interface, run serves every interface (test/e2e/all-interfaces.test.ts); what names
    // one interface's file still needs it.
    [["run", "--wg-quick-config", "/etc/wireguard/wg0.conf"], /--wg-quick-config .* needs --interface/],
    [["run", "--interface", "no/such"], /"no\/such" is not a valid interface name/],
    [["run", "--interface", "wg0", "--bogus"], /Unknown option '--bogus'/],
    [["run", "--interface", "wg0", "--listen", "nowhere"], /is not HOST:PORT/],
    [["run", "--interface", "wg0", "--endpoint", "abc=1.2.3.4:5"], /PUBLICKEY=HOST:PORT/],
    [["run", "--interface", "wg0", "--stun", "stun:x:1"], /--stun needs --intro/],
    [["run", "--interface", "wg0", "--intro", "http://x"], /must be a ws:\/\/ or wss:\/\/ URL/],
    [["run", "--interface", "wg0", "--poll-interval", "0"], /--poll-interval must be auto or a whole number/],
  ])("rejects %j with exit 2 and says why", async (args, message) => {
    const r = await cli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(message);
  });

  it("takes the TURN password from a file or the environment, and warns (without it) when in argv", async () => {
    expect((await cli(["run", "--help"])).stdout).toMatch(
      /--turn-password-file FILE[\s\S]*TUNNELBORE_TURN_PASSWORD/,
    );
    const secret = "tbt-argv-secret-4711";
    const file = join(dirs.stateDir, "..", "turn-password");
    writeFileSync(file, `${secret}\n`, { mode: 0o600 });
    const base = ["run", "--interface", "tbtnope0", "--run-dir", dirs.runDir, "--state-dir", dirs.stateDir];
    const turn = ["--intro", "ws://127.0.0.1:1", "--turn", "turn:127.0.0.1:3478", "--turn-username", "u"];
    const fromFile = await cli([...base, ...turn, "--turn-password-file", file]);
    // Parsed (the missing interface is what stops it), and nothing to warn about.
    expect(fromFile.stderr).toMatch(/WireGuard interface tbtnope0 does not exist/);
    expect(fromFile.stderr).not.toMatch(/"level":"warn"[^\n]*(secret|readable by other users)/);
    const inArgv = await cli([...base, ...turn, "--turn-password", secret]);
    expect(inArgv.stderr).toMatch(/WireGuard interface tbtnope0 does not exist/);
    expect(inArgv.stderr).toMatch(/"level":"warn".*--turn-password shows the secret to every user/);
    expect(inArgv.stderr).not.toContain(secret);
  });

  it("logs JSON lines with level names, or pretty lines with --log-format pretty", async () => {
    const base = ["run", "--interface", "tbtnope0", "--run-dir", dirs.runDir, "--state-dir", dirs.stateDir];
    const warns = ["--intro", "ws://127.0.0.1:1", "--turn", "turn:127.0.0.1:3478", "--turn-username", "u"];
    const args = [...base, ...warns, "--turn-password", "tbt-pretty-secret"];
    const json = await cli([...args, "--log-format", "json"]);
    const lines = json.stderr
      .split("\n")
      .filter((line) => line.startsWith("{"))
      .map((line) => JSON.parse(line) as { level: unknown });
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((line) => typeof line.level === "string")).toBe(true);
    expect(lines.map((line) => line.level)).toContain("warn");

    const pretty = await cli([...args, "--log-format", "pretty"]);
    expect(pretty.stderr).toMatch(/WARN.*--turn-password shows the secret to every user/);
    expect(pretty.stderr).not.toMatch(/^\{"level"/m);
    expect(pretty.stderr).not.toContain("tbt-pretty-secret");

    const bad = await cli([...base, "--log-format", "xml"]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--log-format "xml" is not one of json, pretty/);
    const badServer = await cli(["intro-server", "--listen", "127.0.0.1:0", "--log-format", "xml"]);
    expect(badServer.code).toBe(2);
    expect(badServer.stderr).toMatch(/--log-format "xml" is not one of json, pretty/);
  });

  it("a missing interface: exit 2", async () => {
    const r = await cli([
      "run",
      "--interface",
      "tbtnope0",
      "--run-dir",
      dirs.runDir,
      "--state-dir",
      dirs.stateDir,
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/WireGuard interface tbtnope0 does not exist/);
  });

  it("not root: exit 2", async () => {
    const r = await cli(
      ["run", "--interface", "wg0"],
      ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"],
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/needs root or CAP_NET_ADMIN/);
  });

  it("a busy catch-all port or a second instance: exit 2", async () => {
    const first = await startTunnelbore(ns, wg.name, dirs);
    try {
      const run = (runDir: string) =>
        cli(
          ["run", "--interface", wg.name, "--run-dir", runDir, "--state-dir", dirs.stateDir],
          ["ip", "netns", "exec", ns],
        );
      const again = await run(dirs.runDir);
      expect(again.code).toBe(2);
      expect(again.stderr).toMatch(/another tunnelbore already serves/);
      const busy = await run(`${dirs.runDir}-other`);
      expect(busy.code).toBe(2);
      expect(busy.stderr).toMatch(/127\.0\.0\.1:51821 is already in use/);
      // The running one is unharmed.
      expect((await first.status()).ready).toBe(true);
    } finally {
      await first.stop();
    }
  });

  it("status without a running instance: exit 2; with one: a table, or JSON", async () => {
    const none = await cli(["status", "--interface", "tbtnope0", "--run-dir", dirs.runDir]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/no tunnelbore run is serving/);
    const tb = await startTunnelbore(ns, wg.name, dirs);
    try {
      const table = await cli(["status", "--run-dir", dirs.runDir]);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(new RegExp(`interface ${wg.name}`));
      const json = await cli(["status", "--interface", wg.name, "--run-dir", dirs.runDir, "--json"]);
      expect(JSON.parse(json.stdout)).toMatchObject({ interface: wg.name, ready: true, peers: [] });
    } finally {
      await tb.stop();
    }
  });
});
