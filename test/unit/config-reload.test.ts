// SIGHUP's look at `run`'s configuration: which options changed since the start, never their values.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { configRecheck } from "../../src/commands/config-reload.js";
import { runConfigRecheck } from "../../src/commands/run.js";

const dir = mkdtempSync(join(tmpdir(), "tbt-config-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("configRecheck", () => {
  it("names the options whose resolved values differ, added and removed ones included, sorted", () => {
    let now: Record<string, unknown> = { interface: "wg0", endpoint: ["a=1.2.3.4:5"], "log-level": "info" };
    const recheck = configRecheck(() => now, { ...now });
    expect(recheck()).toEqual({ kind: "unchanged" });
    now = { interface: "wg0", endpoint: ["a=1.2.3.4:6"], "idle-timeout": "5m" };
    expect(recheck()).toEqual({ kind: "changed", options: ["endpoint", "idle-timeout", "log-level"] });
  });

  it("leaves out the options it is told to (a secret read from the environment, then deleted)", () => {
    let now: Record<string, unknown> = { "turn-password": true };
    const recheck = configRecheck(() => now, { ...now }, ["turn-password"]);
    now = {};
    expect(recheck()).toEqual({ kind: "unchanged" });
  });

  it("a source that no longer reads: its first line, not an exception", () => {
    const recheck = configRecheck(() => {
      throw new Error("x.yaml:3: not valid YAML\nmore");
    }, {});
    expect(recheck()).toEqual({ kind: "unreadable", message: "x.yaml:3: not valid YAML" });
  });
});

describe("runConfigRecheck", () => {
  it("reads --config FILE again: argv still beats the file, a changed key is named, a broken file said", () => {
    const file = join(dir, "wg0.yaml");
    writeFileSync(file, "interface: wg0\nlog-level: info\nidle-timeout: 10m\n");
    const recheck = runConfigRecheck(["--config", file, "--log-level", "debug"], {});
    expect(recheck()).toEqual({ kind: "unchanged" });
    // The file's log-level is overridden by the flag: changing it changes nothing that applies.
    writeFileSync(file, "interface: wg0\nlog-level: warn\nidle-timeout: 10m\n");
    expect(recheck()).toEqual({ kind: "unchanged" });
    writeFileSync(file, "interface: wg0\nlog-level: warn\nidle-timeout: 20m\n");
    expect(recheck()).toEqual({ kind: "changed", options: ["idle-timeout"] });
    writeFileSync(file, "interface: wg0\nidle-timout: 20m\n");
    const broken = recheck();
    expect(broken.kind).toBe("unreadable");
    expect(broken.kind === "unreadable" && broken.message).toMatch(/wg0\.yaml:2: unknown key "idle-timout"/);
  });

  it("a TURN password from the environment, deleted once read, does not read as a change of the file's", () => {
    const file = join(dir, "turn.yaml");
    writeFileSync(file, "interface: wg0\nturn-password-file: /etc/tunnelbore/turn\n");
    const env: NodeJS.ProcessEnv = { TUNNELBORE_TURN_PASSWORD: "s3cret" };
    const recheck = runConfigRecheck(["--config", file], env);
    delete env.TUNNELBORE_TURN_PASSWORD; // as resolveSecret does once it has read it
    expect(recheck()).toEqual({ kind: "unchanged" });
    writeFileSync(file, "interface: wg1\nturn-password-file: /etc/tunnelbore/turn\n");
    expect(recheck()).toEqual({ kind: "changed", options: ["interface"] });
  });
});
