// IPv6-only hosts: no IPv4 address or route on the uplink (an IPv6-only ISP or cloud network), behind
// routers whose IPv6 is not translated but filtered statefully, as home routers do. They reach the
// introduction, STUN and TURN servers at their IPv6 addresses; WireGuard talks to 127.x, or to [::1] (L6(P))
// while the kernel carries a direct IPv6 path.
import { describe, expect, it } from "vitest";
import type { NetcheckReport } from "../../src/netcheck/netcheck.js";
import { nsRun } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import { CLI } from "../lab/tunnelbore.js";
import type { TurnLabSpec } from "../lab/tunnelbore-lab.js";
import { pingCarried } from "../support/kernel-carriage.js";
import { labPerTest } from "../support/lab-per-test.js";
import { waitFor } from "../support/wait-for.js";

const PINGS = 20;

const CASES: ReadonlyArray<{ name: string; direct: boolean; turn: TurnLabSpec }> = [
  {
    name: "connect directly over IPv6 through their stateful firewalls, carried by the kernel",
    direct: true,
    turn: { family: 6 },
  },
  {
    name: "relay through TURN at its IPv6 address when no direct IPv6 path exists, carried by the kernel",
    direct: false,
    turn: { family: 6 },
  },
  {
    name: "relay through TURN given by a name with A and AAAA records, over UDP, carried by the kernel",
    direct: false,
    turn: { hostname: "turn.tbt.test" },
  },
  {
    name: "relay through TURN that relays over IPv6 only (IPv6 relayed addresses), carried by the kernel",
    direct: false,
    turn: { family: 6, relayIpv6Only: true },
  },
];

