// Tunnelbore killed with SIGKILL leaves no `ip monitor` behind: the kernel ends it with its parent
// (setpriv --pdeathsig). Without that it would live on until its next write to the closed pipe, which
// on a quiet host may be never. `ip monitor` only listens: this runs in the host's namespace safely.
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { childrenOf, isRunning } from "../lab/process-tree.js";
import { waitFor } from "../support/wait-for.js";

const CHILD = fileURLToPath(new URL("./address-watch-child.ts", import.meta.url));

describe("AddressWatch", () => {
  it("its ip monitor ends when the process that started it is killed with SIGKILL", async () => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const pid = child.pid ?? -1;
    let monitors: number[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && resolve());
        child.once("exit", (code) => reject(new Error(`child exited (${code})`)));
      });
      await waitFor(
        async () => {
          monitors = childrenOf(pid)
            .filter((p) => p.comm === "ip" || p.comm === "setpriv")
            .map((p) => p.pid);
          return monitors.length === 1;
        },
        { what: "ip monitor started", timeoutMs: 5000, intervalMs: 20 },
      );
      child.kill("SIGKILL");
      await new Promise((r) => child.once("exit", r));
      await waitFor(async () => monitors.every((m) => !isRunning(m)), {
        // At once, by the kernel; without pdeathsig it would wait for its next write, on a quiet host
        // for ever: the deadline only has to be well short of the test's timeout.
        what: "ip monitor gone",
        timeoutMs: 5000,
        intervalMs: 20,
      });
      expect(monitors.some(isRunning)).toBe(false);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
      // A failed run must not leave its orphan behind.
      for (const m of monitors.filter(isRunning)) process.kill(m, "SIGTERM");
    }
  });
});
