// The kernel fast path cleans up after itself, with real wireguard-go and `tunnelbore run --ebpf`:
// a SIGKILLed instance's filters stop forwarding once its heartbeat is stale (and the next start
// removes them); two instances in one namespace (two WireGuard interfaces) never share a tc
// preference, and one's filter passes the other's traffic on; route_localnet on lo is restored by the
// last instance to stop when one of them set it, and kept while another still needs it.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { filterPreference } from "../../ebpf/loader.js";
import { createLinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun, uniqueTag } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

interface Filter {
  /** Device and direction, e.g. "lo ingress". */
  at: string;
  pref: number;
  progId: number;
}

/** Our programs' tc filters at ingress of `devs` and at lo's egress in `ns`. */
async function ourFilters(ns: string, devs = ["lo", "eth0"]): Promise<Filter[]> {
  const all: Filter[] = [];
  const places = [...devs.map((dev) => [dev, "ingress"]), ...(devs.includes("lo") ? [["lo", "egress"]] : [])];
  for (const [dev = "", direction = ""] of places) {
    const out = await nsRun(ns, "tc", ["-j", "filter", "show", "dev", dev, direction]);
    const filters = JSON.parse(out.trim() || "[]") as Array<{
      pref: number;
      options?: { prog?: { id: number; name: string } };
    }>;
    for (const f of filters) {
      if (f.options?.prog?.name === "tunnelbore_fast")
        all.push({ at: `${dev} ${direction}`, pref: f.pref, progId: f.options.prog.id });
    }
  }
  return all;
}

const PLACES = ["eth0 ingress", "lo egress", "lo ingress"];

/** Datagrams a program's outbound entries rewrote (read from the kernel by map id: its pins are gone). */
async function outboundPackets(ns: string, progId: number): Promise<bigint> {
  const prog = JSON.parse(await nsRun(ns, "bpftool", ["-j", "prog", "show", "id", String(progId)])) as {
    map_ids: number[];
  };
  for (const id of prog.map_ids) {
    const map = JSON.parse(await nsRun(ns, "bpftool", ["-j", "map", "show", "id", String(id)])) as {
      name: string;
    };
    if (map.name !== "tb_outbound") continue;
    const entries = JSON.parse(await nsRun(ns, "bpftool", ["-j", "map", "dump", "id", String(id)])) as Array<{
      formatted?: { value: { packets: number } };
    }>;
    return entries.reduce((sum, e) => sum + BigInt(e.formatted?.value.packets ?? 0), 0n);
  }
  throw new Error(`program ${progId} has no tb_outbound map`);
}

const routeLocalnet = async (ns: string): Promise<string> =>
  (await nsRun(ns, "cat", ["/proc/sys/net/ipv4/conf/lo/route_localnet"])).trim();

/** An interface name of our own whose first-choice tc preference is the same as `other`'s. */
function collidingName(other: string): string {
  const tag = uniqueTag().slice(0, 4);
  for (let i = 0; ; i++) {
    const name = `tbk${tag}${i}`;
    if (filterPreference(name) === filterPreference(other)) return name;
  }
}

