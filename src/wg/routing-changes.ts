// What changed in routing since the last report, from `ip -o monitor` lines: the prefixes of the routes
// added, deleted or replaced (an `ip route get` answer can move only for destinations inside one, in
// whichever table), or everything, when a line may have moved answers it does not name: a rule, a route
// line that cannot be parsed, an address that came, went or changed flags (IPv4 drops the routes of a
// deleted address without a line; a deprecated one is no longer a preferred source), not one whose
// lifetimes alone were renewed (a router advertisement, every few minutes or seconds), and a link that
// goes down, comes up or goes away while routes may lead through it (IPv4 drops those without a line
// too). A link that appeared while watched carries no route until a route line names it
// (a route needs its device up, and says so): a Kubernetes pod's veth coming up moves no answer, and its
// going away moves only the answers inside the routes named through it since. A link there at the start
// carries the routes that named it when they were read (`ip -o route show table all`), and those since.
// Nexthop objects (`nhid N`, as FRR installs routes) are kept the same way: a removed one moves the
// routes through it (IPv4 drops them without a line), a group whose members changed the routes through
// the group (a member removed is announced as the group's line alone); one added or replaced moves
// nothing by itself (the kernel announces again the routes through it and the groups holding it).
import type { MonitorLine } from "./monitor-line.js";
import { prefixId, type RoutePrefix } from "./route-prefix.js";

export type RoutingChange = { all: true; reason: string } | { all: false; prefixes: RoutePrefix[] };

/** More distinct prefixes than this pending at once (a BGP session's table arriving): everything. */
const MAX_PREFIXES = 1024;
/** More routes than this named through one link or nexthop: which ones lead through it is not kept. */
const MAX_LINK_PREFIXES = 256;

/** Routes that may lead through a link or a nexthop, by prefix; "unknown": not known, or too many. */
type RouteSet = Map<string, RoutePrefix> | "unknown";

interface LinkState {
  up: boolean;
  carrier: boolean;
  /**
   * The routes that may lead through it: those named by a route line since it appeared while watched,
   * or "unknown" (there at the start, not known otherwise, or too many).
   */
  routes: RouteSet;
}

export class RoutingChanges {
  private readonly links = new Map<number, LinkState>();
  private readonly linkByName = new Map<string, number>();
  /** The links were read (`knowLinks`): one not among them appeared since, with no route through it. */
  private linksKnown = false;
  private allReason: string | null = null;
  private readonly prefixes = new Map<string, RoutePrefix>();
  /** Addresses by link index and address: the state their latest line gave (monitor-line.ts). */
  private readonly addresses = new Map<string, string>();
  /** Routes by the nexthop object they name; a nexthop not in it carries none. Only once routes were read. */
  private readonly nexthops = new Map<number, RouteSet>();
  private nexthopsKnown = false;
  /** Route lines seen while the links were not known, for `knowLinks` to place (or too many to keep). */
  private unknownRoutes: MonitorLine[] | "too many" = [];

  /**
   * The links there are now (`ip -o link show`, parsed). Without `routes`, routes may lead through any
   * of them (and any nexthop); with the routes there are now (`ip -o route show table all`, both
   * families), through each only those that name it, and the route lines seen since the links were last
   * known (read after the monitor started, the snapshot may miss a route those lines added).
   */
  knowLinks(lines: MonitorLine[], routes: MonitorLine[] | null = null): void {
    this.links.clear();
    this.linkByName.clear();
    this.nexthops.clear();
    const pending = this.unknownRoutes;
    const named = routes !== null && pending !== "too many" ? [...routes, ...pending] : null;
    this.nexthopsKnown = named !== null;
    for (const line of lines) {
      if (line.kind !== "link" || line.deleted) continue;
      this.links.set(line.index, {
        up: line.up,
        carrier: line.carrier,
        routes: named ? new Map() : "unknown",
      });
      this.linkByName.set(line.name, line.index);
    }
    for (const line of named ?? []) this.routeLineThrough(line);
    this.unknownRoutes = [];
    this.linksKnown = true;
  }

  /** The addresses there are now (`ip -o address show`, parsed): a line repeating one changes nothing. */
  knowAddresses(lines: MonitorLine[]): void {
    this.addresses.clear();
    for (const line of lines) if (line.kind === "address" && !line.deleted) this.addressChanged(line);
  }

  /** Lines were missed (ip monitor restarted): links and addresses are not known, everything is to refresh. */
  forgetLinks(reason: string): void {
    this.links.clear();
    this.linkByName.clear();
    this.linksKnown = false;
    this.nexthops.clear();
    this.nexthopsKnown = false;
    this.unknownRoutes = [];
    this.addresses.clear();
    this.addAll(reason);
  }

