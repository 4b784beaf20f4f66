// netcheck on the command line: its help documents the exit codes, usage errors (exit 2); and the intro
// server's --stun-alt-port from flags, environment and file (help and completion: cli-help.test.ts).
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { introServerOptionsFromArgs } from "../../intro-server/cli.js";
import { runCliSource } from "../support/cli-source.js";

const tmp = mkdtempSync(join(tmpdir(), "tbt-netcheck-cli-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("tunnelbore netcheck on the command line", () => {
  it("help netcheck is netcheck --help; it documents the exit codes", async () => {
    const viaHelp = await runCliSource(["help", "netcheck"]);
    const viaFlag = await runCliSource(["netcheck", "--help"]);
    expect(viaHelp.code).toBe(0);
    expect(viaHelp.stdout).toBe(viaFlag.stdout);
    expect(viaHelp.stdout).toMatch(/^Usage: tunnelbore netcheck /);
    expect(viaHelp.stdout).toMatch(/Exit codes: 0 UDP works/);
    expect((await runCliSource(["--help"])).stdout).toMatch(/^ {2}netcheck /m);
  });

  it("exits 2 with a reason for bad usage", async () => {
    const noRun = await runCliSource(["netcheck", "--run-dir", join(tmp, "none")]);
    expect(noRun.code).toBe(2);
    expect(noRun.stderr).toMatch(/no tunnelbore run is active .*give --stun\/--turn/);
    const badUrl = await runCliSource(["netcheck", "--stun", "stun:"]);
    expect(badUrl.code).toBe(2);
    const noPassword = await runCliSource([
      "netcheck",
      "--turn",
      "turn:127.0.0.1:3478",
      "--turn-username",
      "u",
    ]);
    expect(noPassword.code).toBe(2);
    expect(noPassword.stderr).toMatch(/--turn needs --turn-username and a password/);
    const both = await runCliSource(["netcheck", "--interface", "wg0", "--stun", "stun:127.0.0.1:3478"]);
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
