// A TURN server named by a hostname (turn:turn.example.net, as deployments write it), where every other
// lab names it by address: the relayed path must be what it is with an address. Sending to a name
// would make Node look it up on every datagram (a DNS query each where the host has no cache), and
// the kernel fast path and the ChannelData fast path compare the server's address: both hold because
// werift takes the server's address from its first answer (the Allocate's 401).
import { describe, expect, it } from "vitest";
import { ping } from "../lab/ping.js";
import { labPerTest } from "../support/lab-per-test.js";

const TURN_NAME = "turn.tbt.test";

describe("TURN given by a hostname", () => {
  const createLab = labPerTest();

  it("relays symmetric <-> symmetric in the kernel, with one lookup per session, not per datagram", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--ebpf", "on"] },
        { name: "b", nat: "symmetric", flags: ["--ebpf", "on"] },
      ],
      turn: { hostname: TURN_NAME },
    });
    await lab.waitForPing("a", "b", 40_000);
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    await lab.waitForKernelFastPath("a", "b", 15_000);
    const lookups = () => lab.dns!.queries().filter((q) => q.name === TURN_NAME && q.type === 1).length;
    const before = lookups();
    expect(before).toBeGreaterThan(0); // the name was resolved, through the lab's DNS
    const result = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 200, interval: 5 });
    expect(result.received).toBeGreaterThanOrEqual(195);
    // What ICE's own keepalives and refreshes may ask for in that time, not one per datagram.
    expect(lookups() - before).toBeLessThan(10);
  }, 120_000);
});
