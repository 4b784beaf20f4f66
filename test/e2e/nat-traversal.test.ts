// Two (or three) Tunnelbores behind real nftables NATs find each other through the introduction server
// and ICE; every case pings through real wireguard-go and checks the path kind `status` reports.

import { describe, expect, it } from "vitest";
import { labPerTest } from "../support/lab-per-test.js";
import { waitFor } from "../support/wait-for.js";

const createLab = labPerTest();

describe("NAT traversal between Tunnelbores", () => {
  it("both behind endpoint-independent NATs: direct path", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
    });
    await lab.waitForPing("a", "b");
    expect(await lab.ping("b", "a")).toBe(true);
    // werift nominates aggressively: on a loaded machine a side can take the relay pair first (and the
    // other follow it there, its state saying so); the controlling side's upgrade attempts (the first
    // ~4.4 s after) bring both onto the direct pair.
    await waitFor(
      async () => {
        const [ab, ba] = await Promise.all([lab!.peerStatus("a", "b"), lab!.peerStatus("b", "a")]);
        return ab.pathKind === "direct" && ba.pathKind === "direct";
      },
      { what: "a direct path on both sides", timeoutMs: 30_000, intervalMs: 250 },
    );
    const ab = await lab.peerStatus("a", "b");
    const ba = await lab.peerStatus("b", "a");
    expect(ab).toMatchObject({ pathKind: "direct", state: "connected(direct)" });
    expect(ba).toMatchObject({ pathKind: "direct", state: "connected(direct)" });
    // Direct means through the other NAT's public address, not the relay.
    expect(ab.remote?.startsWith(`${lab.lab.host("b").publicAddress}:`)).toBe(true);
  }, 90_000);
});

describe("NAT traversal in harder places", () => {
  it("both behind the same NAT: direct path over host candidates", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", router: "a" },
      ],
    });
    await lab.waitForPing("a", "b");
    const ab = await lab.peerStatus("a", "b");
    expect(ab.pathKind).toBe("direct");
    // The routers do not hairpin, so a working direct path must be the LAN one.
    expect(ab.remote?.startsWith(`${lab.lab.host("b").lanAddress}:`)).toBe(true);
  }, 90_000);

  it("one behind a symmetric NAT, the other behind an endpoint-independent one: connected", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric" },
        { name: "b", nat: "eim" },
      ],
    });
    await lab.waitForPing("a", "b", 30_000);
    expect(await lab.ping("b", "a")).toBe(true);
    const ab = await lab.peerStatus("a", "b");
    expect(["direct", "relay"]).toContain(ab.pathKind);
    console.log(`symmetric <-> endpoint-independent connected over a ${ab.pathKind} path (${ab.remote})`);
  }, 90_000);

  it("both behind symmetric NATs: relay path through coturn", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric" },
        { name: "b", nat: "symmetric" },
      ],
    });
    await lab.waitForPing("a", "b", 40_000);
    expect(await lab.ping("b", "a")).toBe(true);
    const ab = await lab.peerStatus("a", "b");
    const ba = await lab.peerStatus("b", "a");
    expect(ab).toMatchObject({ pathKind: "relay", state: "connected(relay)" });
    expect(ba.pathKind).toBe("relay");
  }, 120_000);

  it("a peer without Tunnelbore at a public endpoint: static path", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "s", nat: "none", tunnelbore: false },
      ],
    });
    await lab.waitForPing("a", "s");
    const as = await lab.peerStatus("a", "s");
    expect(as).toMatchObject({ pathKind: "static", remote: `${lab.lab.host("s").publicAddress}:51820` });
  }, 90_000);

  it("three hosts: one talks to both others, and their traffic stays apart", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
        { name: "c", nat: "eim" },
      ],
      links: [
        ["a", "b"],
        ["a", "c"],
      ],
    });
    await lab.waitForPing("a", "b");
    await lab.waitForPing("a", "c");
    expect(await lab.ping("b", "a")).toBe(true);
    expect(await lab.ping("c", "a")).toBe(true);
    // Two endpoint-independent NATs end up direct; under load a relay pair may win the first
    // nomination (its check needs no hole punched) and is then upgraded.
    const direct = (on: string, peer: string) =>
      waitFor(
        async () => {
          const p = await lab?.peerStatus(on, peer);
          return p?.pathKind === "direct" ? p : null;
        },
        { what: `${on} -> ${peer} direct`, timeoutMs: 45_000, intervalMs: 250 },
      );
    const ab = await direct("a", "b");
    const ac = await direct("a", "c");
    expect(ab.remote?.startsWith(`${lab.lab.host("b").publicAddress}:`)).toBe(true);
    expect(ac.remote?.startsWith(`${lab.lab.host("c").publicAddress}:`)).toBe(true);
    expect(ab.loopback).not.toBe(ac.loopback);
    // A datagram delivered to the wrong peer would fail that peer's mac1 check or be dropped as
    // malformed; none was, anywhere.
    for (const host of ["a", "b", "c"]) {
      const { drops } = await lab.status(host);
      expect(drops["bad-mac1"]).toBe(0);
      expect(drops.malformed).toBe(0);
    }
    // B and C never learn of each other.
    expect((await lab.status("b")).peers.map((p) => p.publicKey)).toEqual([lab.host("a").keys.publicKey]);
  }, 120_000);
});
