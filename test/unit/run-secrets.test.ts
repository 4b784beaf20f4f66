// `tunnelbore run` takes its TURN password from a file or the environment: argv is world-readable (ps).
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseRunArgs, type RunConfig } from "../../src/commands/run.js";

const TURN = ["--interface", "wg0", "--intro", "ws://127.0.0.1:1", "--turn", "turn:192.0.2.1:3478"];
const SECRET = "s3cret-turn-password";
let dir: string;
const savedEnv = process.env.TUNNELBORE_TURN_PASSWORD;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "tbt-secrets-"));
  delete process.env.TUNNELBORE_TURN_PASSWORD;
});

afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
  if (savedEnv === undefined) delete process.env.TUNNELBORE_TURN_PASSWORD;
  else process.env.TUNNELBORE_TURN_PASSWORD = savedEnv;
});

function parsed(argv: string[]): RunConfig {
  const config = parseRunArgs(argv);
  if (config === "help") throw new Error("help");
  return config;
}

function secretFile(content: string, mode = 0o600): string {
  const file = join(dir, "turn-password");
  writeFileSync(file, content, { mode });
  chmodSync(file, mode);
  return file;
}

describe("run's TURN password", () => {
  it("comes from --turn-password-file (one trailing newline dropped), with no warning", () => {
    const config = parsed([
      ...TURN,
      "--turn-username",
      "u",
      "--turn-password-file",
      secretFile(`${SECRET}\n`),
    ]);
    expect(config.intro?.turn).toEqual({ urls: ["turn:192.0.2.1:3478"], username: "u", credential: SECRET });
    expect(config.warnings).toEqual([]);
  });

  it("comes from TUNNELBORE_TURN_PASSWORD", () => {
    process.env.TUNNELBORE_TURN_PASSWORD = SECRET;
    const config = parsed([...TURN, "--turn-username", "u"]);
    expect(config.intro?.turn?.credential).toBe(SECRET);
    expect(config.warnings).toEqual([]);
  });

  it("still comes from --turn-password, with a warning that never holds the value", () => {
    const config = parsed([...TURN, "--turn-username", "u", "--turn-password", SECRET]);
    expect(config.intro?.turn?.credential).toBe(SECRET);
    expect(config.warnings.join("\n")).toMatch(/--turn-password.*ps.*--turn-password-file/s);
    expect(config.warnings.join("\n")).not.toContain(SECRET);
  });

  it("warns about a file other users can read", () => {
    const config = parsed([
      ...TURN,
      "--turn-username",
      "u",
      "--turn-password-file",
      secretFile(SECRET, 0o644),
    ]);
    expect(config.warnings.join("\n")).toMatch(/readable by other users/);
    expect(config.warnings.join("\n")).not.toContain(SECRET);
  });

  it.each([
    [
      ["--turn-password", "x", "--turn-password-file", "/nonexistent"],
      /either --turn-password or --turn-password-file/,
    ],
    [
      ["--turn-password-file", "/nonexistent/tbt"],
      /cannot read --turn-password-file \/nonexistent\/tbt \(ENOENT\)/,
    ],
    [[], /--turn needs --turn-username and a password/],
  ])("rejects %j and says why", (flags, message) => {
    expect(() => parsed([...TURN, "--turn-username", "u", ...flags])).toThrow(message);
  });

  it("never quotes the file in an error", () => {
    const empty = secretFile("\n");
    expect(() => parsed([...TURN, "--turn-username", "u", "--turn-password-file", empty])).toThrow(
      /is empty/,
    );
    expect(() => parsed([...TURN, "--turn-username", "u", "--turn-password-file", dir])).toThrow(
      /cannot read --turn-password-file .* \(EISDIR\)/,
    );
  });
});
