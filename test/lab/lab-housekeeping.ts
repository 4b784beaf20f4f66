// Housekeeping of the namespace labs: ending what runs inside a namespace, removing what a dead run
// left behind (namespaces are named tbt-l<pid>-<tag>-<role>), and whether this machine can run a lab.
import { readFile } from "node:fs/promises";
import { pidAlive } from "../../src/pid-alive.js";
import { run } from "./netns.js";

const STALE_RE = /^tbt-l(\d+)-[0-9a-f]{6}-/;

/** Ends every process inside a namespace by PID (SIGTERM, then SIGKILL after 2 s). */
export async function killNamespacePids(ns: string): Promise<void> {
  const pids = (await run("ip", ["netns", "pids", ns]).catch(() => ""))
    .split(/\s+/)
    .filter(Boolean)
    .map(Number)
    .filter((p) => Number.isInteger(p) && p > 1 && p !== process.pid);
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + 2000;
  while (pids.some(pidAlive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const pid of pids.filter(pidAlive)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/** Removes tbt-l<pid>-* namespaces whose creating process is dead (and the processes left inside them). */
export async function cleanupStale(): Promise<string[]> {
  const names = (await run("ip", ["netns", "list"]))
    .split("\n")
    .map((l) => l.split(" ")[0] ?? "")
    .filter((n) => {
      const m = STALE_RE.exec(n);
      return m !== null && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]));
    });
  for (const ns of names) {
    await killNamespacePids(ns);
    await run("ip", ["netns", "del", ns]).catch(() => undefined);
  }
  return names;
}

/** Whether this kernel/tooling can run the lab (root, netns, nft, bridge). */
export async function labSupported(): Promise<boolean> {
  try {
    const status = await readFile("/proc/self/status", "utf8");
    const eff = /CapEff:\s*([0-9a-f]+)/.exec(status)?.[1] ?? "0";
    // CAP_NET_ADMIN is bit 12, CAP_SYS_ADMIN (for `ip netns add`) bit 21.
    const caps = BigInt(`0x${eff}`);
    return (caps & (1n << 12n)) !== 0n && (caps & (1n << 21n)) !== 0n;
  } catch {
    return false;
  }
}
