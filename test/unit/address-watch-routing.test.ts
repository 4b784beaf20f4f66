// AddressWatch's "routing" report (fake timers, lines fed as `ip -o monitor` prints them): a steady
// stream of route changes closer together than the debounce is still reported within the maximum wait,
// and a report says which prefixes changed, or that everything may have (a rule, an address, a link
// through which routes may lead); RoutingChanges' view of links that appeared while watched.
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { AddressWatch, type RoutingChange } from "../../src/wg/address-watch.js";
import { parseMonitorLine } from "../../src/wg/monitor-line.js";
import { parsePrefix } from "../../src/wg/route-prefix.js";
import { RoutingChanges } from "../../src/wg/routing-changes.js";

/** An AddressWatch that is fed lines by the test (no `ip monitor`), and what it reported. */
function fedWatch(options: { debounceMs: number; maxWaitMs: number }) {
  const watch = new AddressWatch({
    ignoreInterfaces: [],
    wireguardInterface: "tbt-none0",
    logger: pino({ level: "silent" }),
    ...options,
  });
  const reports: Array<{ at: number; change: RoutingChange }> = [];
  const t0 = Date.now();
  watch.on("routing", (change) => reports.push({ at: Date.now() - t0, change }));
  const feed = (line: string) => (watch as unknown as { onLine(line: string): void }).onLine(line);
  return { watch, reports, feed };
}

const podRoute = (i: number) => `10.244.${i >> 8}.${i & 255} dev cali${i} scope link `;

describe("AddressWatch: routing reports", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("a steady stream of route changes is reported at least every maxWaitMs", async () => {
    const { watch, reports, feed } = fedWatch({ debounceMs: 200, maxWaitMs: 1000 });
    // A route line every 100 ms for 3 s: the debounce's quiet time never comes.
    for (let i = 0; i < 30; i++) {
      feed(podRoute(i));
      await vi.advanceTimersByTimeAsync(100);
    }
    expect(reports.length).toBeGreaterThanOrEqual(2);
    expect(reports[0]!.at).toBeLessThanOrEqual(1000);
    for (let i = 1; i < reports.length; i++) {
      expect(reports[i]!.at - reports[i - 1]!.at).toBeLessThanOrEqual(1100);
    }
    // Every change is in one report or another.
    await vi.advanceTimersByTimeAsync(1000);
    const prefixes = reports.flatMap((r) => (r.change.all ? [] : r.change.prefixes));
    expect(prefixes.length).toBe(30);
    watch.stop();
  });

  it("a burst is reported once, debounceMs after its last line, with each of its prefixes", async () => {
    const { watch, reports, feed } = fedWatch({ debounceMs: 200, maxWaitMs: 1000 });
    for (let i = 0; i < 5; i++) feed(podRoute(i));
    await vi.advanceTimersByTimeAsync(199);
    expect(reports).toEqual([]);
    await vi.advanceTimersByTimeAsync(1);
    expect(reports.map((r) => r.change)).toEqual([
      { all: false, prefixes: [0, 1, 2, 3, 4].map((i) => parsePrefix(`10.244.0.${i}`)) },
    ]);
    watch.stop();
  });

  it("route lines report their prefixes; the same prefix twice is one", async () => {
    const { watch, reports, feed } = fedWatch({ debounceMs: 200, maxWaitMs: 1000 });
    feed("198.18.5.0/24 via 10.60.0.2 dev tbt-rrc ");
    feed("Deleted 198.18.5.0/24 via 10.60.0.2 dev tbt-rrc ");
    feed("2001:db8:1::5 via fd50::3 dev tbt-rra metric 1024 pref medium");
    await vi.advanceTimersByTimeAsync(200);
    expect(reports.map((r) => r.change)).toEqual([
      { all: false, prefixes: [parsePrefix("198.18.5.0/24"), parsePrefix("2001:db8:1::5")] },
    ]);
    watch.stop();
  });

  it.each([
    ["a rule", "32765:\tfrom 10.0.0.0/8 lookup 100"],
    ["an address", "Deleted 3: tbt-rra    inet 10.50.0.1/24 scope global tbt-rra\\       valid_lft forever"],
    ["a route it cannot parse", "default dev wg0 table 51820 scope link "],
    ["a link not known to carry no route", "5: tbt-rrc@tbt-rrd: <BROADCAST,MULTICAST> mtu 1500 state DOWN"],
  ])("%s: everything", async (_what, line) => {
    const { watch, reports, feed } = fedWatch({ debounceMs: 200, maxWaitMs: 1000 });
    feed(podRoute(1));
    feed(line);
    feed(podRoute(2));
    await vi.advanceTimersByTimeAsync(200);
    expect(reports.length).toBe(1);
    expect(reports[0]!.change.all).toBe(true);
    watch.stop();
  });

  it("an IPv6 link-local address moves no route answer, another address may", async () => {
    const { watch, reports, feed } = fedWatch({ debounceMs: 200, maxWaitMs: 1000 });
    feed("7: cali1    inet6 fe80::ecee:eeff:feee:eeee/64 scope link \\       valid_lft forever");
    await vi.advanceTimersByTimeAsync(1000);
    expect(reports).toEqual([]);
    feed("7: cali1    inet6 2001:db8:7::1/64 scope global \\       valid_lft forever");
    await vi.advanceTimersByTimeAsync(200);
    expect(reports.map((r) => r.change)).toEqual([{ all: true, reason: "address changed" }]);
    // The same address again with its lifetimes renewed (a router advertisement): nothing.
    feed(
      "7: cali1    inet6 2001:db8:7::1/64 scope global \\       valid_lft 86400sec preferred_lft 14400sec",
    );
    await vi.advanceTimersByTimeAsync(1000);
    expect(reports.length).toBe(1);
    watch.stop();
  });
});

