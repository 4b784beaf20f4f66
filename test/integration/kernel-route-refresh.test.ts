// A route change at a host with kernel-carried peers, in a namespace: the real AddressWatch (`ip
// monitor`), the real route batcher and a KernelForwarder (maps in memory). Entries for remotes in two
// prefixes; a more specific route for one of them through another interface re-resolves and moves only
// that prefix's entries, and its deletion moves them back, again without a lookup of the others; a link
// there before the watch started going away moves only the entries routed through it; so do a nexthop
// object removed and a nexthop group losing a member (IPv4 announces neither with a route line).
import type { ChildProcess } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createNamespace, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import { waitFor } from "../support/wait-for.js";
import { startRouteRefreshChild } from "./kernel-route-refresh-support.js";

const supported = process.getuid?.() === 0;
const MOVED = ["198.18.1.1", "198.18.1.2", "198.18.1.3"];
const STAYED = ["198.19.1.1", "198.19.1.2", "198.19.1.3", "198.18.2.1"];
/** Routed through a link there before the watch started (a pod's veth: a device route, no address). */
const ON_LINK = "198.18.4.1";
/** Routed through nexthop object 71 (`nhid`, as FRR installs routes), there before the watch started. */
const VIA_NEXTHOP = "198.18.5.1";
/** Routed through a nexthop group added while watched. */
const VIA_GROUP = "198.18.6.1";

