// EndpointState on disk: root writes it, so a state directory others can write, a planted symlink or a
// file with someone else's content must never make it overwrite or quote another file.
import {
  chmodSync,
  chownSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EndpointState } from "../../src/wg/endpoint-state.js";

const NOBODY = 65534;
const ORIGINAL = "a secret line a root-only file holds\n";
let root: string;
let stateDir: string;
let precious: string;

beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "tbt-endpoint-state-"));
  stateDir = join(root, "state");
  // A root-only file an attacker wants overwritten or read: outside the state directory.
  precious = join(root, "precious");
  writeFileSync(precious, ORIGINAL, { mode: 0o600 });
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

const KEY = `${"k".repeat(43)}=`;

async function writeOnce(dir: string): Promise<unknown> {
  const state = new EndpointState(dir, "wg0");
  return state.set(KEY, "192.0.2.1:51820").then(
    () => null,
    (err: unknown) => err,
  );
}

describe("EndpointState", () => {
  it("writes 0600 and reads back what it wrote, leaving no temporary file", async () => {
    expect(await writeOnce(stateDir)).toBeNull();
    const file = join(stateDir, "wg0.endpoints.json");
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readdirSync(stateDir)).toEqual(["wg0.endpoints.json"]);
    const again = new EndpointState(stateDir, "wg0");
    await again.load();
    expect(again.original(KEY)).toBe("192.0.2.1:51820");
  });

  it("refuses a state directory others can write, and never follows a symlink planted there", async () => {
    const dir = join(root, "shared");
    // A world-writable directory without the sticky bit: anyone may plant names in it.
    mkdirSync(dir);
    chmodSync(dir, 0o777);
    // Every name root could write there points at the precious file (the temporary name of the old
    // code was predictable: FILE.PID.tmp).
    symlinkSync(precious, join(dir, "wg0.endpoints.json"));
    symlinkSync(precious, join(dir, `wg0.endpoints.json.${process.pid}.tmp`));
    const err = await writeOnce(dir);
    expect(readFileSync(precious, "utf8")).toBe(ORIGINAL);
    expect(err).toMatchObject({ code: "unsafe-directory" });
    expect((err as Error).message).toContain(dir);
    expect((err as Error).message).toMatch(/writable by others/);
  });

  it("refuses a state directory owned by another user", async () => {
    const dir = join(root, "theirs");
    mkdirSync(dir, { mode: 0o755 });
    chownSync(dir, NOBODY, NOBODY);
    const err = await writeOnce(dir);
    expect(err).toMatchObject({ code: "unsafe-directory" });
    expect((err as Error).message).toMatch(new RegExp(`${dir}.*owned by uid ${NOBODY}`));
    const loading = new EndpointState(dir, "wg0").load();
    await expect(loading).rejects.toMatchObject({ code: "unsafe-directory" });
  });

  it("accepts a sticky world-writable directory but not a symlinked state file in it", async () => {
    const dir = join(root, "sticky");
    mkdirSync(dir);
    chmodSync(dir, 0o1777);
    symlinkSync(precious, join(dir, "wg0.endpoints.json"));
    const state = new EndpointState(dir, "wg0");
    const err = await state.load().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "state-unreadable" });
    expect((err as Error).message).toMatch(/symbolic link/);
    expect((err as Error).message).not.toContain("secret line");
  });

  it("never quotes a state file that is not JSON", async () => {
    mkdirSync(stateDir, { mode: 0o700 });
    writeFileSync(join(stateDir, "wg0.endpoints.json"), ORIGINAL, { mode: 0o600 });
    const err = await new EndpointState(stateDir, "wg0").load().then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toMatchObject({ code: "state-unreadable" });
    expect((err as Error).message).toMatch(/not valid JSON/);
    expect(JSON.stringify(err)).not.toContain("secret");
    expect(String((err as Error).message)).not.toContain("a secret");
    expect(String((err as Error & { cause?: unknown }).cause ?? "")).not.toContain("a secret");
  });
});
