// KernelForwarder during a bulk (a hub's start sets up thousands of peers at once, issue 16): the
// peers' first entries wait for the bulk to end, user space forwarding meanwhile; entries already
// installed are changed or removed at once.
import { describe, expect, it } from "vitest";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import { makePeer, ROUTE, settle, useKernelForwarder } from "../support/kernel-forwarder-fakes.js";

function peers(count: number): ProxyPeer[] {
  return Array.from({ length: count }, (_, i) => {
    const { peer } = makePeer(
      { ...ROUTE, remoteAddress: `198.51.${100 + Math.floor(i / 250)}.${(i % 250) + 1}` },
      { address: `127.1.${Math.floor(i / 250)}.${(i % 250) + 1}`, port: 51822 },
    );
    return peer;
  });
}

/** Turns of the event loop until `done`, at most `turns`. */
async function until(done: () => boolean, turns = 200): Promise<void> {
  for (let i = 0; i < turns && !done(); i++) await settle();
}

describe("KernelForwarder in a bulk", () => {
  const harness = useKernelForwarder();

  it("installs new peers' entries only once the bulk ends, every one of them", async () => {
    const f = harness.makeForwarder();
    const many = peers(450);
    f.setBulk(true);
    for (const peer of many) await f.update(peer);
    await settle();
    expect(harness.program.outbound.size).toBe(0);
    expect(many.some((peer) => f.carries(peer))).toBe(false);
    f.setBulk(false);
    await until(() => harness.program.outbound.size === 450);
    expect(harness.program.outbound.size).toBe(450);
    expect(harness.program.inbound.size).toBe(450);
    expect(many.every((peer) => f.carries(peer))).toBe(true);
  });

  it("changes and removes installed entries at once, and forgets a deferred peer removed meanwhile", async () => {
    const f = harness.makeForwarder();
    const [installed, later, removed] = peers(3) as [ProxyPeer, ProxyPeer, ProxyPeer];
    await f.update(installed);
    expect(f.carries(installed)).toBe(true);
    f.setBulk(true);
    // The installed peer loses its path during the bulk: its entries go at once.
    installed.path = null;
    await f.update(installed);
    expect(f.carries(installed)).toBe(false);
    expect(harness.program.outbound.size).toBe(0);
    await f.update(later);
    await f.update(removed);
    f.remove(removed);
    f.setBulk(false);
    await until(() => f.carries(later));
    expect(f.carries(later)).toBe(true);
    await settle();
    expect(f.carries(removed)).toBe(false);
    expect(harness.program.outbound.size).toBe(1);
  });

  it("a deferred peer whose path changed meanwhile gets the entries of its path at the end", async () => {
    const f = harness.makeForwarder();
    const { peer, path } = makePeer(ROUTE);
    f.setBulk(true);
    await f.update(peer);
    path.route = { ...ROUTE, remoteAddress: "198.51.100.99" };
    await f.update(peer);
    f.setBulk(false);
    await until(() => f.carries(peer));
    expect(harness.program.theOutbound().remoteAddress).toBe("198.51.100.99");
  });
});
