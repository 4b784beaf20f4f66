// The worker's seccomp filter (src/syscall-filter.ts, native/syscall_filter.c) on a real
// process: every call it names fails with EPERM (clone3 with ENOSYS, so that glibc uses clone, whose
// namespace flags it can see), the same calls answer otherwise without it, and what the worker does
// still works: files, UDP, threads, `ip` under setpriv. Every thread carries it. Under a filter that
// refuses seccomp() itself (systemd's @system-service does), the process runs on and says why.
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
const SECCOMP_DENIED = fileURLToPath(new URL("../lab/seccomp-denied.c", import.meta.url));
const ADDON = fileURLToPath(new URL("../../native/build/Release/syscall_filter.node", import.meta.url));
const { EPERM, ENOSYS } = constants.errno;
const supported = process.platform === "linux" && (process.arch === "x64" || process.arch === "arm64");

interface ChildReport {
  filter: { on: boolean; reason: string | null };
  file: boolean;
  udp: boolean;
  thread: boolean;
  ip: boolean;
  calls: Record<string, number>;
  threads: number[];
}

/** The child (syscall-filter-child.ts), run as `prefix... node CHILD PROBE`. */
async function runChild(prefix: string[]): Promise<ChildReport> {
  const probe = await cHelper(PROBE);
  const [command = process.execPath, ...args] = [
    ...prefix,
    process.execPath,
    "--import",
    "tsx",
    CHILD,
    probe,
  ];
  const { stdout } = await execFileAsync(command, args, { timeout: 30_000 });
  return JSON.parse(stdout) as ChildReport;
}

async function probeCalls(probe: string): Promise<Record<string, number>> {
  const { stdout } = await execFileAsync(probe);
  return Object.fromEntries(
    stdout
      .trim()
      .split("\n")
      .map((line) => [line.split(" ")[0], Number(line.split(" ")[1])]),
  );
}

describe.skipIf(!supported)("the syscall filter of the worker and the introduction server", () => {
  it("refuses what it names, leaves the rest, on every thread and what the process starts", async () => {
    // Built at install (npm ci) and by npm run build: missing here is a failed build, not a skip.
    expect(existsSync(ADDON)).toBe(true);
    const probe = await cHelper(PROBE);
    const seen = await runChild([]);
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

  it("under a filter that refuses seccomp() (systemd's @system-service), runs on without it and says why", async () => {
    const seen = await runChild([await cHelper(SECCOMP_DENIED)]);
    expect(seen.filter.on).toBe(false);
    expect(seen.filter.reason).toMatch(/^seccomp\(\) refused \(EPERM\): a filter around this process/);
    expect([seen.file, seen.udp, seen.thread, seen.ip]).toEqual([true, true, true, true]);
    // Only the outer filter's own refusal: the calls ours names are let through.
    expect(seen.calls["clone-newuser"]).toBe(0);
  }, 60_000);
});