// Lines captured from iproute2 6.1 (`ip -o monitor address` while `ip addr change` renewed, then deprecated).
describe("RoutingChanges: addresses", () => {
  const line = (text: string) => parseMonitorLine(text);
  const added = line(
    "3: d0    inet6 2001:db8::5/64 scope global nodad dynamic \\       valid_lft 100sec preferred_lft 50sec",
  );
  const renewed = line(
    "3: d0    inet6 2001:db8::5/64 scope global nodad dynamic \\       valid_lft 200sec preferred_lft 150sec",
  );
  const deprecated = line(
    "3: d0    inet6 2001:db8::5/64 scope global nodad deprecated dynamic \\       valid_lft 200sec preferred_lft 0sec",
  );
  const removed = line(
    "Deleted 3: d0    inet6 2001:db8::5/64 scope global nodad deprecated dynamic \\       valid_lft 200sec preferred_lft 0sec",
  );

  it("an address's lifetimes renewed is nothing; a new one, a changed flag or a removal is everything", () => {
    const changes = new RoutingChanges();
    expect(changes.add(added)).toBe(true);
    expect(changes.take()).toEqual({ all: true, reason: "address changed" });
    expect(changes.add(renewed)).toBe(false);
    expect(changes.take()).toBeNull();
    // Deprecated: no longer a preferred source, so `ip route get` may answer with another.
    expect(changes.add(deprecated)).toBe(true);
    expect(changes.take()).toEqual({ all: true, reason: "address changed" });
    expect(changes.add(removed)).toBe(true);
    expect(changes.take()).toEqual({ all: true, reason: "address removed" });
    // Gone, so its next line is new again.
    expect(changes.add(renewed)).toBe(true);
  });

  it("the same address on another link is another address", () => {
    const changes = new RoutingChanges();
    changes.knowAddresses([added]);
    expect(
      changes.add(
        line(
          "4: d2    inet6 2001:db8::5/64 scope global nodad dynamic \\       valid_lft 200sec preferred_lft 150sec",
        ),
      ),
    ).toBe(true);
  });

  it("addresses read at the start (`ip -o address show`) are known; after lines were missed, none is", () => {
    const changes = new RoutingChanges();
    changes.knowAddresses([
      line(
        "3: d0    inet6 2001:db8::5/64 scope global nodad dynamic \\       valid_lft 198sec preferred_lft 148sec",
      ),
    ]);
    expect(changes.add(renewed)).toBe(false);
    changes.forgetLinks("ip monitor restarted");
    expect(changes.take()).toEqual({ all: true, reason: "ip monitor restarted" });
    expect(changes.add(renewed)).toBe(true);
  });
});

