// A fast path program whose maps live in memory and whose counters never move, for processes outside
// vitest (the route-refresh benchmark, the namespace child of test/integration/kernel-route-refresh):
// KernelForwarder with the real route lookups and no BPF.
import type { EntryCounters, InboundEntry, InboundFlow, OutboundEntry } from "../../ebpf/loader.js";
import type { FastPathControl } from "../../src/privsep/privileged-ops.js";

export class MemoryFastPath implements FastPathControl {
  /** By L(P) ("address:port"). */
  readonly outbound = new Map<string, OutboundEntry>();
  readonly inbound = new Map<string, InboundEntry>();
  readonly preference = 0;
  readonly interfaces: string[] = [];
  async attach(): Promise<void> {}
  async close(): Promise<void> {}
  setOutbound(e: OutboundEntry): void {
    this.outbound.set(`${e.loopbackAddress}:${e.loopbackPort}`, e);
  }
  deleteOutbound(address: string, port: number): void {
    this.outbound.delete(`${address}:${port}`);
  }
  outboundCounters(): EntryCounters | null {
    return null;
  }
  setInbound(e: InboundEntry): void {
    this.inbound.set(`${e.localPort}<${e.remoteAddress}:${e.remotePort}`, e);
  }
  deleteInbound(f: InboundFlow): void {
    this.inbound.delete(`${f.localPort}<${f.remoteAddress}:${f.remotePort}`);
  }
  inboundCounters(): EntryCounters | null {
    return null;
  }
  countersMoved(): [] {
    return [];
  }
}
