// The worker's seccomp filter (src/syscall-filter.ts, native/syscall_filter.c) on a real
// process: every call it names fails with EPERM (clone3 with ENOSYS, so that glibc uses clone, whose
// namespace flags it can see), the same calls answer otherwise without it, and what the worker does
// still works: files, UDP, threads, `ip` under setpriv. Every thread carries it.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { constants } from "node:os";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { cHelper } from "../lab/c-helper.js";

const execFileAsync = promisify(execFile);
const CHILD = fileURLToPath(new URL("./syscall-filter-child.ts", import.meta.url));
const PROBE = fileURLToPath(new URL("../lab/syscall-probe.c", import.meta.url));
const ADDON = fileURLToPath(new URL("../../native/build/Release/syscall_filter.node", import.meta.url));
const { EPERM, ENOSYS } = constants.errno;
const supported = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");

async function probeCalls(probe: string): Promise<Record<string, number>> {
  const { stdout } = await execFileAsync(probe);
  return Object.fromEntries(
    stdout
      .trim()
      .split("\n")
      .map((line) => [line.split(" ")[0], Number(line.split(" ")[1])]),
  );
}

describe.skipIf(!supported)("the worker's syscall filter", () => {
  it("refuses what it names, leaves the rest, on every thread and what the process starts", async () => {
    // CI builds the addons (TBT_NATIVE_REQUIRED): missing here is a failure, not a skip.
    expect(existsSync(ADDON)).toBe(true);
    const probe = await cHelper(PROBE);
    const { stdout } = await execFileAsync(process.execPath, ["--import", "tsx", CHILD, probe], {
      timeout: 30_000,
    });
    const seen = JSON.parse(stdout) as {
      filter: { on: boolean; reason: string | null };
      file: boolean;
      udp: boolean;
      thread: boolean;
      ip: boolean;
      calls: Record<string, number>;
      threads: number[];
    };
    expect(seen.filter).toEqual({ on: true, reason: null });
    expect({ file: seen.file, udp: seen.udp, thread: seen.thread, ip: seen.ip }).toEqual({
      file: true,
      udp: true,
      thread: true,
      ip: true,
    });
    expect(seen.threads.length).toBeGreaterThan(4);
    expect(seen.threads.every((mode) => mode === 2)).toBe(true);

    const without = await probeCalls(probe);
    const refused = Object.keys(without).filter((name) => !["clone", "clone3", "getpid"].includes(name));
    expect(refused.length).toBeGreaterThanOrEqual(14);
    for (const name of refused) {
      expect({ name, errno: seen.calls[name] }).toEqual({ name, errno: EPERM });
      // Let through, each answers otherwise (root: it works, or fails on its arguments), except
      // io_uring where the kernel refuses it to everyone (kernel.io_uring_disabled=2).
      if (name !== "io_uring_setup")
        expect({ name, errno: without[name] }).not.toEqual({ name, errno: EPERM });
    }
    expect(seen.calls.clone3).toBe(ENOSYS);
    expect(seen.calls.clone).toBe(0);
    expect(seen.calls.getpid).toBe(0);
    expect(without["clone-newuser"]).toBe(0);
  }, 60_000);
});