  /** Adds what the line changed; false: nothing that moves a route answer. */
  add(line: MonitorLine): boolean {
    switch (line.kind) {
      case "rule":
        return this.addAll("routing rule changed");
      case "address":
        if (line.linkLocal || !this.addressChanged(line)) return false;
        return this.addAll(line.deleted ? "address removed" : "address changed");
      case "link": {
        const moved = this.linkChanged(line);
        if (moved === "all") return this.addAll(`link ${line.name} changed`);
        for (const prefix of moved) this.addPrefix(prefix);
        return moved.length > 0;
      }
      case "nexthop": {
        const moved = this.nexthopChanged(line);
        if (moved === "all") return this.addAll(`nexthop ${line.id} ${line.deleted ? "removed" : "changed"}`);
        for (const prefix of moved) this.addPrefix(prefix);
        return moved.length > 0;
      }
      case "route":
        if (this.linksKnown) this.routeLineThrough(line);
        else if (this.unknownRoutes !== "too many") {
          this.unknownRoutes.push(line);
          if (this.unknownRoutes.length > MAX_PREFIXES) this.unknownRoutes = "too many";
        }
        if (!line.prefix) return this.addAll("route line not understood");
        this.addPrefix(line.prefix);
        return true;
    }
  }

  /** Records the line's address; false when it only repeats the state last seen (lifetimes renewed). */
  private addressChanged(line: MonitorLine & { kind: "address" }): boolean {
    const key = `${line.index} ${line.address}`;
    if (line.deleted) {
      this.addresses.delete(key);
      return true;
    }
    const before = this.addresses.get(key);
    this.addresses.set(key, line.state);
    return before !== line.state;
  }

  private addPrefix(prefix: RoutePrefix): void {
    if (this.allReason !== null) return;
    this.prefixes.set(prefixId(prefix), prefix);
    if (this.prefixes.size > MAX_PREFIXES) this.addAll(`more than ${MAX_PREFIXES} routes changed`);
  }

  /**
   * Each link and the nexthop the route line names may carry its prefix (a deleted route too: kept, at
   * worst one prefix re-resolved for nothing).
   */
  private routeLineThrough(line: MonitorLine): void {
    if (line.kind !== "route") return;
    for (const dev of line.devices) {
      const index = this.linkByName.get(dev);
      const link = index === undefined ? undefined : this.links.get(index);
      if (link) link.routes = withRoute(link.routes, line.prefix);
    }
    if (this.nexthopsKnown && line.nexthop !== null) {
      this.nexthops.set(line.nexthop, withRoute(this.nexthops.get(line.nexthop) ?? new Map(), line.prefix));
    }
  }

  /** The routes a nexthop line may have moved without a route line (see the top of this file). */
  private nexthopChanged(line: MonitorLine & { kind: "nexthop" }): RoutePrefix[] | "all" {
    const routes = this.nexthops.get(line.id);
    if (line.deleted) this.nexthops.delete(line.id);
    else if (!line.group) return [];
    if (!this.nexthopsKnown) return "all";
    return routes === undefined ? [] : routesIn(routes);
  }

  /** What is pending, and nothing after; null when nothing is. */
  take(): RoutingChange | null {
    const reason = this.allReason;
    this.allReason = null;
    if (reason !== null) {
      this.prefixes.clear();
      return { all: true, reason };
    }
    if (this.prefixes.size === 0) return null;
    const prefixes = [...this.prefixes.values()];
    this.prefixes.clear();
    return { all: false, prefixes };
  }

  private addAll(reason: string): true {
    this.allReason ??= reason;
    this.prefixes.clear();
    return true;
  }

  /**
   * The routes that may have appeared or gone through the link without a route line: none, those named
   * through it, or all (not known which).
   */
  private linkChanged(line: MonitorLine & { kind: "link" }): RoutePrefix[] | "all" {
    const before = this.links.get(line.index);
    if (line.deleted) {
      this.links.delete(line.index);
      if (this.linkByName.get(line.name) === line.index) this.linkByName.delete(line.name);
      return before === undefined ? "all" : routesIn(before.routes);
    }
    this.linkByName.set(line.name, line.index);
    if (before === undefined) {
      // Appeared while watched: nothing leads through it yet. Not known otherwise: it may.
      const routes = this.linksKnown ? new Map<string, RoutePrefix>() : "unknown";
      this.links.set(line.index, { up: line.up, carrier: line.carrier, routes });
      return this.linksKnown ? [] : "all";
    }
    const changed = before.up !== line.up || before.carrier !== line.carrier;
    before.up = line.up;
    before.carrier = line.carrier;
    return changed ? routesIn(before.routes) : [];
  }
}

/** `routes` with the prefix: "unknown" when it cannot be told or there would be too many to keep. */
function withRoute(routes: RouteSet, prefix: RoutePrefix | null): RouteSet {
  if (routes === "unknown") return routes;
  if (!prefix || routes.size >= MAX_LINK_PREFIXES) return "unknown";
  routes.set(prefixId(prefix), prefix);
  return routes;
}

function routesIn(routes: RouteSet): RoutePrefix[] | "all" {
  return routes === "unknown" ? "all" : [...routes.values()];
}
