// Watches the host's addresses and routes (`ip -o monitor link address route rule nexthop`, polling
// where that is unavailable), so that a network change restarts ICE at once instead of waiting for a path
// to fail: after roaming, every candidate gathered before is stale.
//
// A change is reported when the set of usable addresses (not loopback, not IPv6 link-local, not on an
// ignored interface such as the WireGuard one) or the default routes differ from what was last
// reported, or the host was without any usable address in between (a link that went down and up may
// now be on another network). Bursts of events (a move is a dozen) are debounced into one report, at
// most MAX_WAIT_MS after the first of them however steady the stream (`BoundedDebounce`).
//
// Route, rule and nexthop lines are reported apart ("routing"), with what they changed
// (`RoutingChanges`): the kernel fast path re-resolves only the entries whose remote is inside a changed
// prefix. Nexthop objects are watched where `ip nexthop` works (iproute2 and Linux 5.3 on).
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { createInterface } from "node:readline";
import { Backoff } from "../backoff.js";
import type { Logger } from "../log.js";
import { BoundedDebounce } from "./bounded-debounce.js";
import { parseDefaultRoutes, readDefaultRoutes, readIpState } from "./ip-state.js";
import { type MonitorLine, parseMonitorLine } from "./monitor-line.js";
import { type RoutingChange, RoutingChanges } from "./routing-changes.js";

export type { RoutingChange } from "./routing-changes.js";

const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p)) ?? null;

/** The longest the reads at start wait for `ip monitor` to listen. */
const LISTEN_WAIT_MS = 1000;

/** The latest a pending event is reported, however steadily more arrive (default). */
const MAX_WAIT_MS = 1000;

export interface AddressWatchOptions {
  /** Interfaces whose addresses and routes are not the host's network (a trailing * matches a prefix). */
  ignoreInterfaces: string[];
  /** The WireGuard interface: its link events are reported separately (it was recreated or removed). */
  wireguardInterface: string;
  logger: Logger;
  /** Quiet time after the last event before the state is compared (default 200 ms). */
  debounceMs?: number;
  /** The latest after the first pending event that it is reported, however steady the stream (default 1 s). */
  maxWaitMs?: number;
  /** Polling interval when `ip monitor` cannot run (default 2000 ms). */
  pollMs?: number;
}

export interface AddressWatchEvents {
  /** The host's usable addresses or default routes changed. */
  change: [summary: NetworkSummary];
  /** The WireGuard interface appeared, disappeared or changed state. */
  "wireguard-link": [];
  /** A route (any table, any interface) or a routing rule changed: the prefixes, or everything. */
  routing: [change: RoutingChange];
}

export interface NetworkSummary {
  addresses: string[];
  defaultRoutes: string[];
}

/**
 * Whether /proc/net/netlink (`table`) shows a route netlink socket of process `pid` that has joined
 * groups: `ip monitor`'s, which the kernel numbers by its process ID (iproute2 binds with port 0).
 */
export function routeListenerJoined(table: string, pid: number): boolean {
  for (const line of table.split("\n")) {
    const [, protocol, port, groups] = line.trim().split(/\s+/);
    if (protocol === "0" && Number(port) === pid && groups !== undefined && Number.parseInt(groups, 16) !== 0)
      return true;
  }
  return false;
}

/** The interface a line of `ip -o monitor link address route` is about, or null. */
export function monitorLineInterface(line: string): string | null {
  const text = line.startsWith("Deleted ") ? line.slice(8) : line;
  // link and address lines: "3: eth0@if5: <...>" / "3: eth0    inet 10.0.0.1/24 ..."
  const numbered = /^\d+: ([^\s:@]+)/.exec(text);
  if (numbered) return numbered[1] ?? null;
  // route lines: "... dev eth0 ..."
  const dev = /\bdev ([^\s]+)/.exec(text);
  return dev?.[1] ?? null;
}

/** Whether a line of `ip -o monitor` is about a route or a rule ("32765:\tnot from all ..."), not a link or address. */
export function isRouteOrRuleLine(line: string): boolean {
  return !/^(Deleted )?\d+: /.test(line);
}

/** Whether `name` matches one of `patterns` (exact, or a prefix with a trailing *). */
export function matchesInterface(name: string, patterns: string[]): boolean {
  return patterns.some((p) => (p.endsWith("*") ? name.startsWith(p.slice(0, -1)) : name === p));
}

