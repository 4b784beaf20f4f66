// The UDP sockets a process tree holds in its namespace, as `ss -uanp` lists them: tests check that a
// dormant peer's ICE sockets are closed.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { processTree } from "./process-tree.js";

const execFileAsync = promisify(execFile);

/** The local address:port of every UDP socket held by `pid` or a process below it, in `ns`. */
export async function udpSocketsOf(ns: string, pid: number): Promise<string[]> {
  const tree = processTree(pid);
  const { stdout } = await execFileAsync("ip", ["netns", "exec", ns, "ss", "-uanpH"]);
  const sockets: string[] = [];
  for (const line of stdout.split("\n")) {
    const owners = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    if (!owners.some((p) => tree.has(p))) continue;
    const local = line.trim().split(/\s+/)[3];
    if (local) sockets.push(local);
  }
  return sockets;
}
