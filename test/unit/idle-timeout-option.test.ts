// `run --idle-timeout`: a duration, its default, off, and the config file and environment.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { parseRunArgs, type RunConfig } from "../../src/commands/run.js";

const dir = mkdtempSync(join(tmpdir(), "tbt-idle-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function idleTimeoutOf(argv: string[], env: NodeJS.ProcessEnv = {}): number {
  return (parseRunArgs(["-i", "wg0", ...argv], env) as RunConfig).idleTimeoutMs;
}

describe("run --idle-timeout", () => {
  it("is 15 minutes by default", () => {
    expect(idleTimeoutOf([])).toBe(15 * 60_000);
  });

  it("takes a duration with a unit, bare seconds, or 0/off for never", () => {
    expect(idleTimeoutOf(["--idle-timeout", "90s"])).toBe(90_000);
    expect(idleTimeoutOf(["--idle-timeout", "15m"])).toBe(900_000);
    expect(idleTimeoutOf(["--idle-timeout", "1h"])).toBe(3_600_000);
    expect(idleTimeoutOf(["--idle-timeout", "2500ms"])).toBe(2500);
    expect(idleTimeoutOf(["--idle-timeout", "30"])).toBe(30_000);
    expect(idleTimeoutOf(["--idle-timeout", "0"])).toBe(0);
    expect(idleTimeoutOf(["--idle-timeout", "off"])).toBe(0);
  });

  it("comes from TUNNELBORE_IDLE_TIMEOUT and the config file too (the flag first)", () => {
    const file = join(dir, "tunnelbore.yaml");
    writeFileSync(file, "idle-timeout: 5m\n");
    expect(idleTimeoutOf(["--config", file])).toBe(300_000);
    expect(idleTimeoutOf(["--config", file], { TUNNELBORE_IDLE_TIMEOUT: "off" })).toBe(0);
    expect(
      idleTimeoutOf(["--config", file, "--idle-timeout", "10s"], { TUNNELBORE_IDLE_TIMEOUT: "off" }),
    ).toBe(10_000);
  });

  it("says what it takes when the value is not a duration", () => {
    for (const bad of ["soon", "-5s", "5 days", "8d", "1000h"]) {
      expect(() => idleTimeoutOf([`--idle-timeout=${bad}`]), bad).toThrow(
        /--idle-timeout "[^"]*" must be a duration such as 90s, 15m or 1h/,
      );
    }
  });
});
