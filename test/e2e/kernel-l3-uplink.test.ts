// The kernel fast path over an uplink whose frames have no MAC header, as PPP, a raw-IP LTE modem or a
// VPN's tun has. Here the uplink is another WireGuard tunnel (wireguard-go's tun) between A and B, and
// the tested WireGuard's peer B sits behind it. At such an interface's ingress a datagram starts at its
// IP header: the program for it (tunnelbore_fast_path_l3) must find the peer's datagrams there, and
// the MTU check must count no MAC header against it. Before, the kernel carried only A -> B and every
// datagram from B went through user space.
import { describe, expect, it } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import { createLinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { startTunnelbore } from "../lab/tunnelbore.js";
import { startWireGuard } from "../lab/wireguard.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

const PINGS = 50;
const OUTER_PORT = 41000;
/** The outer tunnel's addresses: what the tested WireGuard's datagrams travel between. */
const OUTER = {
  ipv4: { a: "192.168.77.1", b: "192.168.77.2", bits: 30, host: 32 },
  ipv6: { a: "fd00:77::1", b: "fd00:77::2", bits: 64, host: 128 },
} as const;
/**
 * Ping payloads around the outer tunnel's MTU (wireguard-go's 1420; inner packets of multiples of 16,
 * so WireGuard pads none): the largest datagram it takes whole, and the next size up.
 */
const SIZES = {
  ipv4: { fits: 1332, over: 1348 }, // inner 1360: 1420 in IPv4 exactly; inner 1376: 1436
  ipv6: { fits: 1300, over: 1316 }, // inner 1328: 1408 in IPv6; inner 1344: 1424
} as const;

for (const family of ["ipv4", "ipv6"] as const) {
  describe(`kernel fast path, ${family} path out of an uplink without a MAC header`, () => {
    const fx = useTunnelbores(async () => {
      const pair = await createLinkedPair(family === "ipv4" ? "kl4" : "kl6", family);
      const outer = OUTER[family];
      const keys = [await generateKeyPair(), await generateKeyPair()] as const;
      const sides = [
        { ns: pair.nsA, link: pair.linkA, self: outer.a, peer: outer.b, key: keys[0], peerKey: keys[1] },
        { ns: pair.nsB, link: pair.linkB, self: outer.b, peer: outer.a, key: keys[1], peerKey: keys[0] },
      ];
      const names: string[] = [];
      for (const [i, side] of sides.entries()) {
        const other = sides[1 - i]!;
        const wg = await startWireGuard(side.ns, {
          privateKey: side.key.privateKey,
          listenPort: OUTER_PORT,
          // The lab's helper takes one IPv4 address; an IPv6 outer address is added below.
          address: family === "ipv4" ? `${side.self}/${outer.bits}` : `10.55.0.${i + 1}/30`,
          peers: [
            {
              publicKey: side.peerKey.publicKey,
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
      // The tested WireGuard: B at its address behind the outer tunnel, with an MTU above what fits it.
      const endpointB = family === "ipv4" ? `${outer.b}:51820` : `[${outer.b}]:51820`;
      await nsRun(pair.nsA, "wg", ["set", pair.wgA.name, "peer", pair.keyB.publicKey, "endpoint", endpointB]);
      for (const [ns, wg] of [
        [pair.nsA, pair.wgA],
        [pair.nsB, pair.wgB],
      ] as const) {
        await nsRun(ns, "ip", ["link", "set", "dev", wg.name, "mtu", "1392"]);
      }
      return { ...pair, outerA: names[0]! };
    });

    it("carries both ways in the kernel, and hands what does not fit the uplink to user space", async () => {
      const { pair } = fx;
      await pair.waitForPing();
      const tb = await startTunnelbore(pair.nsA, pair.wgA.name, fx.dirs, ["--ebpf", "on"]);
      fx.running.push(tb);
      const peer = () => tb.peerStatus(pair.keyB.publicKey);
      await pair.waitForPing();
      await waitFor(async () => (await peer()).kernelFastPath, {
        what: "the kernel carries the peer",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      expect((await tb.status()).forwarding.interfaces).toContain(pair.outerA);

      const carried = async (size: number) => {
        const before = await peer();
        const result = await ping(pair.nsA, pair.tunB, { count: PINGS, interval: 10, size });
        expect(result.received, `pings of ${size} bytes answered`).toBe(PINGS);
        const delta = (now: PeerStatus) => ({
          kernelTx: now.kernelTxDatagrams - before.kernelTxDatagrams,
          kernelRx: now.kernelRxDatagrams - before.kernelRxDatagrams,
          tx: now.txDatagrams - before.txDatagrams,
          rx: now.rxDatagrams - before.rxDatagrams,
        });
        await waitFor(async () => delta(await peer()).tx >= PINGS && delta(await peer()).rx >= PINGS, {
          what: `the counters include the pings of ${size} bytes`,
          timeoutMs: 5000,
          intervalMs: 100,
        });
        return delta(await peer());
      };

      // The largest datagram the outer tunnel takes whole: the kernel both ways.
      const fits = await carried(SIZES[family].fits);
      expect(fits.kernelTx).toBeGreaterThanOrEqual(PINGS);
      expect(fits.kernelRx).toBeGreaterThanOrEqual(PINGS);
      expect(fits.tx - fits.kernelTx).toBeLessThan(5);
      expect(fits.rx - fits.kernelRx).toBeLessThan(5);
      // One size up: A's requests go through Tunnelbore's socket, in fragments, and arrive.
      const over = await carried(SIZES[family].over);
      expect(over.tx - over.kernelTx).toBeGreaterThanOrEqual(PINGS);
      const filters = await nsRun(pair.nsA, "tc", ["filter", "show", "dev", pair.outerA, "ingress"]);
      expect(filters).toContain("tunnelbore_fast_path_l3");
    }, 90_000);
  });
}
