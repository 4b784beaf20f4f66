// The processes a PID started, read from /proc: tests check that nothing Tunnelbore spawned outlives it.
import { readdirSync, readFileSync } from "node:fs";

export interface ProcessEntry {
  pid: number;
  comm: string;
  /** The state letter of /proc/PID/stat: R, S, D, Z (zombie, already ended), ... */
  state: string;
  ppid: number;
}

function readStat(pid: number): ProcessEntry | null {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null; // gone
  }
  // comm is in parentheses and may hold spaces or ")": the fields after the last ")" are fixed.
  const close = stat.lastIndexOf(")");
  const [state = "", ppid = ""] = stat.slice(close + 2).split(" ");
  return { pid, comm: stat.slice(stat.indexOf("(") + 1, close), state, ppid: Number(ppid) };
}

/** The live children of `parent`. */
export function childrenOf(parent: number): ProcessEntry[] {
  return readdirSync("/proc")
    .filter((name) => /^\d+$/.test(name))
    .map((name) => readStat(Number(name)))
    .filter((p): p is ProcessEntry => p !== null && p.ppid === parent && p.state !== "Z");
}

/** `pid` and every process below it. */
export function processTree(pid: number): Set<number> {
  const tree = new Set([pid]);
  for (const child of childrenOf(pid)) for (const p of processTree(child.pid)) tree.add(p);
  return tree;
}

/** Whether `pid` still runs (a zombie has ended; it only waits to be reaped). */
export function isRunning(pid: number): boolean {
  const p = readStat(pid);
  return p !== null && p.state !== "Z";
}
