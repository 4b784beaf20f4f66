// CPU accounting of processes and of the whole machine from /proc, for the benchmarks that watch
// real processes (Tunnelbore, wireguard-go) while they carry traffic.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

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
  /** Per watched process: % of one core; machine: % of all cores busy. */
  stop(): { processes: number[]; machine: number };
}

/** Starts watching the CPU of `pids` and of the machine; `stop` reports the use since. */
export function startCpuProbe(pids: number[]): CpuProbe {
  const t0 = performance.now();
  const p0 = pids.map((pid) => processCpuSeconds(pid));
  const m0 = machineTicks();
  return {
    stop() {
      const seconds = (performance.now() - t0) / 1000;
      const m1 = machineTicks();
      return {
        processes: pids.map((pid, i) => (100 * (processCpuSeconds(pid) - p0[i]!)) / seconds),
        machine: (100 * (m1.busy - m0.busy)) / Math.max(1, m1.total - m0.total),
      };
    },
  };
}
