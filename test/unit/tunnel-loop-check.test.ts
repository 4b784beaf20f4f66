// Which peers' remotes route into the WireGuard interface: the kernel's answers are faked here (the real
// `ip route get` runs in test/e2e/full-tunnel.test.ts).
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  parseRouteAnswers,
  type RouteQuery,
  remoteAddress,
  TunnelLoopCheck,
} from "../../src/wg/tunnel-loop-check.js";

describe("remoteAddress", () => {
  it.each([
    ["203.0.113.5:51820", "203.0.113.5"],
    ["[2001:DB8:0:0::1]:51820", "2001:db8::1"],
    ["unresolved", null],
    ["closed", null],
    ["peer.example.net:51820", null],
  ])("%s -> %s", (remote, address) => {
    expect(remoteAddress(remote)).toBe(address);
  });
});

describe("parseRouteAnswers", () => {
  it("reads `ip -j -batch` output, one array a line, skipping anything else", () => {
    const out = [
      '[{"dst":"8.8.8.8","gateway":"10.9.0.2","dev":"eth0","prefsrc":"10.9.0.1","flags":[],"mark":51820}]',
      '[{"dst":"2001:db8::1","dev":"wg0","flags":[]}]',
      "garbage",
      "",
    ].join("\n");
    expect(parseRouteAnswers(out)).toEqual([
      { dst: "8.8.8.8", dev: "eth0" },
      { dst: "2001:db8::1", dev: "wg0" },
    ]);
  });
});

describe("TunnelLoopCheck", () => {
  function setup(intoTunnel: Set<string>) {
    const queries: RouteQuery[][] = [];
    let mark = 0;
    const check = new TunnelLoopCheck({
      interfaceName: "wg0",
      logger: pino({ level: "silent" }),
      mark: () => mark,
      lookup: async (q) => {
        queries.push(q);
        return q.map((x) => ({ dst: x.address, dev: intoTunnel.has(x.address) ? "wg0" : "eth0" }));
      },
    });
    return { check, queries, setMark: (m: number) => (mark = m) };
  }

  it("flags the peers whose remote routes into the interface, asking once per address", async () => {
    const { check, queries } = setup(new Set(["203.0.113.5"]));
    check.update(
      new Map([
        ["A", "203.0.113.5:51820"],
        ["B", "198.51.100.7:4000"],
        ["C", null],
        ["D", "203.0.113.5:51821"],
      ]),
    );
    await check.settled();
    expect(check.of("A")).toBe("203.0.113.5");
    expect(check.of("D")).toBe("203.0.113.5");
    expect(check.of("B")).toBeNull();
    expect(check.of("C")).toBeNull();
    expect(queries).toEqual([
      [
        { address: "203.0.113.5", mark: 0 },
        { address: "198.51.100.7", mark: 0 },
      ],
    ]);
  });

  it("a route for some remotes changed: only those peers are asked again, and their answer taken", async () => {
    const into = new Set<string>();
    const { check, queries } = setup(into);
    check.update(
      new Map([
        ["A", "203.0.113.5:51820"],
        ["B", "198.51.100.7:4000"],
        ["C", "192.0.2.9:51820"],
      ]),
    );
    await check.settled();
    queries.length = 0;
    into.add("203.0.113.5"); // a route now sends A's remote into the tunnel
    check.recheck(["A", "gone"]);
    await check.settled();
    expect(queries).toEqual([[{ address: "203.0.113.5", mark: 0 }]]);
    expect(check.of("A")).toBe("203.0.113.5");
    // Asked for nothing: nothing is looked up.
    check.recheck([]);
    await check.settled();
    expect(queries).toHaveLength(1);
  });

  it("asks again only when a remote, the mark or the routes changed", async () => {
    const into = new Set(["203.0.113.5"]);
    const { check, queries, setMark } = setup(into);
    const remotes = new Map<string, string | null>([["A", "203.0.113.5:51820"]]);
    check.update(remotes);
    await check.settled();
    check.update(remotes);
    await check.settled();
    expect(queries).toHaveLength(1);

    into.clear(); // routes changed: the remote leaves the tunnel
    check.invalidate();
    await check.settled();
    expect(check.of("A")).toBeNull();

    setMark(0xca6c);
    check.update(remotes);
    await check.settled();
    expect(queries.at(-1)).toEqual([{ address: "203.0.113.5", mark: 0xca6c }]);

    check.update(new Map([["A", "192.0.2.1:1"]]));
    await check.settled();
    expect(queries).toHaveLength(4);
  });

  it("forgets peers that are gone", async () => {
    const { check } = setup(new Set(["203.0.113.5"]));
    check.update(new Map([["A", "203.0.113.5:51820"]]));
    await check.settled();
    expect(check.of("A")).toBe("203.0.113.5");
    check.update(new Map());
    await check.settled();
    expect(check.of("A")).toBeNull();
  });
});