describe("kernel fast path cleanup", () => {
  const fx = useTunnelbores(() => createLinkedPair("kcl"));
  const peerOf = (tb: TunnelboreProcess) => tb.peerStatus(fx.pair.keyB.publicKey);
  const startA = async (): Promise<TunnelboreProcess> => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    return tb;
  };
  const kernelCarries = async (tb: TunnelboreProcess) => {
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf(tb)).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
  };

  it("a SIGKILLed instance's filters stop forwarding once it is silent; the next start removes them", async () => {
    const first = await startA();
    await kernelCarries(first);
    const filters = await ourFilters(fx.pair.nsA);
    expect(filters.map((f) => f.at).sort()).toEqual(PLACES);
    const progId = filters.find((f) => f.at === "lo ingress")?.progId ?? 0;
    await first.stop("SIGKILL");
    fx.running.length = 0;
    // Its filters are still attached (nobody was there to remove them)...
    expect(await ourFilters(fx.pair.nsA)).toEqual(filters);
    // ...but with the owner's heartbeat stale the program lets WireGuard's data pass to the dead
    // sockets: nothing carries the tunnel any more (the old program did so for ever).
    await waitFor(async () => !(await fx.pair.pingOnce()), { what: "the tunnel stops", timeoutMs: 15_000 });
    const before = await outboundPackets(fx.pair.nsA, progId);
    const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 10, interval: 20 });
    expect(result.received).toBe(0);
    expect(await outboundPackets(fx.pair.nsA, progId)).toBe(before);

    const second = await startA();
    await kernelCarries(second);
    const now = await ourFilters(fx.pair.nsA);
    expect(now.map((f) => f.at).sort()).toEqual(PLACES);
    // Both of the dead instance's programs (lo's ingress and egress) are gone, not only one.
    expect(now.some((f) => filters.some((old) => old.progId === f.progId))).toBe(false);
  }, 90_000);

  describe("two instances in one namespace", () => {
    let other: WireGuardInterface;
    let otherDirs: TunnelboreDirs;
    beforeAll(async () => {
      const key = await generateKeyPair();
      other = await startWireGuard(
        fx.pair.nsA,
        { privateKey: key.privateKey, listenPort: 51830, address: "10.98.0.1/24" },
        collidingName(fx.pair.wgA.name),
      );
      otherDirs = tunnelboreDirs();
    });
    afterAll(() => otherDirs?.cleanup());
    const startOther = async (): Promise<TunnelboreProcess> => {
      // Its own catch-all and loopback ports: A's instance runs in the same namespace.
      const tb = await startTunnelbore(fx.pair.nsA, other.name, otherDirs, [
        "--ebpf",
        "--listen",
        "127.0.0.1:51831",
        "--loopback-port-base",
        "52822",
      ]);
      fx.running.push(tb);
      return tb;
    };

    it("take distinct tc preferences, and the first filter passes the other's traffic on", async () => {
      expect(filterPreference(other.name)).toBe(filterPreference(fx.pair.wgA.name));
      // The other instance starts first: its filter on lo takes the shared first choice and comes
      // first in tc's order, so A's datagrams meet it before A's own filter.
      const first = await startOther();
      const a = await startA();
      await kernelCarries(a);
      const lo = (await ourFilters(fx.pair.nsA, ["lo"])).filter((f) => f.at === "lo ingress");
      expect(lo).toHaveLength(2);
      expect(new Set(lo.map((f) => f.pref)).size).toBe(2);
      expect(Math.min(...lo.map((f) => f.pref))).toBe(filterPreference(fx.pair.wgA.name));
      const before = await peerOf(a);
      const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 50, interval: 10 });
      expect(result.received).toBe(50);
      await waitFor(async () => (await peerOf(a)).kernelTxDatagrams - before.kernelTxDatagrams >= 50, {
        what: "A's kernel counters include the pings",
        timeoutMs: 5000,
        intervalMs: 100,
      });
      expect((await first.status()).ready).toBe(true);
    }, 90_000);

    it("route_localnet: set by the first, kept while another needs it, restored by the last", async () => {
      expect(await routeLocalnet(fx.pair.nsA)).toBe("0");
      const a = await startA();
      expect(await routeLocalnet(fx.pair.nsA)).toBe("1");
      const b = await startOther();
      expect(await a.stop("SIGTERM")).toBe(0);
      expect(await routeLocalnet(fx.pair.nsA)).toBe("1");
      expect(await b.stop("SIGTERM")).toBe(0);
      fx.running.length = 0;
      expect(await routeLocalnet(fx.pair.nsA)).toBe("0");
    }, 60_000);

    it("route_localnet: the duty passes on from a killed instance; one set before us stays set", async () => {
      const a = await startA();
      await a.stop("SIGKILL");
      fx.running.length = 0;
      expect(await routeLocalnet(fx.pair.nsA)).toBe("1");
      const b = await startOther();
      expect(await b.stop("SIGTERM")).toBe(0);
      fx.running.length = 0;
      expect(await routeLocalnet(fx.pair.nsA)).toBe("0");
      expect(await ourFilters(fx.pair.nsA)).toEqual([]);

      await nsRun(fx.pair.nsA, "sysctl", ["-qw", "net.ipv4.conf.lo.route_localnet=1"]);
      const again = await startA();
      expect(await again.stop("SIGTERM")).toBe(0);
      fx.running.length = 0;
      expect(await routeLocalnet(fx.pair.nsA)).toBe("1");
      await nsRun(fx.pair.nsA, "sysctl", ["-qw", "net.ipv4.conf.lo.route_localnet=0"]);
    }, 60_000);
  });
});
