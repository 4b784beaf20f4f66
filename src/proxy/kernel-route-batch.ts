import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { isIP } from "node:net";
import { canonicalAddress } from "../wg/tunnel-loop-check.js";
import type { KernelRoute } from "./kernel-forwarder.js";

/** The fields of an `ip -j route get` answer that tell the next hop. */
export interface RouteAnswer {
  type?: unknown;
  dst?: unknown;
  gateway?: unknown;
  via?: unknown;
}

/**
 * The next hop of `ip -j route get DST`'s answer: its gateway, or DST itself when the route has none
 * (on the link). Undefined when that cannot be told for sure: not a unicast route (local, ...), a
 * gateway of the other family (RFC 5549's `via inet6` on an IPv4 route), a scoped address.
 */
export function nextHopOf(answer: RouteAnswer): string | undefined {
  if (answer.type !== undefined && answer.type !== "unicast") return undefined;
  if (typeof answer.dst !== "string") return undefined;
  const family = isIP(answer.dst);
  let hop: unknown = answer.dst;
  if (answer.gateway !== undefined) hop = answer.gateway;
  else if (answer.via !== undefined) return undefined;
  if (typeof hop !== "string" || hop.includes("%") || family === 0 || isIP(hop) !== family) return undefined;
  return hop === "0.0.0.0" || /^[0:]+$/.test(hop) ? undefined : hop;
}

/** ARPHRD_ETHER: a link whose neighbours have link-layer addresses (Ethernet, veth, bridge, bond, VLAN). */
const ARPHRD_ETHER = 1;

/** An interface's index, and whether it is an Ethernet-type link (/sys/class/net/DEV/type). */
export interface LinkInfo {
  ifindex: number;
  ethernet: boolean;
}

export async function readLink(dev: string): Promise<LinkInfo> {
  const read = async (file: string) =>
    Number((await readFile(`/sys/class/net/${dev}/${file}`, "utf8")).trim());
  const [ifindex, type] = await Promise.all([read("ifindex"), read("type")]);
  return { ifindex, ethernet: type === ARPHRD_ETHER };
}

/**
 * The route as the fast path uses it. The next hop only on an Ethernet-type link: there the redirect
 * needs nothing but the neighbour; other devices (tunnels such as sit, ip6tnl, WireGuard) may want the
 * route in their transmit, which the kernel's own lookup sets and a given next hop does not.
 */
export function kernelRouteOf(
  answer: RouteAnswer & { dev: string; prefsrc: string },
  link: LinkInfo,
): KernelRoute {
  const nextHop = link.ethernet ? nextHopOf(answer) : undefined;
  return { dev: answer.dev, ifindex: link.ifindex, source: answer.prefsrc, ...(nextHop ? { nextHop } : {}) };
}

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

  constructor(
    private readonly runBatch: (commands: string) => Promise<string> = ipBatch,
    private readonly linkOf: (dev: string) => Promise<LinkInfo> = readLink,
  ) {}

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
    const links = new Map<string, LinkInfo>();
    for (const line of stdout.split("\n")) {
      if (!line.startsWith("[")) continue;
      let entries: Array<RouteAnswer & { dev?: unknown; prefsrc?: unknown }>;
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
      let link = links.get(entry.dev);
      if (link === undefined) {
        link = await this.linkOf(entry.dev);
        links.set(entry.dev, link);
      }
      routes.set(
        canonicalAddress(entry.dst),
        kernelRouteOf({ ...entry, dev: entry.dev, prefsrc: entry.prefsrc }, link),
      );
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
