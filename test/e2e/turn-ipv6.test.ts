// TURN over IPv6: the TURN server named by its IPv6 address (an IPv6-only TURN host, or a client whose
// way out is IPv6), both sides behind symmetric IPv4 NATs and no direct IPv6 between them, so the
// relay is all that connects them. werift opened its TURN client's UDP socket as udp4 whatever the
// server's family, so an allocation at an IPv6 address never left (patches/README.md).
import { describe, expect, it } from "vitest";
import type { Coturn } from "../lab/coturn.js";
import { nsRun } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import type { ProductLab } from "../lab/tunnelbore-lab.js";
import { pingCarried } from "../support/kernel-carriage.js";
import { labPerTest } from "../support/lab-per-test.js";
import { waitFor } from "../support/wait-for.js";

const PINGS = 20;

/** The UDP flows over IPv6 to `coturn`'s port that the router of `host` tracks (its stateful firewall). */
async function turnFlowsVia(lab: ProductLab, host: string, coturn: Coturn): Promise<string> {
  const router = lab.lab.host(host).router;
  if (!router) throw new Error(`${host} has no router`);
  return nsRun(router.ns, "conntrack", ["-L", "-f", "ipv6", "-p", "udp", "--dport", String(coturn.port)]);
}

describe("TURN over UDP at an IPv6 address", () => {
  const createLab = labPerTest();

  it("relays symmetric <-> symmetric, on allocations made over IPv6, carried by the kernel", async () => {
    const lab = await createLab({
      ipv6: true,
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--ebpf", "on"] },
        { name: "b", nat: "symmetric", flags: ["--ebpf", "on"] },
      ],
      turn: { family: 6 },
      startTunnelbores: false,
    });
    const a6 = lab.lab.host("a").address6!;
    const b6 = lab.lab.host("b").address6!;
    // No UDP between a's and b's global IPv6 addresses: no direct IPv6 pair.
    await lab.blockDirectIpv6("a", "b");
    await lab.startTunnelbore("a");
    await lab.startTunnelbore("b");
    await lab.waitForPing("a", "b", 40_000);
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    // Both allocated over UDP from their IPv6 addresses; the side on its own allocation says so.
    for (const [host, address] of [
      ["a", a6],
      ["b", b6],
    ] as const) {
      expect(await turnFlowsVia(lab, host, lab.coturn)).toContain(
        `src=${address} dst=${lab.coturn.address6}`,
      );
    }
    const relaying = (await lab.peerStatus("a", "b")).pair?.localType === "relay" ? "a" : "b";
    const other = relaying === "a" ? "b" : "a";
    expect((await lab.peerStatus(relaying, other)).pair).toMatchObject({
      localType: "relay",
      relayTransport: "udp",
    });
    await lab.waitForKernelFastPath("a", "b", 15_000);

    // wireguard-go's 1420: a full-size datagram is 1452 bytes, 1504 with ChannelData and IPv6 headers.
    // The side on its own allocation carries what fits in the kernel, the rest from user space (in
    // fragments), and status says to set 1416.
    const peer = () => lab.peerStatus(relaying, other);
    const to = lab.host(other).tunnelAddress;
    const fits = await pingCarried(lab.host(relaying).ns, to, 1380, PINGS, peer); // inner 1408: 1492
    expect(fits.kernelTx).toBeGreaterThanOrEqual(PINGS);
    const over = await pingCarried(lab.host(relaying).ns, to, 1392, PINGS, peer); // inner 1420: 1504
    expect(over.tx - over.kernelTx).toBeGreaterThanOrEqual(PINGS);
    const mtuWarning = async () =>
      (await lab.status(relaying)).warnings.find((w) => w.startsWith(`${lab.host(relaying).wg.name}'s MTU`));
    await waitFor(async () => (await mtuWarning()) !== undefined, {
      what: "the MTU warning for the relayed IPv6 path",
      timeoutMs: 10_000,
      intervalMs: 200,
    });
    const warning = await mtuWarning();
    expect(warning).toContain(`peer ${lab.host(other).keys.publicKey}'s path`);
    expect(warning).toContain("relayed by our TURN server over UDP over IPv6: 1416 on the uplink's 1500");
    expect(warning).toContain('set "MTU = 1416"');
    // The other side sends plain UDP over IPv4 to the relayed address: 1480, no warning.
    const otherWarnings = (await lab.status(other)).warnings;
    expect(otherWarnings.filter((w) => w.startsWith(`${lab.host(other).wg.name}'s MTU`))).toEqual([]);
    await nsRun(lab.host(relaying).ns, "ip", [
      "link",
      "set",
      "dev",
      lab.host(relaying).wg.name,
      "mtu",
      "1416",
    ]);
    await waitFor(async () => (await mtuWarning()) === undefined, {
      what: "the MTU warning gone at 1416",
      timeoutMs: 5000,
      intervalMs: 100,
    });

    // coturn restarted (every allocation lost): relayed again, over IPv6, in the kernel.
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress, 100);
    try {
      await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing", intervalMs: 50 });
      const restartedAt = Date.now();
      await lab.coturn.restart();
      await waitFor(() => ping.receivedSince(restartedAt) >= 3, {
        what: "pings answered after coturn's restart",
        timeoutMs: 30_000,
      });
    } finally {
      await ping.stop();
    }
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    await lab.waitForKernelFastPath("a", "b", 15_000);
    // Which side's own allocation ICE nominated may differ from before: the one that has it, over UDP.
    const pairs = [(await lab.peerStatus("a", "b")).pair, (await lab.peerStatus("b", "a")).pair];
    expect(pairs.find((p) => p?.localType === "relay")).toMatchObject({ relayTransport: "udp" });
  }, 120_000);
});
