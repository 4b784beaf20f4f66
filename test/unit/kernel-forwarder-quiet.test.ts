// KernelForwarder at a hub's scale (issue 16): entries whose counts do not move are not read four
// times a second; the program is asked every 5 s which moved (or, without that, each is read every
// 5 s, all at one poll); one that moves is read at every poll again.
import { describe, expect, it, vi } from "vitest";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import {
  type KernelForwarderHarness,
  type MovedFakeProgram,
  makePeer,
  ROUTE,
  useKernelForwarder,
} from "../support/kernel-forwarder-fakes.js";

async function quietPeers(harness: KernelForwarderHarness, count: number): Promise<ProxyPeer[]> {
  const f = harness.makeForwarder();
  const peers = Array.from({ length: count }, (_, i) => {
    const { peer } = makePeer(
      { ...ROUTE, remoteAddress: `198.51.100.${i + 1}` },
      { address: `127.1.0.${i + 1}`, port: 51822 },
    );
    return peer;
  });
  for (const peer of peers) await f.update(peer);
  return peers;
}

/** Datagrams sent through the peer's outbound entry: how long (ms) until the forwarder saw them. */
async function wake(
  program: KernelForwarderHarness["program"],
  peer: ProxyPeer,
  packets: bigint,
): Promise<number> {
  const entry = [...program.outbound.values()].find((e) => e.loopbackAddress === peer.loopback.address)!;
  entry.packets = packets;
  entry.bytes = packets * 100n;
  const waited = await until(() => peer.kernelTraffic.txDatagrams > 0, 20_000);
  expect(peer.kernelTraffic.txDatagrams).toBe(Number(packets));
  return waited;
}

/** Advances the polls until the peer's kernel traffic shows; how long that took (ms). */
async function until(seen: () => boolean, limitMs: number): Promise<number> {
  let waited = 0;
  while (!seen() && waited < limitMs) {
    await vi.advanceTimersByTimeAsync(250);
    waited += 250;
  }
  return waited;
}

describe("KernelForwarder with many quiet entries", () => {
  const harness = useKernelForwarder();

  it("without countersMoved, reads quiet entries once per 5 s, and a woken one at every poll", async () => {
    const peers = await quietPeers(harness, 80);
    const program = harness.program;
    const reads = vi.spyOn(program, "outboundCounters");
    // Freshly installed entries count as active: read at every poll for 5 s.
    vi.advanceTimersByTime(250);
    expect(reads).toHaveBeenCalledTimes(80);
    vi.advanceTimersByTime(6000);
    reads.mockClear();
    // Quiet: each entry once in 5 s (20 polls), all at one of them.
    vi.advanceTimersByTime(5000);
    expect(reads).toHaveBeenCalledTimes(80);
    const readKeys = new Set(reads.mock.calls.map(([address]) => address));
    expect(readKeys.size).toBe(80);

    // Traffic on one: seen within 10 s, then read at every poll.
    const woken = peers[7]!;
    expect(await wake(program, woken, 5n)).toBeLessThanOrEqual(5000);
    reads.mockClear();
    vi.advanceTimersByTime(1000);
    const wokenReads = reads.mock.calls.filter(([address]) => address === woken.loopback.address).length;
    expect(wokenReads).toBe(4);
  });
});

describe("KernelForwarder setting up many peers at once (a hub's start)", () => {
  const harness = useKernelForwarder({ moved: true });

  it("reads none of the new entries at every poll; one that moves is seen within 5 s, then read at every poll", async () => {
    const f = harness.makeForwarder();
    f.setBulk(true);
    const peers = Array.from({ length: 80 }, (_, i) => {
      const { peer } = makePeer(
        { ...ROUTE, remoteAddress: `198.51.100.${i + 1}` },
        { address: `127.1.0.${i + 1}`, port: 51822 },
      );
      return peer;
    });
    for (const peer of peers) await f.update(peer);
    f.setBulk(false);
    const program = harness.program as MovedFakeProgram;
    const reads = vi.spyOn(program, "outboundCounters");
    await vi.advanceTimersByTimeAsync(4000);
    expect(reads).not.toHaveBeenCalled();
    const woken = peers[3]!;
    expect(await wake(program, woken, 2n)).toBeLessThanOrEqual(5000);
    reads.mockClear();
    await vi.advanceTimersByTimeAsync(1000);
    expect(reads.mock.calls.filter(([address]) => address === woken.loopback.address)).toHaveLength(4);
    expect(reads.mock.calls.every(([address]) => address === woken.loopback.address)).toBe(true);
  });
});

describe("KernelForwarder with many quiet entries and a program that names the moved ones", () => {
  const harness = useKernelForwarder({ moved: true });

  it("reads no quiet entry of its own; one that moved is seen within 5 s, then read at every poll", async () => {
    const peers = await quietPeers(harness, 80);
    const program = harness.program as MovedFakeProgram;
    await vi.advanceTimersByTimeAsync(6000);
    const reads = vi.spyOn(program, "outboundCounters");
    const looks = program.movedLooks;
    await vi.advanceTimersByTimeAsync(10_000);
    expect(reads).not.toHaveBeenCalled();
    expect(program.movedLooks - looks).toBe(2);

    const woken = peers[7]!;
    const entry = [...program.outbound.values()].find((e) => e.loopbackAddress === woken.loopback.address)!;
    entry.packets = 5n;
    entry.bytes = 500n;
    const waited = await until(() => woken.kernelTraffic.txDatagrams > 0, 20_000);
    expect(woken.kernelTraffic).toMatchObject({ txDatagrams: 5, txBytes: 500 });
    expect(waited).toBeLessThanOrEqual(5000);
    expect(new Set(reads.mock.calls.map(([address]) => address))).toEqual(new Set([woken.loopback.address]));
    reads.mockClear();
    await vi.advanceTimersByTimeAsync(1000);
    expect(reads).toHaveBeenCalledTimes(4);
    // Inbound too: named by L(P), read and counted.
    const inbound = [...program.inbound.values()].find(
      (e) => e.loopbackAddress === peers[9]!.loopback.address,
    )!;
    inbound.packets = 3n;
    inbound.bytes = 300n;
    await until(() => peers[9]!.kernelTraffic.rxDatagrams > 0, 20_000);
    expect(peers[9]!.kernelTraffic).toMatchObject({ rxDatagrams: 3, rxBytes: 300 });
  });

  it("asks for every entry after a look that failed", async () => {
    await quietPeers(harness, 3);
    const program = harness.program as MovedFakeProgram;
    const moved = vi.spyOn(program, "countersMoved").mockImplementationOnce(() => {
      throw new Error("stale");
    });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(moved.mock.calls.map(([full]) => full)).toEqual([false, true]);
  });
});
