// KernelForwarder against a fake FastPathProgram with fake timers: how the kernel's counters reach the
// peer (folded in four times a second, as deltas, and at removal and route changes).
import { beforeEach, describe, expect, it, vi } from "vitest";
import type { InboundEntry, OutboundEntry } from "../../ebpf/loader.js";
import type { KernelForwarder } from "../../src/proxy/kernel-forwarder.js";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import {
  type Counted,
  type FakePath,
  type FakeProgram,
  makePeer,
  ROUTE,
  useKernelForwarder,
} from "../support/kernel-forwarder-fakes.js";

describe("KernelForwarder", () => {
  const harness = useKernelForwarder();
  const { makeForwarder } = harness;
  let program: FakeProgram;

  beforeEach(() => {
    program = harness.program;
  });

  describe("counters", () => {
    async function installed(): Promise<{
      f: KernelForwarder;
      peer: ProxyPeer;
      path: FakePath;
      out: OutboundEntry & Counted;
      inb: InboundEntry & Counted;
    }> {
      const f = makeForwarder();
      const { peer, path } = makePeer(ROUTE);
      await f.update(peer);
      return { f, peer, path, out: program.theOutbound(), inb: program.theInbound() };
    }

    it("folds the kernel's counts into traffic and kernelTraffic at each poll, as deltas", async () => {
      const { peer, path, out, inb } = await installed();
      peer.traffic.txDatagrams = 5; // what user space carried before
      peer.traffic.txBytes = 500;
      out.packets = 10n;
      out.bytes = 1000n;
      inb.packets = 4n;
      inb.bytes = 320n;
      vi.advanceTimersByTime(250);
      const firstPoll = Date.now();
      expect(peer.traffic).toEqual({ txDatagrams: 15, txBytes: 1500, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 10, txBytes: 1000, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll);
      expect(peer.lastReceivedAt).toBe(firstPoll);
      expect(path.told).toEqual([
        [10, 0],
        [0, 4],
      ]);

      // Only outbound moves: only the deltas are added, and only lastSentAt moves.
      out.packets = 13n;
      out.bytes = 1300n;
      vi.advanceTimersByTime(250);
      expect(peer.traffic).toEqual({ txDatagrams: 18, txBytes: 1800, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll + 250);
      expect(peer.lastReceivedAt).toBe(firstPoll);
      expect(path.told.at(-1)).toEqual([3, 0]);

      // Nothing moves: nothing changes, the path is told nothing.
      const told = path.told.length;
      vi.advanceTimersByTime(250);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 4, rxBytes: 320 });
      expect(peer.lastSentAt).toBe(firstPoll + 250);
      expect(path.told.length).toBe(told);

      // Only inbound moves.
      inb.packets = 6n;
      inb.bytes = 480n;
      vi.advanceTimersByTime(250);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 13, txBytes: 1300, rxDatagrams: 6, rxBytes: 480 });
      expect(peer.lastReceivedAt).toBe(firstPoll + 750);
      expect(peer.lastSentAt).toBe(firstPoll + 250);
      expect(path.told.at(-1)).toEqual([0, 2]);
    });

    it("takes the latest datagram's time from the kernel, not the poll's", async () => {
      const { peer, out, inb } = await installed();
      out.packets = 1n;
      out.bytes = 100n;
      out.lastNs = process.hrtime.bigint() - 180_000_000n; // 180 ms before the poll
      inb.packets = 1n;
      inb.bytes = 100n;
      inb.lastNs = process.hrtime.bigint() - 40_000_000n;
      vi.advanceTimersByTime(250);
      expect(Date.now() - peer.lastSentAt).toBeGreaterThanOrEqual(180);
      expect(Date.now() - peer.lastSentAt).toBeLessThan(230);
      expect(Date.now() - peer.lastReceivedAt).toBeGreaterThanOrEqual(40);
      expect(Date.now() - peer.lastReceivedAt).toBeLessThan(90);
    });

    it("nothing is folded before the first poll", async () => {
      const { peer, path, out } = await installed();
      out.packets = 3n;
      out.bytes = 300n;
      vi.advanceTimersByTime(249);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
      expect(peer.lastSentAt).toBe(0);
      expect(path.told).toEqual([]);
    });

    it("counts made since the last poll are folded in when the entries are removed", async () => {
      const { f, peer, path, out, inb } = await installed();
      out.packets = 2n;
      out.bytes = 200n;
      vi.advanceTimersByTime(250);
      out.packets = 7n;
      out.bytes = 700n;
      inb.packets = 3n;
      inb.bytes = 90n;
      vi.advanceTimersByTime(100);
      f.remove(peer);
      expect(peer.kernelTraffic).toEqual({ txDatagrams: 7, txBytes: 700, rxDatagrams: 3, rxBytes: 90 });
      expect(peer.traffic).toEqual({ txDatagrams: 7, txBytes: 700, rxDatagrams: 3, rxBytes: 90 });
      expect(peer.lastSentAt).toBe(Date.now());
      expect(peer.lastReceivedAt).toBe(Date.now());
      expect(path.told).toEqual([
        [2, 0],
        [5, 0],
        [0, 3],
      ]);
      // Gone for good: later polls add nothing.
      vi.advanceTimersByTime(5000);
      expect(peer.kernelTraffic.txDatagrams).toBe(7);
    });

    it("counts of the old entries are folded in at a route change, and the new entries count from zero", async () => {
      const { f, peer, path, out } = await installed();
      out.packets = 4n;
      out.bytes = 400n;
      path.route = { ...ROUTE, remotePort: 51999 };
      await f.update(peer);
      expect(peer.kernelTraffic.txDatagrams).toBe(4);
      const fresh = program.theOutbound();
      expect(fresh.remotePort).toBe(51999);
      fresh.packets = 1n;
      fresh.bytes = 100n;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 5, txBytes: 500 });
    });

    it("close() stops polling", async () => {
      const { f, peer, out } = await installed();
      f.close();
      out.packets = 9n;
      out.bytes = 900n;
      vi.advanceTimersByTime(3000);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
    });

    it("a counter read that throws is skipped, and the next poll catches up", async () => {
      const { peer, out } = await installed();
      const read = program.outboundCounters.bind(program);
      let broken = true;
      program.outboundCounters = (address, port) => {
        if (broken) throw new Error("map read failed");
        return read(address, port);
      };
      out.packets = 2n;
      out.bytes = 64n;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic.txDatagrams).toBe(0);
      broken = false;
      vi.advanceTimersByTime(1000);
      expect(peer.kernelTraffic).toMatchObject({ txDatagrams: 2, txBytes: 64 });
    });
  });
});
