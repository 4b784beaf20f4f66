// WireGuard datagrams larger than the uplink carries. wg-quick gives an interface with an endpoint at
// 127.x loopback's MTU less 80 (65456), so full-size packets of a routed LAN, large UDP or ICMP make
// datagrams above 1500 bytes. WireGuard's own socket would send them in IP fragments; the kernel fast
// path's redirect cannot fragment, and the uplink dropped them. Now the kernel carries what fits (the
// ChannelData header and IPv6's longer header counted) and hands the rest to user space, whose socket
// fragments as WireGuard's would; status says which MTU to set.
import { describe, expect, it } from "vitest";
import { createLinkedPair } from "../lab/linked-pair.js";
import { createNamespace, generateKeyPair, nsRun, uniqueTag } from "../lab/netns.js";
import { startTunnelbore } from "../lab/tunnelbore.js";
import { wgQuickUp } from "../lab/wg-quick.js";
import { pingCarried, setWireGuardMtu, startKernelCarried } from "../support/kernel-carriage.js";
import { labPerTest } from "../support/lab-per-test.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

const PINGS = 20;

/** Datagrams the namespace's `dev` dropped on transmit (what a redirect beyond the MTU came to). */
async function txDropped(ns: string, dev: string): Promise<number> {
  const out = await nsRun(ns, "ip", ["-s", "-j", "link", "show", "dev", dev]);
  const [link] = JSON.parse(out) as Array<{ stats64: { tx: { dropped: number } } }>;
  return link?.stats64.tx.dropped ?? 0;
}

/** Ping payloads (`ping -s`): inner packets of multiples of 16, so WireGuard pads none of them. */
const SIZES = {
  // inner 1440: WireGuard's 1472 in IPv4 is 1500 exactly; in IPv6 1520, so the 20 bytes more must count.
  atIpv4Mtu: 1412,
  // inner 1408: WireGuard's 1440 in IPv6 is 1488.
  belowIpv6Mtu: 1380,
  // inner 1456: 1516 in IPv4.
  overIpv4Mtu: 1428,
  large: 3000,
};

for (const family of ["ipv4", "ipv6"] as const) {
  describe(`kernel fast path, ${family} static path, WireGuard's MTU above the uplink's`, () => {
    const fx = useTunnelbores(() => createLinkedPair(family === "ipv4" ? "km4" : "km6", family));

    it("carries what fits in the kernel, the rest fragmented from user space, and status names the MTU", async () => {
      const { pair } = fx;
      await setWireGuardMtu(pair, 65456); // as wg-quick sets it for an endpoint at 127.x
      const { tb, peer } = await startKernelCarried(fx);
      const droppedBefore = await txDropped(pair.nsA, "eth0");
      const fits = family === "ipv4" ? [SIZES.atIpv4Mtu] : [SIZES.belowIpv6Mtu];
      const over = family === "ipv4" ? [SIZES.overIpv4Mtu, SIZES.large] : [SIZES.atIpv4Mtu, SIZES.large];
      for (const size of fits) {
        const carried = await pingCarried(pair.nsA, pair.tunB, size, PINGS, peer);
        expect(carried.kernelTx, `${size}: by the kernel`).toBeGreaterThanOrEqual(PINGS);
      }
      for (const size of over) {
        const carried = await pingCarried(pair.nsA, pair.tunB, size, PINGS, peer);
        expect(carried.tx - carried.kernelTx, `${size}: by user space`).toBeGreaterThanOrEqual(PINGS);
        expect(carried.kernelTx, `${size}: not by the kernel`).toBeLessThan(PINGS);
      }
      expect(await txDropped(pair.nsA, "eth0")).toBe(droppedBefore);
      expect((await peer()).kernelFastPath).toBe(true);

      const mtuWarning = (w: string[]) => w.find((line) => line.startsWith(`${pair.wgA.name}'s MTU`));
      expect(mtuWarning((await tb.status()).warnings)).toContain('set "MTU = 1420"');
      // Fixed at run time: the interface's link line makes Tunnelbore look again.
      await nsRun(pair.nsA, "ip", ["link", "set", "dev", pair.wgA.name, "mtu", "1420"]);
      await waitFor(async () => mtuWarning((await tb.status()).warnings) === undefined, {
        what: "the MTU warning gone",
        timeoutMs: 5000,
        intervalMs: 100,
      });
      expect(tb.logs().some((l) => l.msg === "WireGuard's MTU fits the uplink now")).toBe(true);
    }, 90_000);
  });
}

