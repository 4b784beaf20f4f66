// A relay pair that wins the nomination race gives way to the direct pair of the same ICE generation.
// werift nominates the first pair whose check succeeds. The controlling side's first checks of a direct
// pair are lost at the peer's NAT until the peer's own checks open it, while a relay pair's check
// through the TURN server answers at once: now and then (a loaded machine, a TURN server nearer than
// the peer) the relay wins. Here that is made certain: the controlled side's host loses the
// controlling side's binding requests until the relay path is up. Then the direct check in flight, or
// the one the peer's check calls for, validates the direct pair, and the path moves onto it: the same
// generation, with no upgrade attempt (which would have come 3.75-5 s later, as a new generation).
import { describe, expect, it } from "vitest";
import { decodeKey } from "../../src/wireguard/keys.js";
import { nsRun } from "../lab/netns.js";
import { labPerTest } from "../support/lab-per-test.js";
import { waitFor } from "../support/wait-for.js";

const RACE_TABLE = "tbt_race";

/** Drops STUN binding requests (type 0x0001, the magic cookie) from `from` arriving at the host. */
function loseBindingRequests(from: string): string {
  const family = from.includes(":") ? "ip6" : "ip";
  return `table inet ${RACE_TABLE} {
  chain input {
    type filter hook input priority filter; policy accept;
    ${family} saddr ${from} meta l4proto udp @th,64,16 0x0001 @th,96,32 0x2112a442 counter drop
  }
}
`;
}

// Direct paths need a NAT that keeps its mapping on at least one side: endpoint-independent NATs here
// (with a symmetric one on the other side neither check could pass).
const CASES: ReadonlyArray<{ name: string; ipv6Only: boolean }> = [
  { name: "IPv4 hosts behind endpoint-independent NATs", ipv6Only: false },
  { name: "IPv6-only hosts behind stateful firewalls", ipv6Only: true },
];

describe("a relay pair nominated first gives way to the direct pair of its generation once that answers", () => {
  const createLab = labPerTest();

  for (const { name, ipv6Only } of CASES) {
    it(`${name}: in the kernel, with no upgrade attempt`, async () => {
      const lab = await createLab({
        ...(ipv6Only ? { ipv6: true, turn: { family: 6 } } : {}),
        hosts: [
          { name: "a", nat: "eim", ipv6Only, flags: ["--ebpf", "on"] },
          { name: "b", nat: "eim", ipv6Only, flags: ["--ebpf", "on"] },
        ],
        startTunnelbores: false,
      });
      // The peer with the smaller public key is controlling (intro-link.ts): its checks nominate.
      const [ctl, ctd] =
        Buffer.compare(decodeKey(lab.host("a").keys.publicKey), decodeKey(lab.host("b").keys.publicKey)) < 0
          ? (["a", "b"] as const)
          : (["b", "a"] as const);
      const from = ipv6Only ? lab.lab.host(ctl).address6 : lab.lab.host(ctl).publicAddress;
      if (!from) throw new Error(`${ctl} has no address to drop from`);
      await nsRun(lab.host(ctd).ns, "nft", ["-f", "-"], loseBindingRequests(from));
      await lab.startTunnelbore(ctd);
      await lab.startTunnelbore(ctl);

      const first = await lab.waitForPath(ctl, ctd, 30_000);
      await nsRun(lab.host(ctd).ns, "nft", ["delete", "table", "inet", RACE_TABLE]);
      const lifted = performance.now();
      expect(first.pathKind).toBe("relay");
      expect(first.pair?.generation).toBe(0);

      const direct = await waitFor(
        async () => {
          const status = await lab.peerStatus(ctl, ctd);
          return status.pathKind === "direct" && status;
        },
        { what: `${ctl}'s path to ${ctd} off the relay`, timeoutMs: 15_000, intervalMs: 100 },
      );
      console.log(
        `${name}: ${ctl} (controlling) direct ${Math.round(performance.now() - lifted)} ms after the loss ended`,
      );
      expect(direct.pair?.generation).toBe(0); // not the upgrade attempt's generation 1
      const moved = lab
        .host(ctl)
        .tunnelbore!.logs()
        .filter((line) => String(line.msg).includes("moved off the relay"));
      expect(moved.length).toBe(1);
      // The controlled side follows the nomination the move sent; the kernel carries both ways.
      await waitFor(async () => (await lab.peerStatus(ctd, ctl)).pathKind === "direct", {
        what: `${ctd}'s path to ${ctl} off the relay`,
        timeoutMs: 5000,
        intervalMs: 100,
      });
      await lab.waitForPing(ctl, ctd, 10_000);
      await lab.waitForKernelFastPath(ctl, ctd, 10_000);
    });
  }
});