describe("IPv6-only hosts", () => {
  const createLab = labPerTest();

  for (const { name, direct, turn } of CASES) {
    it(name, async () => {
      const lab = await createLab({
        ipv6: true,
        hosts: [
          { name: "a", nat: "eim", ipv6Only: true, flags: ["--ebpf", "on"] },
          { name: "b", nat: "symmetric", ipv6Only: true, flags: ["--ebpf", "on"] },
        ],
        turn,
        startTunnelbores: false,
      });
      expect(await nsRun(lab.host("a").ns, "ip", ["-4", "-o", "addr", "show", "dev", "eth0"])).toBe("");
      const b6 = lab.lab.host("b").address6!;
      if (!direct) {
        await lab.blockDirectIpv6("a", "b");
      }
      await lab.startTunnelbore("a");
      await lab.startTunnelbore("b");
      await lab.waitForPing("a", "b", 40_000);
      // A fresh session's first pair may be the relay one (waitForDirectPath): direct in the end.
      const status = direct
        ? await lab.waitForDirectPath("a", "b", "between IPv6-only hosts")
        : await lab.peerStatus("a", "b");
      expect(status.pathKind).toBe(direct ? "direct" : "relay");
      // The side on its own allocation (made over IPv6) relays over UDP. (With IPv4 relayed addresses
      // both sides are; with IPv6 ones the other may send to it from its own address.)
      const relaying = status.pair?.localType === "relay" ? "a" : "b";
      if (direct) expect(status.remote).toContain(b6);
      else {
        const other = relaying === "a" ? "b" : "a";
        expect((await lab.peerStatus(relaying, other)).pair).toMatchObject({
          localType: "relay",
          relayTransport: "udp",
        });
      }
      await lab.waitForKernelFastPath("a", "b", 15_000);
      const carried = await pingCarried(lab.host("a").ns, lab.host("b").tunnelAddress, 56, PINGS, () =>
        lab.peerStatus("a", "b"),
      );
      expect(carried.kernelTx).toBeGreaterThanOrEqual(PINGS);
      expect((await lab.status("a")).intro).toMatchObject({ state: "connected" });
      // netcheck, with run's servers (at their IPv6 addresses, or the name): UDP and TURN over UDP work.
      const netcheck = await nsRun(lab.host("a").ns, process.execPath, [
        CLI,
        "netcheck",
        "--run-dir",
        lab.host("a").dirs.runDir,
        "--json",
      ]);
      const report = JSON.parse(netcheck) as NetcheckReport;
      expect(report.stun?.mapped[0]?.startsWith(`[${lab.lab.host("a").address6}]:`)).toBe(true);
      expect(report.mapping).toBe("no-nat");
      expect(report.udpBlocked).toBe(false);
      expect(report.turn.udp).toMatchObject({ status: "ok", mapped: expect.stringMatching(/^\[2001:/) });
      // A server without an IPv4 relay address gives IPv6 ones, asked for after its 440 (run's relay
      // above could only be on such addresses).
      if (turn.relayIpv6Only) {
        expect(report.turn.udp).toMatchObject({ relayed: expect.stringMatching(/^\[2001:db8:113::/) });
      }
      // A relay over UDP over IPv6 takes 1416 at most, whichever path run has now.
      expect(report.mtu?.warning).toContain(
        `more than a path relayed by ${report.turn.udp.status === "ok" ? report.turn.udp.server : "?"} carries`,
      );
      expect(report.mtu?.warning).toContain('set "MTU = 1416"');
      if (direct) {
        // At 1440 (fits IPv4), the host's direct paths, over IPv6 as it routes nothing else, do not fit
        // either: the relay named, and they.
        await nsRun(lab.host("a").ns, "ip", ["link", "set", "dev", lab.host("a").wg.name, "mtu", "1440"]);
        const at1440 = JSON.parse(
          await nsRun(lab.host("a").ns, process.execPath, [
            CLI,
            "netcheck",
            "--run-dir",
            lab.host("a").dirs.runDir,
            "--json",
          ]),
        ) as NetcheckReport;
        expect(at1440.mtu?.warning).toContain(
          "carries in one piece (relayed by our TURN server over UDP over IPv6",
        );
        expect(at1440.mtu?.warning).toContain("(and other paths)");
        await nsRun(lab.host("a").ns, "ip", ["link", "set", "dev", lab.host("a").wg.name, "mtu", "1420"]);
      }
      if (!direct) {
        // Relayed by our TURN server over UDP over IPv6: 1452 + 52 bytes at wireguard-go's 1420.
        await waitFor(
          async () => (await lab.status(relaying)).warnings.some((w) => w.includes('set "MTU = 1416"')),
          { what: `${relaying}'s MTU warning for its relayed IPv6 path`, timeoutMs: 10_000, intervalMs: 200 },
        );
      }
    }, 120_000);
  }

  it("direct, WireGuard hears the peer from [::1]; blocked, relayed and back on 127.x; pings pass throughout", async () => {
    const lab = await createLab({
      ipv6: true,
      hosts: [
        { name: "a", nat: "eim", ipv6Only: true, flags: ["--ebpf", "on"] },
        { name: "b", nat: "eim", ipv6Only: true, flags: ["--ebpf", "on"] },
      ],
      turn: { family: 6 },
    });
    await lab.waitForPing("a", "b", 40_000);
    await lab.waitForDirectPath("a", "b", "between IPv6-only hosts");
    await lab.waitForKernelFastPath("a", "b", 15_000);
    const keyB = lab.host("b").keys.publicKey;
    // A direct path over IPv6, carried by the kernel: WireGuard a hears b from L6(P), [::1]:port.
    await lab.waitForPing("a", "b");
    const direct = await waitFor(
      async () => {
        const p = await lab.peerStatus("a", "b");
        return p.wireguardHearsLoopback6 && (await lab.host("a").wg.endpointOf(keyB)) === p.loopback6 && p;
      },
      { what: "WireGuard a at b's L6(P)", timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(direct.loopback6).toMatch(/^\[::1\]:\d+$/);
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    try {
      await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing", intervalMs: 50 });
      const blockedAt = Date.now();
      await lab.blockDirectIpv6("a", "b");
      // The direct path dies; the relay takes over, and WireGuard follows delivery back to L(P).
      await waitFor(
        async () => {
          const p = await lab.peerStatus("a", "b");
          return p.pathKind === "relay" && !p.wireguardHearsLoopback6;
        },
        { what: "a relays to b, delivering from L(P)", timeoutMs: 40_000, intervalMs: 200 },
      );
      await waitFor(() => ping.receivedSince(blockedAt) >= 3, {
        what: "pings answered on the relay",
        timeoutMs: 20_000,
      });
      await waitFor(async () => (await lab.host("a").wg.endpointOf(keyB)) === direct.loopback, {
        what: "WireGuard a back at b's L(P)",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
    } finally {
      await ping.stop();
    }
    // L6(P) stays bound (WireGuard may send there until it hears from L(P)), and is named in status.
    expect((await lab.peerStatus("a", "b")).loopback6).toBe(direct.loopback6);
  }, 120_000);

  it("one that moves to another network (a new prefix) is reached again directly, in the kernel", async () => {
    const lab = await createLab({
      ipv6: true,
      hosts: [
        { name: "a", nat: "eim", ipv6Only: true, flags: ["--ebpf", "on"] },
        { name: "b", nat: "eim", ipv6Only: true, flags: ["--ebpf", "on"] },
      ],
      routers: [{ name: "cafe", nat: "eim" }],
      turn: { family: 6 },
    });
    await lab.waitForPing("a", "b", 40_000);
    await lab.waitForKernelFastPath("a", "b", 15_000);
    const before = lab.lab.host("a").address6;
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    try {
      await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing", intervalMs: 50 });
      const movedAt = Date.now();
      await lab.lab.moveHost("a", "cafe");
      expect(await nsRun(lab.host("a").ns, "ip", ["-4", "-o", "addr", "show", "dev", "eth0"])).toBe("");
      const after = lab.lab.host("a").address6!;
      expect(after).not.toBe(before);
      await waitFor(() => ping.receivedSince(movedAt) >= 3, {
        what: "pings answered after the move",
        timeoutMs: 20_000,
      });
      // b reaches a at its new address, directly, and both carry it in the kernel again.
      await waitFor(
        async () => {
          const status = await lab.peerStatus("b", "a");
          return status.pathKind === "direct" && (status.remote?.includes(after) ?? false);
        },
        { what: "b's direct path to a's new address", timeoutMs: 15_000, intervalMs: 100 },
      );
      // a's own ICE restart may nominate its relay pair first (waitForDirectPath).
      await lab.waitForDirectPath("a", "b", "after the move");
      await lab.waitForKernelFastPath("a", "b", 15_000);
    } finally {
      await ping.stop();
    }
    const carried = await pingCarried(lab.host("a").ns, lab.host("b").tunnelAddress, 56, PINGS, () =>
      lab.peerStatus("a", "b"),
    );
    expect(carried.kernelTx).toBeGreaterThanOrEqual(PINGS);
    expect(carried.kernelRx).toBeGreaterThanOrEqual(PINGS);
  }, 120_000);
});