/** The default routes as the summary keeps them ("GW dev IF", or "direct dev IF"), ignored interfaces left out. */
export function defaultRouteSummary(text: string, ignore: string[]): string[] {
  return parseDefaultRoutes(text)
    .filter((r) => !matchesInterface(r.device, ignore))
    .map((r) => `${r.via ?? "direct"} dev ${r.device}`)
    .sort();
}

export function summaryKey(summary: NetworkSummary): string {
  return `${summary.addresses.join(",")}|${summary.defaultRoutes.join(",")}`;
}

/**
 * Whether the line may change what `summary` reads: a link, an address, a default (or unparsed) route, a
 * nexthop removed or a group changed (a default route through it may have gone or moved without a line).
 */
function affectsSummary(line: MonitorLine): boolean {
  if (line.kind === "rule") return false;
  if (line.kind === "nexthop") return line.deleted || line.group;
  if (line.kind !== "route") return true;
  return line.prefix === null || line.prefix.length === 0;
}

/** Tells `routing` the links, the routes through them and the addresses there are now, as far as read. */
async function knowState(routing: RoutingChanges): Promise<void> {
  const [links, addresses, routes4, routes6] = await Promise.all([
    readIpState(["link", "show"]),
    readIpState(["address", "show"]),
    readIpState(["-4", "route", "show", "table", "all"]),
    readIpState(["-6", "route", "show", "table", "all"]),
  ]);
  if (links) routing.knowLinks(links, routes4 && routes6 ? [...routes4, ...routes6] : null);
  if (addresses) routing.knowAddresses(addresses);
}

export class AddressWatch extends EventEmitter<AddressWatchEvents> {
  private readonly log: Logger;
  private readonly ignore: string[];
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private child: ChildProcess | null = null;
  private readonly debounce: BoundedDebounce;
  private readonly wgDebounce: BoundedDebounce;
  private readonly routingDebounce: BoundedDebounce;
  private readonly routing = new RoutingChanges();
  /** ip monitor has run before: a new one follows lines the last one may have missed. */
  private monitorRan = false;
  /** `ip monitor` is asked for nexthop objects too (the kernel and iproute2 know them). */
  private watchNexthops = false;
  private poller: NodeJS.Timeout | null = null;
  private respawn: NodeJS.Timeout | null = null;
  private readonly respawnBackoff = new Backoff({ initialMs: 1000, maxMs: 30_000 });
  private lastReported = "";
  private sawEmpty = false;
  private checking: Promise<void> | null = null;
  private recheck = false;
  private stopped = false;

  constructor(private readonly options: AddressWatchOptions) {
    super();
    this.log = options.logger;
    this.ignore = ["lo", options.wireguardInterface, ...options.ignoreInterfaces];
    this.debounceMs = options.debounceMs ?? 200;
    this.pollMs = options.pollMs ?? 2000;
    const maxWaitMs = Math.max(this.debounceMs, options.maxWaitMs ?? MAX_WAIT_MS);
    this.debounce = new BoundedDebounce(() => this.check(), this.debounceMs, maxWaitMs);
    this.wgDebounce = new BoundedDebounce(() => this.emit("wireguard-link"), this.debounceMs, maxWaitMs);
    this.routingDebounce = new BoundedDebounce(() => this.reportRouting(), this.debounceMs, maxWaitMs);
  }

  /** Takes the current state as the baseline and starts watching. */
  async start(): Promise<void> {
    const [summary, nexthops] = await Promise.all([this.summary(), readIpState(["nexthop", "show"])]);
    this.lastReported = summaryKey(summary);
    this.sawEmpty = summary.addresses.length === 0;
    this.watchNexthops = nexthops !== null;
    // The monitor first, then the reads: what changes in between is in the reads or in its lines.
    this.spawnMonitor();
    await this.knowStateOnceListening();
  }

  stop(): void {
    this.stopped = true;
    for (const d of [this.debounce, this.wgDebounce, this.routingDebounce]) d.cancel();
    if (this.respawn) clearTimeout(this.respawn);
    if (this.poller) clearInterval(this.poller);
    const child = this.child;
    this.child = null;
    if (child && child.exitCode === null) child.kill("SIGTERM");
  }

  /** The usable addresses and default routes now. */
  async summary(): Promise<NetworkSummary> {
    const addresses: string[] = [];
    for (const [name, list] of Object.entries(networkInterfaces())) {
      if (matchesInterface(name, this.ignore)) continue;
      for (const a of list ?? []) {
        if (a.internal || (a.family === "IPv6" && a.address.toLowerCase().startsWith("fe80"))) continue;
        addresses.push(`${name}/${a.address}`);
      }
    }
    let routes: string[] = [];
    try {
      routes = defaultRouteSummary(await readDefaultRoutes(), this.ignore);
    } catch (err) {
      this.log.debug({ err }, "cannot read default routes");
    }
    return { addresses: addresses.sort(), defaultRoutes: routes };
  }

