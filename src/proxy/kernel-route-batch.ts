import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { canonicalAddress } from "../wg/tunnel-loop-check.js";
import type { KernelRoute } from "./kernel-forwarder.js";

/** Lookups one `ip` process answers at most (its stdin, its JSON out). */
const MAX_BATCH = 4096;

interface Waiting {
  resolve: (route: KernelRoute | null) => void;
  reject: (err: Error) => void;
}

/**
 * `ip route get` for many remotes in one process (`ip -j -force -batch -`): the kernel fast path asks
 * for each path's route, and thousands of static paths come up at once on a hub (issue 16), where a
 * process per peer took seconds and thousands of processes at a time. Lookups asked in the same turn of
 * the event loop (and while one batch runs) go in one batch; a remote without a route answers null.
 */
export class KernelRouteBatcher {
  private waiting = new Map<string, Waiting[]>();
  private running = false;
  private scheduled = false;

  constructor(private readonly runBatch: (commands: string) => Promise<string> = ipBatch) {}

  /** Where the kernel sends datagrams to `remote` (an IP address), and from which source; null: no route. */
  route(remote: string): Promise<KernelRoute | null> {
    return new Promise((resolve, reject) => {
      const address = canonicalAddress(remote);
      const list = this.waiting.get(address);
      if (list) list.push({ resolve, reject });
      else this.waiting.set(address, [{ resolve, reject }]);
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.running) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private async flush(): Promise<void> {
    if (this.running || this.waiting.size === 0) return;
    this.running = true;
    const batch = [...this.waiting].slice(0, MAX_BATCH);
    for (const [address] of batch) this.waiting.delete(address);
    try {
      const stdout = await this.runBatch(batch.map(([address]) => `route get ${address}\n`).join(""));
      const routes = await this.parse(stdout);
      for (const [address, list] of batch) for (const w of list) w.resolve(routes.get(address) ?? null);
    } catch (err) {
      for (const [, list] of batch) for (const w of list) w.reject(err as Error);
    } finally {
      this.running = false;
      if (this.waiting.size > 0) this.schedule();
    }
  }

  /** One JSON array a line, one line per lookup that found a route. */
  private async parse(stdout: string): Promise<Map<string, KernelRoute>> {
    const routes = new Map<string, KernelRoute>();
    // Read once per interface and batch, never kept longer: a moved or recreated interface gets a new index.
    const ifindexes = new Map<string, number>();
    for (const line of stdout.split("\n")) {
      if (!line.startsWith("[")) continue;
      let entries: Array<{ dst?: unknown; dev?: unknown; prefsrc?: unknown }>;
      try {
        entries = JSON.parse(line);
      } catch {
        continue;
      }
      const [entry] = entries;
      if (
        typeof entry?.dst !== "string" ||
        typeof entry.dev !== "string" ||
        typeof entry.prefsrc !== "string"
      )
        continue;
      let ifindex = ifindexes.get(entry.dev);
      if (ifindex === undefined) {
        ifindex = Number((await readFile(`/sys/class/net/${entry.dev}/ifindex`, "utf8")).trim());
        ifindexes.set(entry.dev, ifindex);
      }
      routes.set(canonicalAddress(entry.dst), { dev: entry.dev, ifindex, source: entry.prefsrc });
    }
    return routes;
  }
}

/** `ip -j -force -batch -`: a failed lookup (no route) prints nothing and the rest go on. */
function ipBatch(commands: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("ip", ["-j", "-force", "-batch", "-"], { stdio: ["pipe", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", () => resolve(out));
    child.stdin.end(commands);
  });
}
