// KernelForwarder at a hub's scale (issue 16): entries whose counts do not move are read once per
// 10 s, all at one poll, instead of four times a second; one that moves is read at every poll again.
import { describe, expect, it, vi } from "vitest";
import { makePeer, ROUTE, useKernelForwarder } from "../support/kernel-forwarder-fakes.js";

describe("KernelForwarder with many quiet entries", () => {
  const harness = useKernelForwarder();

  it("reads quiet entries once per 10 s, and a woken one at every poll", async () => {
    const f = harness.makeForwarder();
    const peers = Array.from({ length: 80 }, (_, i) => {
      const { peer } = makePeer(
        { ...ROUTE, remoteAddress: `198.51.100.${i + 1}` },
        { address: `127.1.0.${i + 1}`, port: 51822 },
      );
      return peer;
    });
    for (const peer of peers) await f.update(peer);
    const program = harness.program;
    const reads = vi.spyOn(program, "outboundCounters");
    // Freshly installed entries count as active: read at every poll for 5 s.
    vi.advanceTimersByTime(250);
    expect(reads).toHaveBeenCalledTimes(80);
    vi.advanceTimersByTime(6000);
    reads.mockClear();
    // Quiet: each entry once in 10 s (40 polls), all at one of them.
    vi.advanceTimersByTime(10_000);
    expect(reads).toHaveBeenCalledTimes(80);
    const readKeys = new Set(reads.mock.calls.map(([address]) => address));
    expect(readKeys.size).toBe(80);

    // Traffic on one: seen within 10 s, then read at every poll.
    const woken = peers[7]!;
    const entry = [...program.outbound.values()].find((e) => e.loopbackAddress === woken.loopback.address)!;
    entry.packets = 5n;
    entry.bytes = 500n;
    let waited = 0;
    while (woken.kernelTraffic.txDatagrams === 0 && waited < 20_000) {
      vi.advanceTimersByTime(250);
      waited += 250;
    }
    expect(woken.kernelTraffic.txDatagrams).toBe(5);
    expect(waited).toBeLessThanOrEqual(10_000);
    reads.mockClear();
    vi.advanceTimersByTime(1000);
    const wokenReads = reads.mock.calls.filter(([address]) => address === woken.loopback.address).length;
    expect(wokenReads).toBe(4);
  });
});