  private spawnMonitor(): void {
    if (this.stopped) return;
    const restarted = this.monitorRan;
    if (restarted) {
      // Whatever changed while none ran was not seen: every entry, and the links and addresses read
      // anew once the new monitor runs.
      this.routing.forgetLinks("ip monitor restarted");
      this.routingDebounce.poke();
    }
    this.monitorRan = true;
    let child: ChildProcess;
    try {
      const monitor = ["ip", "-o", "monitor", "link", "address", "route", "rule"];
      // An `ip` or a kernel without nexthop objects would refuse the whole monitor.
      if (this.watchNexthops) monitor.push("nexthop");
      // setpriv (util-linux) makes the kernel end `ip monitor` when we die, even by SIGKILL; without
      // it the orphan would live on until its next write to the closed pipe.
      const [command = "ip", ...args] = SETPRIV ? [SETPRIV, "--pdeathsig", "TERM", ...monitor] : monitor;
      child = spawn(command, args, { stdio: ["ignore", "pipe", "ignore"] });
    } catch (err) {
      this.fallBackToPolling(err);
      return;
    }
    this.child = child;
    child.on("error", (err) => this.fallBackToPolling(err));
    child.on("exit", () => {
      if (this.child !== child || this.stopped) return;
      this.child = null;
      // Restart it (a few times quickly, then slowly), polling meanwhile.
      this.fallBackToPolling(new Error("ip monitor exited"));
      const delay = this.respawnBackoff.next();
      this.respawn = setTimeout(() => {
        this.respawn = null;
        this.spawnMonitor();
      }, delay);
      this.respawn.unref();
    });
    if (child.stdout) createInterface({ input: child.stdout }).on("line", (line) => this.onLine(line));
    child.unref();
    if (restarted) void this.knowStateOnceListening();
  }

  /**
   * Reads the state once the monitor has joined its netlink groups (or, at the latest, after
   * LISTEN_WAIT_MS): a change between a read and the join would be in neither.
   */
  private async knowStateOnceListening(): Promise<void> {
    const pid = this.child?.pid;
    const deadline = Date.now() + LISTEN_WAIT_MS;
    while (pid !== undefined && Date.now() < deadline && !this.stopped) {
      const table = await readFile("/proc/net/netlink", "utf8").catch(() => null);
      if (table === null || routeListenerJoined(table, pid)) break;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await knowState(this.routing);
  }

  private fallBackToPolling(err: unknown): void {
    if (this.poller || this.stopped) return;
    this.log.debug({ err }, "watching addresses by polling");
    this.poller = setInterval(() => this.check(), this.pollMs);
    this.poller.unref();
  }

  private onLine(line: string): void {
    if (this.poller) {
      // ip monitor works (again): events replace polling.
      clearInterval(this.poller);
      this.poller = null;
      this.respawnBackoff.reset();
    }
    const parsed = parseMonitorLine(line);
    if (this.routing.add(parsed)) this.routingDebounce.poke();
    const name = monitorLineInterface(line);
    if (name === this.options.wireguardInterface) {
      this.wgDebounce.poke();
      return;
    }
    if (name !== null && matchesInterface(name, this.ignore)) return;
    // Addresses and default routes are what `check` compares: another route or a rule cannot change
    // them (a hub's stream of pod routes must not run `ip route show default` twice a second).
    if (affectsSummary(parsed)) this.debounce.poke();
  }

  private reportRouting(): void {
    const change = this.routing.take();
    if (change) this.emit("routing", change);
  }

  /** Compares the state with the last one reported; one check at a time, the latest event wins. */
  private check(): void {
    if (this.checking) {
      this.recheck = true;
      return;
    }
    this.checking = (async () => {
      try {
        const summary = await this.summary();
        if (this.stopped) return;
        if (summary.addresses.length === 0) {
          this.sawEmpty = true;
          return;
        }
        const key = summaryKey(summary);
        if (key === this.lastReported && !this.sawEmpty) return;
        this.lastReported = key;
        this.sawEmpty = false;
        this.emit("change", summary);
      } catch (err) {
        this.log.warn({ err }, "checking addresses failed");
      } finally {
        this.checking = null;
        if (this.recheck && !this.stopped) {
          this.recheck = false;
          this.check();
        }
      }
    })();
  }
}
