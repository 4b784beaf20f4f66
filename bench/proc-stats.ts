// CPU accounting of processes and of the whole machine from /proc, for the benchmarks that watch
// real processes (Tunnelbore, wireguard-go) while they carry traffic.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { processTree } from "../test/lab/process-tree.js";

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second, in which /proc reports process times (USER_HZ, nearly always 100). */
function clockTicks(): number {
  ticksPerSecond ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  return ticksPerSecond;
}

/**
 * utime + stime of a process, in seconds (fields 14 and 15 of /proc/PID/stat); with `children`, also
 * those of the children it ran and reaped (fields 16 and 17: a `wg` run every poll is its cost too).
 */
export function processCpuSeconds(pid: number, children = false): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const own = Number(fields[11]) + Number(fields[12]);
  return (children ? own + Number(fields[13]) + Number(fields[14]) : own) / clockTicks();
}

/**
 * Tunnelbore's processes below `root` (the PID `ip netns exec` ran): the privileged parent and its
 * unprivileged worker, which forwards in user space, so a probe of the parent alone misses the data
 * plane. Not the `wg` or `ip` they run meanwhile (those count as reaped children of the parent).
 */
export function tunnelboreProcesses(root: number): number[] {
  return [...processTree(root)].filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/comm`, "utf8").trim() === "node";
    } catch {
      return false; // gone
    }
  });
}

/** utime + stime of a group of processes with their reaped children, in seconds. */
export function groupCpuSeconds(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + processCpuSeconds(pid, true), 0);
}

/** Resident memory of a process in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

/** Busy and total jiffies of the whole machine. */
function machineTicks(): { busy: number; total: number } {
  const line = readFileSync("/proc/stat", "utf8").split("\n")[0]!;
  const v = line.trim().split(/\s+/).slice(1).map(Number);
  const total = v.reduce((s, x) => s + x, 0);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  return { busy: total - idle, total };
}

export interface CpuProbe {
  /** Per watched process (or group): % of one core; machine: % of all cores busy. */
  stop(): { processes: number[]; machine: number };
}

/**
 * Starts watching the CPU of `watched` and of the machine; `stop` reports the use since. An entry is
 * one process, or a group summed with its reaped children (`tunnelboreProcesses`: parent and worker).
 */
export function startCpuProbe(watched: Array<number | number[]>): CpuProbe {
  const cpu = (w: number | number[]) => (typeof w === "number" ? processCpuSeconds(w) : groupCpuSeconds(w));
  const t0 = performance.now();
  const p0 = watched.map(cpu);
  const m0 = machineTicks();
  return {
    stop() {
      const seconds = (performance.now() - t0) / 1000;
      const m1 = machineTicks();
      return {
        processes: watched.map((w, i) => (100 * (cpu(w) - p0[i]!)) / seconds),
        machine: (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total),
      };
    },
  };
}