describe("kernel fast path, relayed path, a datagram the ChannelData header takes over the MTU", () => {
  const createLab = labPerTest();

  it("goes from user space (and arrives); what fits with the header stays in the kernel", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--ebpf", "on"] },
        { name: "b", nat: "symmetric", flags: ["--ebpf", "on"] },
      ],
    });
    // 1440: a full-size datagram is 1500 bytes in IPv4 as it is, 1504 with the header.
    for (const name of ["a", "b"]) {
      await nsRun(lab.host(name).ns, "ip", ["link", "set", "dev", lab.host(name).wg.name, "mtu", "1440"]);
    }
    await lab.waitForPing("a", "b", 40_000);
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    await lab.waitForKernelFastPath("a", "b", 15_000);
    // The side on its own allocation sends ChannelData; the other sends plain UDP to that relay's
    // address (which side ICE nominated that way varies): ping from the first.
    const [from, to] = (await lab.peerStatus("a", "b")).pair?.localType === "relay" ? ["a", "b"] : ["b", "a"];
    const peer = () => lab.peerStatus(from, to);
    expect((await peer()).pair).toMatchObject({ localType: "relay", relayTransport: "udp" });
    const [sender, receiver] = [lab.host(from), lab.host(to)];
    const fits = await pingCarried(sender.ns, receiver.tunnelAddress, SIZES.belowIpv6Mtu, PINGS, peer);
    expect(fits.kernelTx).toBeGreaterThanOrEqual(PINGS);
    const over = await pingCarried(sender.ns, receiver.tunnelAddress, SIZES.atIpv4Mtu, PINGS, peer);
    expect(over.tx - over.kernelTx).toBeGreaterThanOrEqual(PINGS);
    expect(over.kernelTx).toBeLessThan(PINGS);
    expect((await peer()).pathKind).toBe("relay");
  }, 120_000);
});

describe("wg-quick with a peer's endpoint at 127.x", () => {
  const fx = useTunnelbores(async () => {
    const ns = await createNamespace(`tbt-wqm-${uniqueTag()}`);
    // An uplink of 1500 (both ends of a veth here: nothing leaves the namespace).
    await nsRun(ns, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth1"]);
    for (const dev of ["eth0", "eth1"]) await nsRun(ns, "ip", ["link", "set", dev, "up"]);
    const peer = await generateKeyPair();
    const wg = await wgQuickUp(ns, {
      privateKey: (await generateKeyPair()).privateKey,
      listenPort: 51820,
      addresses: ["10.98.0.1/24"],
      peers: [{ publicKey: peer.publicKey, allowedIps: ["10.98.0.2/32"], endpoint: "127.0.0.1:51821" }],
    });
    return { ns, wg };
  });

  it("gets loopback's MTU less 80, and status says what to set", async () => {
    const { ns, wg } = fx.pair;
    const link = await nsRun(ns, "ip", ["-o", "link", "show", "dev", wg.name]);
    expect(link).toContain("mtu 65456");
    const tb = await startTunnelbore(ns, wg.name, fx.dirs, ["--ebpf", "off"]);
    fx.running.push(tb);
    const warning = (await tb.status()).warnings.find((w) => w.startsWith(`${wg.name}'s MTU 65456`));
    expect(warning).toContain("wg-quick's choice for an endpoint at 127.x");
    expect(warning).toContain('set "MTU = 1420"');
    expect(
      tb.logs().some((l) => l.level === "warn" && String(l.msg).startsWith(`${wg.name}'s MTU 65456`)),
    ).toBe(true);
  }, 60_000);
});
