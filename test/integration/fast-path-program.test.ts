// The real tc/eBPF fast path in the kernel, without WireGuard or Tunnelbore: a child process in a
// namespace of its own loads the program onto that namespace's lo, sets map entries directly and sends
// WireGuard-shaped datagrams between sockets on 127/8 (a peer on this host). Asserted here: transport
// data is rewritten to the path's 5-tuple and delivered, everything else reaches its original
// destination unchanged, and the counters count exactly what was rewritten.
// Regression test for peers on this host: rewritten datagrams must go on (TC_ACT_OK); redirected into
// lo ingress, outbound ones (now from 127.0.0.1) were dropped as martian.
// Not covered: the UDP checksum rewrite. Datagrams on lo are CHECKSUM_PARTIAL (lo's checksum offload is
// fixed on), so the receiver never verifies the UDP checksum; the IP header checksum is verified.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fastPathObjectPath } from "../../ebpf/loader.js";
import { createNamespace, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import type { Arrivals, ChildResult, ScenarioResult, SocketName } from "./fast-path-child.js";

const execFileAsync = promisify(execFile);
const repo = fileURLToPath(new URL("../../", import.meta.url));
// CI runs as root after `npm run build` (which builds the object); elsewhere there is nothing to load.
const supported = process.getuid?.() === 0 && existsSync(fastPathObjectPath());

describe.skipIf(!supported)("fast path program in the kernel (tc on lo of a namespace of its own)", () => {
  let ns = "";
  let result: ChildResult;

  beforeAll(async () => {
    // Attached to lo, the program must never see the host's own traffic.
    ns = await createNamespace(`tbt-fpp-${uniqueTag()}`);
    const t0 = Date.now();
    try {
      const { stdout } = await execFileAsync(
        "ip",
        ["netns", "exec", ns, process.execPath, "--import", "tsx", "test/integration/fast-path-child.ts"],
        { cwd: repo, timeout: 15_000, maxBuffer: 16 << 20 },
      );
      const line = stdout.trim().split("\n").at(-1) ?? "";
      result = JSON.parse(line) as ChildResult;
    } catch (err) {
      const e = err as { stdout?: string; stderr?: string; message: string };
      const nstat = await nsRun(ns, "nstat", ["-asz"]).catch(() => "");
      throw new Error(
        `fast-path child failed: ${e.message}\nstdout: ${e.stdout}\nstderr: ${e.stderr}\nnstat:\n${nstat}`,
      );
    }
    console.log(`fast-path child (load, 12 scenarios, close): ${Date.now() - t0} ms`);
  });

  afterAll(async () => {
    // Removes the namespace (and with its lo the program) even when the child failed or hung.
    await teardownAll();
  });

  const scenario = (name: string): ScenarioResult => {
    const s = result.scenarios[name];
    if (!s) throw new Error(`the child ran no scenario "${name}"`);
    return s;
  };
  /** Only these sockets received anything, each exactly these datagrams from these sources, intact. */
  const expectArrivals = (
    name: string,
    expected: Partial<Record<SocketName, { from: Record<string, number>; bytes: number }>>,
  ): void => {
    const s = scenario(name);
    const context = `scenario "${name}" (nonzero IP/UDP counters: ${JSON.stringify(result.snmp)}): ${JSON.stringify(s.arrivals)}`;
    for (const [socket, got] of Object.entries(s.arrivals) as Array<[SocketName, Arrivals]>) {
      const want = expected[socket];
      const at = `${socket} socket (${result.addresses[socket]})`;
      expect(got.from, `sources of datagrams at the ${at}, ${context}`).toEqual(want?.from ?? {});
      expect(got.bytes, `bytes at the ${at}, ${context}`).toBe(want?.bytes ?? 0);
      expect(got.damaged, `damaged or duplicated datagrams at the ${at}, ${context}`).toBe(0);
    }
  };
  const expectCounters = (
    name: string,
    outbound: { packets: number; bytes: number } | null,
    inbound: { packets: number; bytes: number } | null,
  ): void => {
    const s = scenario(name);
    expect(s.outbound, `outbound counter change in scenario "${name}"`).toEqual(outbound);
    expect(s.inbound, `inbound counter change in scenario "${name}"`).toEqual(inbound);
  };
  const zero = { packets: 0, bytes: 0 };
  const a = (socket: SocketName): string => result.addresses[socket];

  it("outbound to a peer on this host: WireGuard -> L(P) arrives at the peer from the path's socket", () => {
    const s = scenario("outbound");
    expect(s.sent).toBe(11);
    expectArrivals("outbound", { peer: { from: { [a("path")]: 11 }, bytes: s.sentBytes } });
    expectCounters("outbound", { packets: 11, bytes: s.sentBytes }, zero);
  });

  it("inbound from a peer on this host: peer -> the path's socket arrives at WireGuard from L(P)", () => {
    const s = scenario("inbound");
    expect(s.sent).toBe(11);
    expectArrivals("inbound", { wg: { from: { [a("loopback")]: 11 }, bytes: s.sentBytes } });
    expectCounters("inbound", zero, { packets: 11, bytes: s.sentBytes });
  });

  it.each([
    ["outbound from another port", "notWg", "loopback"],
    ["outbound handshake initiation", "wg", "loopback"],
    ["outbound short transport", "wg", "loopback"],
    ["outbound nonzero reserved bytes", "wg", "loopback"],
    ["inbound from an unknown remote", "stranger", "path"],
    ["inbound handshake response", "peer", "path"],
    ["inbound short transport", "peer", "path"],
  ] as Array<[string, SocketName, SocketName]>)(
    "%s: left alone, delivered unchanged from %s to %s",
    (name, from, to) => {
      const s = scenario(name);
      expectArrivals(name, { [to]: { from: { [a(from)]: s.sent }, bytes: s.sentBytes } });
      expectCounters(name, zero, zero);
    },
  );

  it("a burst of 200 datagrams each way is forwarded and counted in full", () => {
    const s = scenario("burst");
    expect(s.sent).toBe(400);
    const half = s.sentBytes / 2;
    expectArrivals("burst", {
      peer: { from: { [a("path")]: 200 }, bytes: half },
      wg: { from: { [a("loopback")]: 200 }, bytes: half },
    });
    expectCounters("burst", { packets: 200, bytes: half }, { packets: 200, bytes: half });
  });

  it("countersMany (batched passes over maps of 5,000 more entries) answers as a lookup per key does", () => {
    const { many, single } = result.batched;
    expect(many).toEqual(single);
    // The path's entries after the burst (and what came before it), then the keys with none.
    expect(Number(many[0]?.[0])).toBeGreaterThanOrEqual(200);
    expect(Number(many[2]?.[0])).toBeGreaterThanOrEqual(200);
    expect([many[1], many[3], many[4]]).toEqual([null, null, null]);
  });

  it("countersMoved names the entries that moved (a new one from 0), every entry in full", () => {
    const { first, again, after, inFull } = result.moved;
    // The path's two entries, used; the 5,000 fillers each way set and never used are not named...
    expect(first.count).toBe(2);
    expect(first.fillers).toBe(0);
    // ...but are in full (IPv4 maps; the IPv6 flow was never set).
    expect(first.fillersInFull).toBe(10_000);
    const lp = result.addresses.loopback;
    const [single] = result.batched.single;
    expect(first.path).toEqual([
      `inbound ${lp} ${result.batched.single[2]?.[0]}`,
      `outbound ${lp} ${single?.[0]}`,
    ]);
    expect(again).toEqual([]);
    // Deleted, set again and used once each way: counted from zero; the deleted fillers are not named.
    expect(after).toEqual([`inbound ${lp} 1`, `outbound ${lp} 1`]);
    expect(inFull).toBe(2);
  });

  it("after deleteOutbound/deleteInbound, datagrams reach their original destinations again", () => {
    expectArrivals("after delete", {
      loopback: { from: { [a("wg")]: 1 }, bytes: 1420 },
      path: { from: { [a("peer")]: 1 }, bytes: 1420 },
    });
    expectCounters("after delete", null, null);
  });

  it("entries set again forward again, counting from zero", () => {
    expectArrivals("set again", {
      peer: { from: { [a("path")]: 1 }, bytes: 1420 },
      wg: { from: { [a("loopback")]: 1 }, bytes: 1420 },
    });
    expectCounters("set again", { packets: 1, bytes: 1420 }, { packets: 1, bytes: 1420 });
  });

  it("the stack dropped nothing, and close() detached the program", () => {
    // A martian drop (see above) counts in no MIB: it shows only as received but not delivered.
    expect(
      result.snmp.IpInDelivers,
      `IP datagrams delivered vs received (all nonzero: ${JSON.stringify(result.snmp)})`,
    ).toBe(result.snmp.IpInReceives);
    for (const counter of [
      "UdpInErrors",
      "UdpInCsumErrors",
      "UdpNoPorts",
      "UdpRcvbufErrors",
      "IpInDiscards",
    ]) {
      expect(result.snmp[counter] ?? 0, `${counter} (all nonzero: ${JSON.stringify(result.snmp)})`).toBe(0);
    }
    expect(result.filtersAfterClose).not.toContain("tunnelbore_fast_path");
  });
});
