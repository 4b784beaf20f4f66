// The kernel fast path over the uplinks hosts have besides a plain Ethernet interface, each as a
// topology of its own, IPv4 and IPv6:
//  - no MAC header, as PPP, a raw-IP LTE modem or a VPN's tun has. Here another WireGuard tunnel
//    (wireguard-go's tun) between A and B, with the tested WireGuard's peer B behind it. At such an
//    interface's ingress a datagram starts at its IP header: the program for it
//    (tunnelbore_fast_path_l3) must find the peer's datagrams there, and the MTU check must count no
//    MAC header against it. Before, the kernel carried only A -> B and every datagram from B went
//    through user space.
//  - a bridge (br0 with the link as its port, the address on br0), as on a host that runs VMs or
//    containers: entries name br0, the bridge forwards out of its port.
// Each: the largest datagram the uplink takes whole goes through the kernel both ways, the next size up
// through Tunnelbore's socket, in fragments, and arrives.
import { describe, expect, it } from "vitest";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun } from "../lab/netns.js";
import { startWireGuard } from "../lab/wireguard.js";
import { pingCarried, setWireGuardMtu, startKernelCarried } from "../support/kernel-carriage.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";

type Family = "ipv4" | "ipv6";

const PINGS = 50;
const OUTER_PORT = 41000;
/** The outer tunnel's addresses: what the tested WireGuard's datagrams travel between. */
const OUTER = {
  ipv4: { a: "192.168.77.1", b: "192.168.77.2", bits: 30, host: 32 },
  ipv6: { a: "fd00:77::1", b: "fd00:77::2", bits: 64, host: 128 },
} as const;
const LINK_BITS = { ipv4: 24, ipv6: 64 } as const;

interface Uplink {
  /** A's uplink towards B. */
  dev: string;
  /** Its MTU. */
  mtu: number;
  /** The tc program expected at its ingress. */
  program: string;
}

/** Another WireGuard tunnel between A and B; B's endpoint moves behind it. */
async function tunUplink(pair: LinkedPair, family: Family): Promise<Uplink> {
  const outer = OUTER[family];
  const keys = [await generateKeyPair(), await generateKeyPair()] as const;
  const sides = [
    { ns: pair.nsA, link: pair.linkA, self: outer.a, peer: outer.b },
    { ns: pair.nsB, link: pair.linkB, self: outer.b, peer: outer.a },
  ];
  const names: string[] = [];
  for (const [i, side] of sides.entries()) {
    const other = sides[1 - i]!;
    const wg = await startWireGuard(side.ns, {
      privateKey: keys[i]!.privateKey,
      listenPort: OUTER_PORT,
      // The lab's helper takes one IPv4 address; an IPv6 outer address is added below.
      address: family === "ipv4" ? `${side.self}/${outer.bits}` : `10.55.0.${i + 1}/30`,
      peers: [
        {
          publicKey: keys[1 - i]!.publicKey,
          allowedIps: `${side.peer}/${outer.host}`,
          endpoint: family === "ipv4" ? `${other.link}:${OUTER_PORT}` : `[${other.link}]:${OUTER_PORT}`,
        },
      ],
    });
    if (family === "ipv6") {
      await nsRun(side.ns, "ip", [
        "-6",
        "addr",
        "add",
        `${side.self}/${outer.bits}`,
        "dev",
        wg.name,
        "nodad",
      ]);
    }
    names.push(wg.name);
  }
  const endpointB = family === "ipv4" ? `${outer.b}:51820` : `[${outer.b}]:51820`;
  await nsRun(pair.nsA, "wg", ["set", pair.wgA.name, "peer", pair.keyB.publicKey, "endpoint", endpointB]);
  // wireguard-go's default MTU.
  return { dev: names[0]!, mtu: 1420, program: "tunnelbore_fast_path_l3" };
}

/** A's link enslaved to br0, its address moved onto br0. */
async function bridgeUplink(pair: LinkedPair, family: Family): Promise<Uplink> {
  const ns = pair.nsA;
  const address = `${pair.linkA}/${LINK_BITS[family]}`;
  await nsRun(ns, "ip", ["link", "add", "br0", "type", "bridge"]);
  await nsRun(ns, "ip", ["link", "set", "eth0", "master", "br0"]);
  await nsRun(ns, "ip", ["addr", "del", address, "dev", "eth0"]);
  await nsRun(
    ns,
    "ip",
    family === "ipv6"
      ? ["-6", "addr", "add", address, "dev", "br0", "nodad"]
      : ["addr", "add", address, "dev", "br0"],
  );
  await nsRun(ns, "ip", ["link", "set", "br0", "up"]);
  return { dev: "br0", mtu: 1500, program: "tunnelbore_fast_path:" };
}

const UPLINKS = { "no MAC header (a tun)": tunUplink, "a bridge": bridgeUplink } as const;

/**
 * Ping payloads around the uplink's MTU: the largest whose WireGuard datagram it takes whole, and the
 * next size up (inner packets of multiples of 16, so WireGuard pads none).
 */
function pingSizes(uplinkMtu: number, family: Family): { fits: number; over: number } {
  const outer = (family === "ipv4" ? 20 : 40) + 8 + 32;
  const inner = Math.floor((uplinkMtu - outer) / 16) * 16;
  return { fits: inner - 28, over: inner + 16 - 28 };
}

for (const [kind, makeUplink] of Object.entries(UPLINKS)) {
  for (const family of ["ipv4", "ipv6"] as const) {
    describe(`kernel fast path, ${family} path out of an uplink with ${kind}`, () => {
      const fx = useTunnelbores(async () => {
        const pair = await createLinkedPair(family === "ipv4" ? "ku4" : "ku6", family);
        const uplink = await makeUplink(pair, family);
        // WireGuard's MTU above what fits the uplink, so that the next size up exists.
        await setWireGuardMtu(pair, uplink.mtu - 40);
        return { ...pair, uplink };
      });

      it("carries both ways in the kernel, and hands what does not fit the uplink to user space", async () => {
        const { pair } = fx;
        await pair.waitForPing();
        const { tb, peer } = await startKernelCarried(fx);
        expect((await tb.status()).forwarding.interfaces).toContain(pair.uplink.dev);
        const carried = (size: number) => pingCarried(pair.nsA, pair.tunB, size, PINGS, peer);

        const sizes = pingSizes(pair.uplink.mtu, family);
        const fits = await carried(sizes.fits);
        expect(fits.kernelTx).toBeGreaterThanOrEqual(PINGS);
        expect(fits.kernelRx).toBeGreaterThanOrEqual(PINGS);
        expect(fits.tx - fits.kernelTx).toBeLessThan(5);
        expect(fits.rx - fits.kernelRx).toBeLessThan(5);
        const over = await carried(sizes.over);
        expect(over.tx - over.kernelTx).toBeGreaterThanOrEqual(PINGS);
        const filters = await nsRun(pair.nsA, "tc", ["filter", "show", "dev", pair.uplink.dev, "ingress"]);
        expect(filters).toContain(pair.uplink.program);
      }, 90_000);
    });
  }
}
