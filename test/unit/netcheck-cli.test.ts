// netcheck on the command line: help (also as `help netcheck`), the bash completion in step with it,
// usage errors (exit 2); and the intro server's --stun-alt-port from flags, environment and file.
import { execFile } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { introServerOptionsFromArgs } from "../../intro-server/cli.js";

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, "../..");
const CLI_SOURCE = join(ROOT, "src/cli.ts");
const COMPLETION = join(ROOT, "completions/tunnelbore.bash");
const tmp = mkdtempSync(join(tmpdir(), "tbt-netcheck-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      ["--import", "tsx", CLI_SOURCE, ...args],
      {
        cwd: ROOT,
        timeout: 30_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe("tunnelbore netcheck on the command line", () => {
  it("help netcheck is netcheck --help; it documents the exit codes", async () => {
    const viaHelp = await cli(["help", "netcheck"]);
    const viaFlag = await cli(["netcheck", "--help"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaHelp.stdout).toMatch(/^Usage: tunnelbore netcheck /);
    expect(viaHelp.stdout).toMatch(/Exit codes: 0 UDP works/);
    expect((await cli(["--help"])).stdout).toMatch(/^ {2}netcheck /m);
  });

  it("the bash completion lists every flag of its help", async () => {
    const help = (await cli(["netcheck", "--help"])).stdout;
    const flags = [...new Set(help.match(/(?<![\w-])--?[a-z][a-z0-9-]*/g) ?? [])].filter(
      (f) => !/^-[a-z]{2,}$/.test(f),
    );
    const branch = readFileSync(COMPLETION, "utf8").match(/\n\s+netcheck\)\n([\s\S]*?);;/)?.[1] ?? "";
    const listed = new Set(branch.match(/--?[a-z][a-z0-9-]*/g));
    expect(flags.filter((f) => !listed.has(f))).toEqual([]);
  });

  it("exits 2 with a reason for bad usage", async () => {
    const noRun = await cli(["netcheck", "--run-dir", join(tmp, "none")]);
    expect(noRun.code).toBe(2);
    expect(noRun.stderr).toMatch(/no tunnelbore run is active .*give --stun\/--turn/);
    const badUrl = await cli(["netcheck", "--stun", "stun:"]);
    expect(badUrl.code).toBe(2);
    const noPassword = await cli(["netcheck", "--turn", "turn:127.0.0.1:3478", "--turn-username", "u"]);
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toMatch(/--turn needs --turn-username and a password/);
    const both = await cli(["netcheck", "--interface", "wg0", "--stun", "stun:127.0.0.1:3478"]);
    expect(both.code).toBe(2);
    expect(both.stderr).toMatch(/either --interface or --stun\/--turn/);
  });
});

describe("intro-server --stun-alt-port", () => {
  const listen = ["--listen", "127.0.0.1:8443"];

  it("defaults to a free port (0), and takes a port from the flag, the environment or the file", async () => {
    expect(await introServerOptionsFromArgs(listen, {})).toMatchObject({ stun: { port: 3478, altPort: 0 } });
    expect(await introServerOptionsFromArgs([...listen, "--stun-alt-port", "3480"], {})).toMatchObject({
      stun: { port: 3478, altPort: 3480 },
    });
    expect(
      await introServerOptionsFromArgs(listen, { TUNNELBORE_INTRO_SERVER_STUN_ALT_PORT: "3481" }),
    ).toMatchObject({ stun: { altPort: 3481 } });
    const file = join(tmp, "intro.yaml");
    writeFileSync(file, "stun-port: 3500\nstun-alt-port: 3501\n");
    expect(await introServerOptionsFromArgs([...listen, "--config", file], {})).toMatchObject({
      stun: { port: 3500, altPort: 3501 },
    });
  });

  it("refuses it with --no-stun, and a bad port", async () => {
    await expect(
      introServerOptionsFromArgs([...listen, "--no-stun", "--stun-alt-port", "1"], {}),
    ).rejects.toThrow(/--no-stun/);
    await expect(introServerOptionsFromArgs([...listen, "--stun-alt-port", "70000"], {})).rejects.toThrow(
      /--stun-alt-port wants a port number/,
    );
  });
});
