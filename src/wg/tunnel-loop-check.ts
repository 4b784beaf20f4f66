// Tells where Tunnelbore's datagrams to a peer would be routed into the very interface they are meant to
// reach the peer for, which no mark prevents: the interface has no fwmark (or Tunnelbore cannot carry
// it) while routes send the remote into the tunnel, or a route for the remote through the interface
// lies where the marked lookup finds it too (AllowedIPs that cover the peer's own endpoint put wg-quick's
// route for it in the main table). The kernel's own lookup answers (`ip route get ADDR mark M`, one
// `ip -batch` for every peer due), when a path's remote changes and when routes, rules or the mark do.
// A peer is logged when it starts and stops looping, and status shows it meanwhile.
import { spawn } from "node:child_process";
import { isIP } from "node:net";
import type { Logger } from "../log.js";
import { formatMark } from "./tunnel-bypass.js";

export interface RouteQuery {
  address: string;
  /** The mark the lookup is made with (0: none). */
  mark: number;
}

/** What the kernel answered for one query: the destination as it printed it, and the interface. */
export interface RouteAnswer {
  dst: string;
  dev: string | null;
}

export type RouteLookup = (queries: RouteQuery[]) => Promise<RouteAnswer[]>;

export interface TunnelLoopCheckOptions {
  interfaceName: string;
  logger: Logger;
  /** The mark Tunnelbore's sockets carry now (0: none). */
  mark: () => number;
  /** The kernel's route lookup (default `ip -j -batch -`); tests give their own. */
  lookup?: RouteLookup;
}

/** The address of "ip:port" or "[ipv6]:port", in one spelling; null for anything else ("unresolved"). */
export function remoteAddress(remote: string): string | null {
  const m = /^\[([^\]]+)\]:\d+$/.exec(remote) ?? /^([^:]+):\d+$/.exec(remote);
  const address = m?.[1];
  return address && isIP(address) ? canonicalAddress(address) : null;
}

/** One spelling per address, as `ip` prints it (IPv6 compressed, lower case). */
export function canonicalAddress(address: string): string {
  return isIP(address) === 6 ? new URL(`http://[${address}]/`).hostname.slice(1, -1) : address;
}

/** Parses `ip -j route get` output (one JSON array a line, as `-batch` prints it). */
export function parseRouteAnswers(stdout: string): RouteAnswer[] {
  const answers: RouteAnswer[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("[")) continue;
    try {
      for (const entry of JSON.parse(line) as Array<{ dst?: unknown; dev?: unknown }>) {
        if (typeof entry.dst !== "string") continue;
        answers.push({
          dst: canonicalAddress(entry.dst),
          dev: typeof entry.dev === "string" ? entry.dev : null,
        });
      }
    } catch {
      // not an answer
    }
  }
  return answers;
}

/** `ip -j -force -batch -`: every lookup in one process; a failed one (no route) just answers nothing. */
export const ipRouteLookup: RouteLookup = (queries) =>
  new Promise((resolve, reject) => {
    const child = spawn("ip", ["-j", "-force", "-batch", "-"], { stdio: ["pipe", "pipe", "ignore"] });
    let out = "";
    child.stdout.on("data", (chunk: Buffer) => {
      out += chunk.toString();
    });
    child.on("error", reject);
    child.on("close", () => resolve(parseRouteAnswers(out)));
    child.stdin.end(
      queries.map((q) => `route get ${q.address}${q.mark ? ` mark ${q.mark}` : ""}\n`).join(""),
    );
  });

export class TunnelLoopCheck {
  private readonly log: Logger;
  private readonly lookup: RouteLookup;
  private remotes = new Map<string, string | null>();
  /** What each peer was last checked with: "address|mark|generation". */
  private readonly checked = new Map<string, string>();
  /** Peers whose remote routes into the interface, and that remote's address. */
  private readonly looping = new Map<string, string>();
  /** Bumped when routes or rules changed: every peer is checked again. */
  private generation = 0;
  /** Peers to check again although their remote did not change (a route for it changed: `recheck`). */
  private readonly stale = new Set<string>();
  private running = false;
  private again = false;
  private closed = false;

  constructor(private readonly options: TunnelLoopCheckOptions) {
    this.log = options.logger;
    this.lookup = options.lookup ?? ipRouteLookup;
  }

  /** The peers' path remotes ("ip:port", or null without a path); those that changed are checked. */
  update(remotes: Map<string, string | null>): void {
    this.remotes = remotes;
    void this.run();
  }

  /** Routes or rules changed: every peer is checked again. */
  invalidate(): void {
    this.generation++;
    void this.run();
  }

  /** Routes for these peers' remotes changed (and nothing else did): only they are checked again. */
  recheck(peers: Iterable<string>): void {
    for (const key of peers) this.stale.add(key);
    if (this.stale.size > 0) void this.run();
  }

  /** The remote address of the peer's path when it routes into the interface, else null. */
  of(publicKey: string): string | null {
    return this.looping.get(publicKey) ?? null;
  }

  /** Resolves when no check runs or is due (tests). */
  async settled(): Promise<void> {
    while (this.running) await new Promise((resolve) => setImmediate(resolve));
  }

  close(): void {
    this.closed = true;
  }

  /** One check at a time; a request meanwhile runs after it. */
  private async run(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        await this.check();
      } while (this.again && !this.closed);
    } catch (err) {
      this.log.debug({ err }, "cannot check routes of peers' remotes");
    } finally {
      this.running = false;
    }
  }

  private async check(): Promise<void> {
    const mark = this.options.mark();
    const generation = this.generation;
    for (const key of [...this.checked.keys(), ...this.stale]) {
      if (!this.remotes.has(key)) this.forget(key);
    }
    const due = new Map<string, string>();
    for (const [key, remote] of this.remotes) {
      const address = remote === null ? null : remoteAddress(remote);
      if (address === null) {
        this.forget(key);
        continue;
      }
      if (this.stale.has(key) || this.checked.get(key) !== `${address}|${mark}|${generation}`)
        due.set(key, address);
    }
    // A recheck asked while this lookup runs is kept for the next round.
    for (const key of due.keys()) this.stale.delete(key);
    if (due.size === 0) return;
    const answers = await this.lookup([...new Set(due.values())].map((address) => ({ address, mark })));
    if (this.closed) return;
    const intoTunnel = new Set(answers.filter((a) => a.dev === this.options.interfaceName).map((a) => a.dst));
    for (const [key, address] of due) {
      this.checked.set(key, `${address}|${mark}|${generation}`);
      if (intoTunnel.has(address)) this.startLooping(key, address, mark);
      else this.stopLooping(key);
    }
  }

  private startLooping(key: string, address: string, mark: number): void {
    if (this.looping.get(key) === address) return;
    this.looping.set(key, address);
    this.log.warn(
      {
        peer: key,
        remote: address,
        interface: this.options.interfaceName,
        mark: mark ? formatMark(mark) : "none",
      },
      "Tunnelbore's datagrams to the peer would be routed into the tunnel it serves (no mark it can carry prevents it): route the remote outside the tunnel, e.g. leave it out of AllowedIPs",
    );
  }

  private stopLooping(key: string): void {
    const address = this.looping.get(key);
    if (address === undefined) return;
    this.looping.delete(key);
    this.log.info({ peer: key, remote: address }, "the peer's remote no longer routes into the tunnel");
  }

  /** The peer is gone, or has no path: nothing to warn about. */
  private forget(key: string): void {
    this.checked.delete(key);
    this.looping.delete(key);
    this.stale.delete(key);
  }
}