describe.skipIf(!supported)("kernel fast path: a route change re-resolves only the entries it covers", () => {
  let ns = "";
  let child: ChildProcess | null = null;
  let lines: Array<Record<string, unknown>> = [];
  const ifindex: Record<string, number> = {};

  beforeAll(async () => {
    ns = await createNamespace(`tbt-krr-${uniqueTag()}`);
    await nsRun(ns, "ip", ["link", "add", "tbt-kra", "type", "veth", "peer", "name", "tbt-krb"]);
    await nsRun(ns, "ip", ["link", "add", "tbt-krc", "type", "veth", "peer", "name", "tbt-krd"]);
    await nsRun(ns, "ip", ["addr", "add", "10.70.0.1/24", "dev", "tbt-kra"]);
    await nsRun(ns, "ip", ["link", "add", "tbt-kre", "type", "veth", "peer", "name", "tbt-krf"]);
    await nsRun(ns, "ip", ["addr", "add", "10.71.0.1/24", "dev", "tbt-krc"]);
    for (const dev of ["tbt-kra", "tbt-krb", "tbt-krc", "tbt-krd", "tbt-kre", "tbt-krf"]) {
      await nsRun(ns, "ip", ["link", "set", dev, "up"]);
      ifindex[dev] = Number((await nsRun(ns, "cat", [`/sys/class/net/${dev}/ifindex`])).trim());
    }
    await nsRun(ns, "ip", ["route", "add", "198.18.0.0/16", "via", "10.70.0.2"]);
    await nsRun(ns, "ip", ["route", "add", "198.19.0.0/16", "via", "10.70.0.3"]);
    await nsRun(ns, "ip", ["route", "add", "198.18.4.0/24", "dev", "tbt-kre", "scope", "link"]);
    await nsRun(ns, "ip", ["nexthop", "add", "id", "71", "via", "10.71.0.2", "dev", "tbt-krc"]);
    await nsRun(ns, "ip", ["route", "add", "198.18.5.0/24", "nhid", "71"]);
    const started = await startRouteRefreshChild(ns, [...MOVED, ...STAYED, ON_LINK, VIA_NEXTHOP, VIA_GROUP]);
    child = started.child;
    lines = started.lines;
  });

  afterAll(async () => {
    child?.stdin?.end();
    await teardownAll();
  });

  const entries = async (): Promise<Record<string, number>> => {
    const before = lines.length;
    child?.stdin?.write("entries\n");
    await waitFor(async () => lines.slice(before).some((l) => l.entries), {
      what: "entries",
      timeoutMs: 5000,
    });
    return lines.slice(before).find((l) => l.entries)?.entries as Record<string, number>;
  };
  /** The remotes looked up from line `from` on, once the watch has had time to report (debounce, max wait). */
  const lookupsSince = async (from: number, expected: string[], dev: string): Promise<string[]> => {
    await waitFor(
      async () => expected.every((r) => lines.slice(from).some((l) => l.lookup === r && l.dev === dev)),
      { what: `lookups of ${expected.join(", ")} answered with ${dev}`, timeoutMs: 10_000, intervalMs: 50 },
    );
    await new Promise((r) => setTimeout(r, 1500));
    return lines.slice(from).flatMap((l) => (typeof l.lookup === "string" ? [l.lookup] : []));
  };

  it("moves the covered entries to the new interface, and back, looking up nothing else", async () => {
    const all = [...MOVED, ...STAYED, VIA_GROUP];
    const onLink = { [ON_LINK]: ifindex["tbt-kre"], [VIA_NEXTHOP]: ifindex["tbt-krc"] };
    expect(await entries()).toEqual({
      ...Object.fromEntries(all.map((r) => [r, ifindex["tbt-kra"]])),
      ...onLink,
    });

    let from = lines.length;
    await nsRun(ns, "ip", ["route", "add", "198.18.1.0/24", "via", "10.71.0.2"]);
    expect((await lookupsSince(from, MOVED, "tbt-krc")).sort()).toEqual(MOVED);
    expect(await entries()).toEqual({
      ...Object.fromEntries([...STAYED, VIA_GROUP].map((r) => [r, ifindex["tbt-kra"]])),
      ...Object.fromEntries(MOVED.map((r) => [r, ifindex["tbt-krc"]])),
      ...onLink,
    });

    from = lines.length;
    await nsRun(ns, "ip", ["route", "del", "198.18.1.0/24"]);
    expect((await lookupsSince(from, MOVED, "tbt-kra")).sort()).toEqual(MOVED);
    expect(await entries()).toEqual({
      ...Object.fromEntries(all.map((r) => [r, ifindex["tbt-kra"]])),
      ...onLink,
    });
  }, 60_000);

  it("a link there before the watch started going away re-resolves only the routes read through it", async () => {
    const from = lines.length;
    // IPv4 drops its device route without a line; the routes read at the start named it.
    await nsRun(ns, "ip", ["link", "del", "tbt-kre"]);
    expect(await lookupsSince(from, [ON_LINK], "tbt-kra")).toEqual([ON_LINK]);
    expect((await entries())[ON_LINK]).toBe(ifindex["tbt-kra"]);
  }, 30_000);

  it("a nexthop object removed re-resolves only the routes through it", async () => {
    const from = lines.length;
    // IPv4 drops 198.18.5.0/24 without a route line: only "Deleted id 71" is announced.
    await nsRun(ns, "ip", ["nexthop", "del", "id", "71"]);
    expect(await lookupsSince(from, [VIA_NEXTHOP], "tbt-kra")).toEqual([VIA_NEXTHOP]);
    expect((await entries())[VIA_NEXTHOP]).toBe(ifindex["tbt-kra"]);
  }, 30_000);

  it("a nexthop group losing a member re-resolves the routes through the group", async () => {
    await nsRun(ns, "ip", ["nexthop", "add", "id", "72", "via", "10.71.0.2", "dev", "tbt-krc"]);
    await nsRun(ns, "ip", ["nexthop", "add", "id", "73", "via", "10.70.0.2", "dev", "tbt-kra"]);
    await nsRun(ns, "ip", ["nexthop", "add", "id", "74", "group", "72/73"]);
    let from = lines.length;
    await nsRun(ns, "ip", ["route", "add", "198.18.6.0/24", "nhid", "74"]);
    await lookupsSince(from, [], "tbt-kra");
    expect(lines.slice(from).filter((l) => l.lookup === VIA_GROUP).length).toBe(1);
    // Without 73 the group leads through tbt-krc alone; the kernel announces only "id 74 group 72".
    from = lines.length;
    await nsRun(ns, "ip", ["nexthop", "del", "id", "73"]);
    expect(await lookupsSince(from, [VIA_GROUP], "tbt-krc")).toEqual([VIA_GROUP]);
    expect((await entries())[VIA_GROUP]).toBe(ifindex["tbt-krc"]);
  }, 30_000);
});
