// What changed in routing since the last report, from `ip -o monitor` lines: the prefixes of the routes
// added, deleted or replaced (an `ip route get` answer can move only for destinations inside one, in
// whichever table), or everything, when a line may have moved answers it does not name: a rule, a route
// line that cannot be parsed, an address (IPv4 drops the routes of a deleted address without a line),
// and a link that goes down, comes up or goes away while routes may lead through it (IPv4 drops those
// without a line too). A link that appeared while watched carries no route until a route line names it
// (a route needs its device up, and says so): a Kubernetes pod's veth coming up moves no answer.
import type { MonitorLine } from "./monitor-line.js";
import { prefixId, type RoutePrefix } from "./route-prefix.js";

export type RoutingChange = { all: true; reason: string } | { all: false; prefixes: RoutePrefix[] };

/** More distinct prefixes than this pending at once (a BGP session's table arriving): everything. */
const MAX_PREFIXES = 1024;

interface LinkState {
  up: boolean;
  carrier: boolean;
  /** Routes may lead through it: there at the start (or not known), or named by a route line since. */
  routed: boolean;
}

export class RoutingChanges {
  private readonly links = new Map<number, LinkState>();
  private readonly linkByName = new Map<string, number>();
  /** The links were read (`knowLinks`): one not among them appeared since, with no route through it. */
  private linksKnown = false;
  private allReason: string | null = null;
  private readonly prefixes = new Map<string, RoutePrefix>();

  /** The links there are now (`ip -o link show`, parsed): routes may lead through any of them. */
  knowLinks(lines: MonitorLine[]): void {
    this.links.clear();
    this.linkByName.clear();
    for (const line of lines) {
      if (line.kind !== "link" || line.deleted) continue;
      this.links.set(line.index, { up: line.up, carrier: line.carrier, routed: true });
      this.linkByName.set(line.name, line.index);
    }
    this.linksKnown = true;
  }

  /** Lines were missed (ip monitor restarted): the links are not known, everything is to refresh. */
  forgetLinks(reason: string): void {
    this.links.clear();
    this.linkByName.clear();
    this.linksKnown = false;
    this.addAll(reason);
  }

  /** Adds what the line changed; false: nothing that moves a route answer. */
  add(line: MonitorLine): boolean {
    switch (line.kind) {
      case "rule":
        return this.addAll("routing rule changed");
      case "address":
        return line.linkLocal ? false : this.addAll("address changed");
      case "link":
        return this.linkChanged(line) && this.addAll(`link ${line.name} changed`);
      case "route":
        for (const dev of line.devices) {
          const index = this.linkByName.get(dev);
          const link = index === undefined ? undefined : this.links.get(index);
          if (link) link.routed = true;
        }
        if (!line.prefix) return this.addAll("route line not understood");
        if (this.allReason !== null) return true;
        this.prefixes.set(prefixId(line.prefix), line.prefix);
        if (this.prefixes.size > MAX_PREFIXES) this.addAll(`more than ${MAX_PREFIXES} routes changed`);
        return true;
    }
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

  /** Whether routes through the link may have appeared or gone without a route line. */
  private linkChanged(line: MonitorLine & { kind: "link" }): boolean {
    const before = this.links.get(line.index);
    if (line.deleted) {
      this.links.delete(line.index);
      if (this.linkByName.get(line.name) === line.index) this.linkByName.delete(line.name);
      return before === undefined || before.routed;
    }
    this.linkByName.set(line.name, line.index);
    if (before === undefined) {
      // Appeared while watched: nothing leads through it yet. Not known otherwise: it may.
      this.links.set(line.index, { up: line.up, carrier: line.carrier, routed: !this.linksKnown });
      return !this.linksKnown;
    }
    const changed = before.up !== line.up || before.carrier !== line.carrier;
    before.up = line.up;
    before.carrier = line.carrier;
    return changed && before.routed;
  }
}
