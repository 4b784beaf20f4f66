// KernelForwarder.countsKnownUntil: up to when a peer's kernel traffic is in its stamps. The idle sweep
// rests a peer only on quiet known to be quiet; a quiet entry is looked at every 5 s, and across privsep
// every count is a copy read a poll before (EntryCounters.readAt).
import { pino } from "pino";
import { describe, expect, it, vi } from "vitest";
import type { EntryCounters, FastPathProgram } from "../../ebpf/loader.js";
import { KernelForwarder } from "../../src/proxy/kernel-forwarder.js";
import {
  FakeProgram,
  type MovedFakeProgram,
  makePeer,
  ROUTE,
  UPLINK,
  useKernelForwarder,
  WG_INTERFACE,
  WG_PORT,
} from "../support/kernel-forwarder-fakes.js";

describe("KernelForwarder.countsKnownUntil, entries read from the map", () => {
  const harness = useKernelForwarder({ moved: true });

  it("is the last look: every poll while an entry moves, every 5 s (which entries moved) once quiet", async () => {
    const f = harness.makeForwarder();
    const { peer } = makePeer(ROUTE);
    expect(f.countsKnownUntil(peer)).toBe(Number.POSITIVE_INFINITY); // no entry: user space's, current
    await f.update(peer);
    const installedAt = Date.now();
    expect(f.countsKnownUntil(peer)).toBe(installedAt); // nothing carried before it existed

    // Moving: read at every poll (250 ms), known that recently.
    const entry = harness.program.theOutbound();
    for (let i = 1; i <= 8; i++) {
      entry.packets = BigInt(i);
      await vi.advanceTimersByTimeAsync(250);
      expect(Date.now() - f.countsKnownUntil(peer)).toBeLessThanOrEqual(250);
    }
    // Quiet: no longer read each poll; known as of the last look at which entries moved (every 5 s).
    let worst = 0;
    for (let i = 0; i < 60; i++) {
      await vi.advanceTimersByTimeAsync(250);
      worst = Math.max(worst, Date.now() - f.countsKnownUntil(peer));
    }
    expect(worst).toBeGreaterThan(2000);
    expect(worst).toBeLessThanOrEqual(5000);
    expect((harness.program as MovedFakeProgram).movedLooks).toBeGreaterThanOrEqual(3);
  });
});

/** Counts that are a copy read `lagMs` before each call, as RemoteFastPath's are. */
class LaggingProgram extends FakeProgram {
  lagMs = 0;
  override outboundCounters(address: string, port: number): EntryCounters | null {
    const read = super.outboundCounters(address, port);
    return read && { ...read, readAt: Date.now() - this.lagMs };
  }
}

function laggingForwarder(): { program: LaggingProgram; f: KernelForwarder } {
  const program = new LaggingProgram();
  const f = new KernelForwarder(program as unknown as FastPathProgram, {
    wireguardInterface: WG_INTERFACE,
    logger: pino({ level: "silent" }),
    resolveRoute: async () => UPLINK,
  });
  f.setWireGuardPort(WG_PORT, []);
  return { program, f };
}

describe("KernelForwarder.countsKnownUntil, counts read elsewhere (privsep)", () => {
  useKernelForwarder(); // fake timers and clock

  it("is when the counts it folded in were read, not when it folded them in", async () => {
    const { program, f } = laggingForwarder();
    try {
      const { peer } = makePeer(ROUTE);
      await f.update(peer);
      const installedAt = Date.now();
      program.lagMs = 3000;
      const entry = program.theOutbound();
      for (let i = 1; i <= 16; i++) {
        entry.packets = BigInt(i);
        await vi.advanceTimersByTimeAsync(250);
      }
      expect(peer.kernelTraffic.txDatagrams).toBe(16);
      // Read 3 s late (the inbound direction is current): known up to 3 s ago, never before the install.
      expect(f.countsKnownUntil(peer)).toBe(Math.max(installedAt, Date.now() - 3000));
      expect(Date.now() - f.countsKnownUntil(peer)).toBe(3000);
    } finally {
      f.close();
    }
  });

  it("a replaced entry's unread tail stays unknown: the new one starts from the old one's last read", async () => {
    const { program, f } = laggingForwarder();
    try {
      const { peer, path } = makePeer(ROUTE);
      await f.update(peer);
      program.lagMs = 1000;
      program.theOutbound().packets = 5n;
      await vi.advanceTimersByTimeAsync(2000);
      const known = f.countsKnownUntil(peer);
      expect(Date.now() - known).toBe(1000);
      path.route = { ...ROUTE, remotePort: 51999 }; // the peer's path moved: a new entry
      await f.update(peer);
      expect(program.theOutbound().remotePort).toBe(51999);
      expect(f.countsKnownUntil(peer)).toBe(known); // not the new entry's install time
    } finally {
      f.close();
    }
  });
});
