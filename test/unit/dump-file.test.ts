import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DumpFile } from "../../src/wg/dump-file.js";

// A `wg` of the test's own, first on PATH: prints what $TBT_FAKE_WG_OUT holds, or fails as told.
describe("DumpFile", () => {
  let dir: string;
  const path = process.env.PATH;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tbt-dump-file-"));
    const script = join(dir, "wg");
    writeFileSync(
      script,
      '#!/bin/sh\nif [ -n "$TBT_FAKE_WG_FAIL" ]; then echo "$TBT_FAKE_WG_FAIL" >&2; exit 1; fi\ncat "$TBT_FAKE_WG_OUT"\n',
    );
    chmodSync(script, 0o755);
    process.env.PATH = `${dir}:${path}`;
    process.env.TBT_FAKE_WG_OUT = join(dir, "out");
    delete process.env.TBT_FAKE_WG_FAIL;
  });

  afterEach(() => {
    process.env.PATH = path;
    delete process.env.TBT_FAKE_WG_OUT;
    delete process.env.TBT_FAKE_WG_FAIL;
    rmSync(dir, { recursive: true, force: true });
  });

  const output = (text: string | Buffer) => writeFileSync(join(dir, "out"), text);

  it("reads the whole output, larger than its first buffer, and a shorter one after it", async () => {
    const file = new DumpFile();
    const big = Buffer.alloc(300_000, "a");
    big.write("head\n");
    output(big);
    expect((await file.read("wg0")).equals(big)).toBe(true);
    output("short\n");
    expect((await file.read("wg0")).toString()).toBe("short\n");
    output("");
    expect((await file.read("wg0")).length).toBe(0);
  });

  it("leaves no file behind", async () => {
    const { mkdirSync, readdirSync } = await import("node:fs");
    const tmp = join(dir, "tmp");
    mkdirSync(tmp);
    const before = process.env.TMPDIR;
    process.env.TMPDIR = tmp;
    try {
      output("x\n");
      await new DumpFile().read("wg0");
      expect(readdirSync(tmp)).toEqual([]);
    } finally {
      if (before === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = before;
    }
  });

  it("says what a failure means: a missing interface, a missing wg", async () => {
    process.env.TBT_FAKE_WG_FAIL = "Unable to access interface: No such device";
    await expect(new DumpFile().read("wg9")).rejects.toMatchObject({ code: "interface-missing" });
    process.env.PATH = dir.replace(/$/, "-nowhere");
    await expect(new DumpFile().read("wg9")).rejects.toMatchObject({ code: "wg-missing" });
  });
});