describe("RoutingChanges: links", () => {
  const line = (text: string) => parseMonitorLine(text);
  const eth0Up = line("2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP");
  const eth0Down = line("2: eth0: <BROADCAST,MULTICAST> mtu 1500 state DOWN");

  it("a link there at the start may carry routes: going down is everything", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([eth0Up]);
    expect(changes.add(eth0Down)).toBe(true);
    expect(changes.take()).toEqual({ all: true, reason: "link eth0 changed" });
  });

  it("a line of a link whose state did not change (mtu, promiscuity) is nothing", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([eth0Up]);
    expect(changes.add(line("2: eth0: <BROADCAST,MULTICAST,PROMISC,UP,LOWER_UP> mtu 9000 state UP"))).toBe(
      false,
    );
    expect(changes.take()).toBeNull();
  });

  it("a pod's veth: appearing and coming up is nothing, its route a prefix, its deletion that prefix", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([eth0Up]);
    expect(changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(false);
    expect(changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP"))).toBe(
      false,
    );
    expect(changes.take()).toBeNull();
    expect(changes.add(line(podRoute(9).replace("cali9", "cali9")))).toBe(true);
    expect(changes.take()).toEqual({ all: false, prefixes: [parsePrefix("10.244.0.9")] });
    // IPv4 drops the routes through a deleted link without a line: those named through it since it came.
    expect(changes.add(line("Deleted 9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(true);
    expect(changes.take()).toEqual({ all: false, prefixes: [parsePrefix("10.244.0.9")] });
  });

  it("a watched link going down or away: its routes' prefixes, or everything when they are not known", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([eth0Up]);
    changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP"));
    changes.add(line(podRoute(9)));
    changes.add(line("10.245.0.0/24 via 10.244.0.9 dev cali9 proto bird"));
    changes.take();
    expect(changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(true);
    expect(changes.take()).toEqual({
      all: false,
      prefixes: [parsePrefix("10.244.0.9"), parsePrefix("10.245.0.0/24")],
    });
    // A route through it that could not be read: which routes it carries is not known.
    changes.add(line("8: cali8@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP"));
    changes.add(line("something odd dev cali8"));
    changes.take();
    changes.add(line("Deleted 8: cali8@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(changes.take()).toMatchObject({ all: true });
    // More routes through one link than are kept: the same.
    changes.add(line("7: cali7@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP"));
    for (let i = 0; i < 300; i++) changes.add(line(`10.246.${i >> 8}.${i & 255} dev cali7 scope link `));
    changes.take();
    changes.add(line("Deleted 7: cali7@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(changes.take()).toMatchObject({ all: true });
  });

  it("links there at the start with the routes read then: a link going away is the prefixes named through it", () => {
    const changes = new RoutingChanges();
    const cali5 = line("5: cali5@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP");
    // As `ip -o -4 route show table all` and `ip -o -6 route show table all` print them.
    changes.knowLinks(
      [eth0Up, cali5],
      [
        line("default via 192.0.2.1 dev eth0 "),
        line("10.244.0.5 dev cali5 scope link "),
        line("local 10.0.0.5 dev eth0 table local proto kernel scope host src 10.0.0.5 "),
        line("fd00:244::5 dev cali5 metric 1024 pref medium"),
      ],
    );
    expect(changes.add(line("Deleted 5: cali5@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(true);
    expect(changes.take()).toEqual({
      all: false,
      prefixes: [parsePrefix("10.244.0.5"), parsePrefix("fd00:244::5")],
    });
    // eth0 carries the default route: its going down is every IPv4 answer.
    changes.add(eth0Down);
    expect(changes.take()).toEqual({
      all: false,
      prefixes: [parsePrefix("default", 4), parsePrefix("10.0.0.5")],
    });
  });

  it("a route line seen before the links were read is placed on its link; too many, and none is known", () => {
    const changes = new RoutingChanges();
    const cali6 = line("6: cali6@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP");
    // The monitor runs before the reads: this route came after the routes were read.
    changes.add(line("10.244.0.6 dev cali6 scope link "));
    changes.knowLinks([eth0Up, cali6], []);
    changes.take();
    changes.add(line("Deleted 6: cali6@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(changes.take()).toEqual({ all: false, prefixes: [parsePrefix("10.244.0.6")] });

    const flooded = new RoutingChanges();
    for (let i = 0; i < 1100; i++) flooded.add(line(podRoute(i)));
    flooded.knowLinks([eth0Up, cali6], []);
    flooded.take();
    flooded.add(line("Deleted 6: cali6@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(flooded.take()).toMatchObject({ all: true });
  });

  it("a route read at the start that cannot be parsed leaves its link's routes unknown", () => {
    const changes = new RoutingChanges();
    const cali4 = line("4: cali4@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP");
    changes.knowLinks([eth0Up, cali4], [line("something odd dev cali4")]);
    changes.add(line("Deleted 4: cali4@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(changes.take()).toMatchObject({ all: true });
  });

  it("a deleted link that never carried a route is nothing", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([eth0Up]);
    changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"));
    expect(changes.add(line("Deleted 9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(false);
  });

  it("links not read: any link change is everything", () => {
    const changes = new RoutingChanges();
    expect(changes.add(line("9: cali9@if3: <BROADCAST,MULTICAST> mtu 1500 state DOWN"))).toBe(true);
  });

  it("more pending prefixes than it keeps: everything", () => {
    const changes = new RoutingChanges();
    for (let i = 0; i < 2000; i++) changes.add(line(podRoute(i)));
    expect(changes.take()).toMatchObject({ all: true });
    expect(changes.take()).toBeNull();
  });
});

describe("RoutingChanges: nexthop objects", () => {
  // Captured from iproute2 6.1 and Linux 6.18 (`ip -o monitor ... nexthop`, `ip -o route show table all`).
  const line = (text: string) => parseMonitorLine(text);
  const d0 = line("3: d0@d1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP");
  const read = [
    line("10.9.0.0/24 dev d0 proto kernel scope link src 10.9.0.2 "),
    line("192.0.2.0/24 nhid 10 via 10.9.0.1 dev d0 "),
    line("default nhid 10 via 10.9.0.1 dev d0 table 100 "),
    line(
      "198.51.100.0/24 nhid 30 \\\tnexthop via 10.9.0.1 dev d0 weight 1 \\\tnexthop via 10.9.0.3 dev d0 weight 1 ",
    ),
  ];

  it("a removed nexthop moves the routes through it (IPv4 drops them without a line)", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([d0], read);
    expect(changes.add(line("Deleted id 10 via 10.9.0.1 dev d0 scope link "))).toBe(true);
    expect(changes.take()).toEqual({
      all: false,
      prefixes: [parsePrefix("192.0.2.0/24"), parsePrefix("default", 4)],
    });
    // Removed, so its routes are forgotten: an id used again carries only what names it then.
    changes.add(line("id 10 via 10.9.0.5 dev d0 scope link "));
    expect(changes.add(line("Deleted id 10 via 10.9.0.5 dev d0 scope link "))).toBe(false);
  });

  it("a group whose members changed moves the routes through the group", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([d0], read);
    // A member removed: the kernel announces the group again, and no route line.
    changes.add(line("Deleted id 11 via 10.9.0.3 dev d0 scope link "));
    expect(changes.take()).toBeNull();
    expect(changes.add(line("id 30 group 10 "))).toBe(true);
    expect(changes.take()).toEqual({ all: false, prefixes: [parsePrefix("198.51.100.0/24")] });
  });

  it("one added or replaced moves nothing itself (the kernel announces its routes again); a new group none", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([d0], read);
    expect(changes.add(line("id 10 via 10.9.0.4 dev d0 scope link "))).toBe(false);
    expect(changes.add(line("id 40 via 10.9.0.6 dev d0 scope link "))).toBe(false);
    expect(changes.add(line("id 41 group 40 "))).toBe(false);
    expect(changes.take()).toBeNull();
  });

  it("routes named since the start are kept: a route added through a new nexthop moves with it", () => {
    const changes = new RoutingChanges();
    changes.knowLinks([d0], read);
    changes.add(line("id 50 via 10.9.0.8 dev d0 scope link "));
    changes.add(line("203.0.113.0/24 nhid 50 via 10.9.0.8 dev d0 "));
    changes.take();
    changes.add(line("Deleted id 50 via 10.9.0.8 dev d0 scope link "));
    expect(changes.take()).toEqual({ all: false, prefixes: [parsePrefix("203.0.113.0/24")] });
  });

  it("routes not read, or too many through one nexthop: a removal is everything", () => {
    const unread = new RoutingChanges();
    unread.knowLinks([d0]);
    expect(unread.add(line("Deleted id 10 via 10.9.0.1 dev d0 scope link "))).toBe(true);
    expect(unread.take()).toEqual({ all: true, reason: "nexthop 10 removed" });
    expect(unread.add(line("id 30 group 10 "))).toBe(true);
    expect(unread.take()).toEqual({ all: true, reason: "nexthop 30 changed" });

    const many = new RoutingChanges();
    many.knowLinks([d0], []);
    for (let i = 0; i < 300; i++)
      many.add(line(`10.246.${i >> 8}.${i & 255}/32 nhid 60 via 10.9.0.9 dev d0 `));
    many.take();
    many.add(line("Deleted id 60 via 10.9.0.9 dev d0 scope link "));
    expect(many.take()).toMatchObject({ all: true });

    // After lines were missed nothing is known until the routes are read again.
    const restarted = new RoutingChanges();
    restarted.knowLinks([d0], read);
    restarted.forgetLinks("ip monitor restarted");
    restarted.take();
    restarted.add(line("Deleted id 10 via 10.9.0.1 dev d0 scope link "));
    expect(restarted.take()).toMatchObject({ all: true });
  });
});
