// `tunnelbore run` and `intro-server` take their options from --config FILE (YAML) and the
// environment, through the built CLI (npm run build first): flag > env > file, exit 2 on a bad file.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CLI } from "../lab/tunnelbore.js";

const execFileAsync = promisify(execFile);
let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tbt-config-e2e-"));
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

/** The CLI with only PATH and `env` in its environment (none of the caller's TUNNELBORE_*). */
async function cli(
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [CLI, ...args], {
      timeout: 20_000,
      env: { PATH: process.env.PATH, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

function file(name: string, text: string): string {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
}

describe("run --config and TUNNELBORE_*", () => {
  it.each([
    [
      "unknown.yaml",
      "interface: wg0\nno-manage-endpoint: true\n",
      /unknown\.yaml:2: unknown key "no-manage-endpoint": did you mean "no-manage-endpoints"\?/,
    ],
    [
      "type.yaml",
      "interface: wg0\nintro: ws://h:1\n\nexclude-interface:\n  - docker*\n  - [lo]\n",
      /type\.yaml:6: "exclude-interface" wants a list of strings/,
    ],
    [
      "invalid.yaml",
      'interface: wg0\nlisten: "127.0.0.1:1\n',
      /invalid\.yaml:3: not valid YAML: Missing closing "quote/,
    ],
    [
      "secret.yaml",
      "interface: wg0\nturn-password: hunter2\n",
      /secret\.yaml:2: "turn-password" is a secret and does not belong in the config file: use turn-password-file/,
    ],
  ])("a bad file (%s): exit 2 and what to fix, with the line", async (name, text, message) => {
    const r = await cli(["run", "--config", file(name, text)]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^tunnelbore run: /);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).not.toContain("hunter2");
  });

  it("each source alone sets the interface, and flag > env > file", async () => {
    const dirs = ["--run-dir", join(dir, "run"), "--state-dir", join(dir, "state")];
    const config = file("good.yaml", "interface: tbtfile0\nebpf: off\nno-privsep: true\n");
    const missing = (name: string) => new RegExp(`WireGuard interface ${name} does not exist`);
    // The interface is what stops each one: everything before it parsed.
    const fromFile = await cli(["run", "--config", config, ...dirs]);
    expect(fromFile.code).toBe(2);
    expect(fromFile.stderr).toMatch(missing("tbtfile0"));
    const fromConfigEnv = await cli(["run", ...dirs], { TUNNELBORE_CONFIG: config });
    expect(fromConfigEnv.stderr).toMatch(missing("tbtfile0"));
    const fromEnv = await cli(["run", "--config", config, ...dirs], { TUNNELBORE_INTERFACE: "tbtenv0" });
    expect(fromEnv.stderr).toMatch(missing("tbtenv0"));
    const fromFlag = await cli(["run", "--config", config, ...dirs, "-i", "tbtflag0"], {
      TUNNELBORE_INTERFACE: "tbtenv0",
    });
    expect(fromFlag.stderr).toMatch(missing("tbtflag0"));
    const envOnly = await cli(["run", ...dirs], {
      TUNNELBORE_INTERFACE: "tbtenv1",
      TUNNELBORE_NO_PRIVSEP: "1",
    });
    expect(envOnly.stderr).toMatch(missing("tbtenv1"));
  });

  it("a value the command rejects says which source set it", async () => {
    const r = await cli(["run", "--config", file("listen.yaml", "interface: wg0\nlisten: nowhere\n")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/"nowhere" is not HOST:PORT.*\(set by .*listen\.yaml line 2\)/);
    const env = await cli(["run", "-i", "wg0"], { TUNNELBORE_NO_MANAGE_ENDPOINTS: "maybe" });
    expect(env.code).toBe(2);
    expect(env.stderr).toMatch(/TUNNELBORE_NO_MANAGE_ENDPOINTS="maybe": a switch wants 1 or 0/);
  });

  it("--help lists --config", async () => {
    expect((await cli(["run", "--help"])).stdout).toMatch(/--config FILE/);
    expect((await cli(["intro-server", "--help"])).stdout).toMatch(
      /--config FILE[\s\S]*TUNNELBORE_INTRO_SERVER_/,
    );
  });
});

describe("intro-server --config and TUNNELBORE_INTRO_SERVER_*", () => {
  it("a bad file: exit 2 with the line", async () => {
    const r = await cli([
      "intro-server",
      "--config",
      file("intro-bad.yaml", "listen: 127.0.0.1:0\nmax-conn: 3\n"),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/intro-bad\.yaml:2: unknown key "max-conn": did you mean "max-conns"\?/);
  });

  it("starts from the file, with the environment and a flag on top", async () => {
    const config = file("intro.yaml", "listen: 127.0.0.1:1\nstun-port: 0\n");
    const child = spawn(process.execPath, [CLI, "intro-server", "--config", config, "--no-stun"], {
      env: { PATH: process.env.PATH, TUNNELBORE_INTRO_SERVER_LISTEN: "127.0.0.1:0" },
    });
    try {
      const line = await new Promise<string>((resolve, reject) => {
        let out = "";
        child.stdout.on("data", (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes("\n")) resolve(out);
        });
        child.once("exit", (code) => reject(new Error(`exited ${code}: ${out}`)));
      });
      // The environment's port 0 beat the file's port 1; --no-stun beat the file's stun-port.
      expect(line).toMatch(/listening on ws:\/\/127\.0\.0\.1:(\d+)/);
      expect(line).not.toMatch(/127\.0\.0\.1:1\b/);
      expect(line).not.toMatch(/STUN/);
    } finally {
      child.kill("SIGTERM");
    }
  });
});
