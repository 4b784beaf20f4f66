// Fakes for the KernelForwarder unit tests (test/unit/kernel-forwarder-*.test.ts): a FastPathProgram
// whose maps live in memory (counters set by the test), a path whose UDP route the test sets, a route
// lookup the test answers, and a harness that makes a forwarder over them with fake timers.

import { pino } from "pino";
import { afterEach, beforeEach, expect, vi } from "vitest";
import type {
  EntryCounters,
  FastPathProgram,
  InboundEntry,
  InboundFlow,
  LoopbackKey,
  MovedCounter,
  OutboundEntry,
} from "../../ebpf/loader.js";
import type { BatchedUdpSocket as Socket } from "../../src/proxy/batched-udp.js";
import { KernelForwarder, type KernelRoute } from "../../src/proxy/kernel-forwarder.js";
import type { ChannelRoute, PathKind, PeerPath, UdpRoute } from "../../src/proxy/path.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";

export const WG_INTERFACE = "wg0";
export const WG_PORT = 51820;
export const LOOPBACK = { address: "127.12.34.56", port: 51822 };
export const UPLINK: KernelRoute = { dev: "eth0", ifindex: 7, source: "192.0.2.10" };

export interface Counted {
  packets: bigint;
  bytes: bigint;
  /** CLOCK_MONOTONIC ns of the latest datagram (as the program writes it); unset: "just now". */
  lastNs?: bigint;
}

export const outKey = (address: string, port: number): string => `${address}:${port}`;
export const inKey = (
  local: string,
  localPort: number,
  remote: string,
  remotePort: number,
  channel?: number,
): string => `${local}:${localPort}<${remote}:${remotePort}${channel ? `#${channel}` : ""}`;
const flowKey = (f: InboundFlow): string =>
  inKey(f.localAddress, f.localPort, f.remoteAddress, f.remotePort, f.channel);

/** The part of FastPathProgram that KernelForwarder uses (typed, so that an API change shows here). */
type ProgramApi = Pick<
  FastPathProgram,
  | "attach"
  | "setOutbound"
  | "deleteOutbound"
  | "outboundCounters"
  | "setInbound"
  | "deleteInbound"
  | "inboundCounters"
>;

/** The maps of the program in memory; every call is logged so churn is visible. */
export class FakeProgram implements ProgramApi {
  readonly outbound = new Map<string, OutboundEntry & Counted>();
  readonly inbound = new Map<string, InboundEntry & Counted>();
  readonly calls: string[] = [];
  readonly attached: Array<[string, number]> = [];
  attachError: Error | null = null;

  async attach(dev: string, ifindex: number): Promise<void> {
    if (this.attachError) throw this.attachError;
    this.attached.push([dev, ifindex]);
  }

  setOutbound(e: OutboundEntry): void {
    const key = outKey(e.loopbackAddress, e.loopbackPort);
    this.calls.push(`setOutbound ${key}`);
    this.outbound.set(key, {
      loopbackAddress: e.loopbackAddress,
      loopbackPort: e.loopbackPort,
      localAddress: e.localAddress,
      localPort: e.localPort,
      remoteAddress: e.remoteAddress,
      remotePort: e.remotePort,
      wireguardPort: e.wireguardPort,
      ifindex: e.ifindex,
      toLoopback: e.toLoopback,
      ...(e.channel ? { channel: e.channel } : {}),
      ...(e.nextHop !== undefined ? { nextHop: e.nextHop } : {}),
      packets: 0n,
      bytes: 0n,
    });
  }

  deleteOutbound(loopbackAddress: string, loopbackPort: number): void {
    const key = outKey(loopbackAddress, loopbackPort);
    this.calls.push(`deleteOutbound ${key}`);
    this.outbound.delete(key);
  }

  outboundCounters(loopbackAddress: string, loopbackPort: number): EntryCounters | null {
    const e = this.outbound.get(outKey(loopbackAddress, loopbackPort));
    return e ? { packets: e.packets, bytes: e.bytes, lastNs: e.lastNs ?? 0n } : null;
  }

  setInbound(e: InboundEntry): void {
    const key = flowKey(e);
    this.calls.push(`setInbound ${key}`);
    this.inbound.set(key, {
      localAddress: e.localAddress,
      localPort: e.localPort,
      remoteAddress: e.remoteAddress,
      remotePort: e.remotePort,
      loopbackAddress: e.loopbackAddress,
      loopbackPort: e.loopbackPort,
      wireguardPort: e.wireguardPort,
      loopbackIfindex: e.loopbackIfindex,
      ...(e.channel ? { channel: e.channel } : {}),
      packets: 0n,
      bytes: 0n,
    });
  }

  deleteInbound(flow: InboundFlow): void {
    const key = flowKey(flow);
    this.calls.push(`deleteInbound ${key}`);
    this.inbound.delete(key);
  }

  inboundCounters(flow: InboundFlow): EntryCounters | null {
    const e = this.inbound.get(flowKey(flow));
    return e ? { packets: e.packets, bytes: e.bytes, lastNs: e.lastNs ?? 0n } : null;
  }

  /** The only outbound entry (fails the test when there is not exactly one). */
  theOutbound(): OutboundEntry & Counted {
    expect(this.outbound.size).toBe(1);
    const [entry] = this.outbound.values();
    if (!entry) throw new Error("no outbound entry");
    return entry;
  }

  theInbound(): InboundEntry & Counted {
    expect(this.inbound.size).toBe(1);
    const [entry] = this.inbound.values();
    if (!entry) throw new Error("no inbound entry");
    return entry;
  }
}

/**
 * A FakeProgram that also answers which entries moved (as FastPathProgram.countersMoved does from one
 * pass over its maps): packets differing from the last look, every entry when `full`.
 */
export class MovedFakeProgram extends FakeProgram {
  private readonly baseline = new Map<string, bigint>();
  movedLooks = 0;

  countersMoved(full: boolean): MovedCounter[] {
    this.movedLooks++;
    const moved: MovedCounter[] = [];
    const look = (direction: "outbound" | "inbound", key: string, e: Counted & LoopbackKey) => {
      const id = `${direction} ${key}`;
      // As the real tracker: a new entry counts from 0 (unused, it has not moved).
      if (!full && (this.baseline.get(id) ?? 0n) === e.packets) return;
      this.baseline.set(id, e.packets);
      moved.push({
        loopback: outKey(e.loopbackAddress, e.loopbackPort),
        direction,
        counters: { packets: e.packets, bytes: e.bytes, lastNs: e.lastNs ?? 0n },
      });
    };
    for (const [key, e] of this.outbound) look("outbound", key, e);
    for (const [key, e] of this.inbound) look("inbound", key, e);
    return moved;
  }
}

/**
 * A path whose UDP route (direct) or TURN channel (relayed) the test sets; records what the forwarder
 * tells it about kernel traffic.
 */
export class FakePath implements PeerPath {
  kind: PathKind = "direct";
  channel: ChannelRoute | null = null;
  readonly remote = "test";
  onDatagram: ((datagram: Buffer) => void) | null = null;
  onRouteChange: (() => void) | null = null;
  readonly told: Array<[number, number]> = [];

  constructor(public route: UdpRoute | null) {}

  send(): void {}
  close(): void {}
  udpRoute(): UdpRoute | null {
    return this.route ? { ...this.route } : null;
  }
  channelRoute(): ChannelRoute | null {
    return this.channel ? { ...this.channel } : null;
  }
  kernelTraffic(sent: number, received: number): void {
    this.told.push([sent, received]);
  }
}

export function makePeer(route: UdpRoute | null, loopback = LOOPBACK): { peer: ProxyPeer; path: FakePath } {
  const socket = {} as unknown as Socket; // never used by the forwarder
  const peer = new ProxyPeer("peer-key", new Uint8Array(32).fill(1), loopback, socket);
  const path = new FakePath(route);
  peer.path = path;
  return { peer, path };
}

/** A resolveRoute whose answers the test releases one by one, in any order. */
export function deferredRoutes(): {
  resolveRoute: (remote: string) => Promise<KernelRoute | null>;
  pending: Array<{ remote: string; answer: (r: KernelRoute | null) => void }>;
} {
  const pending: Array<{ remote: string; answer: (r: KernelRoute | null) => void }> = [];
  return {
    pending,
    resolveRoute: (remote) =>
      new Promise((resolve) => {
        pending.push({ remote, answer: resolve });
      }),
  };
}

/** Lets every pending promise chain run (fake timers fake only the interval and the clock here). */
export const settle = (): Promise<void> => new Promise((r) => setImmediate(r));

export const ROUTE: UdpRoute = {
  localAddress: null,
  localPort: 40000,
  remoteAddress: "198.51.100.7",
  remotePort: 51820,
};

export interface KernelForwarderHarness {
  /** The program of the current test (a fresh one per test). */
  readonly program: FakeProgram;
  /** The remotes the default route lookup was asked about, in order. */
  readonly routeLookups: string[];
  /** A forwarder over `program`, told WireGuard's port unless it is 0; closed after the test. */
  makeForwarder(
    resolveRoute?: (remote: string) => Promise<KernelRoute | null>,
    wireguardPort?: number,
  ): KernelForwarder;
}

/**
 * Registers beforeEach/afterEach in the calling describe block: fake interval timers and clock (the
 * counter poll), a fresh FakeProgram per test (a MovedFakeProgram with `moved`), and the forwarder
 * closed afterwards.
 */
export function useKernelForwarder(options: { moved?: boolean } = {}): KernelForwarderHarness {
  const newProgram = () => (options.moved ? new MovedFakeProgram() : new FakeProgram());
  let program = newProgram();
  let forwarder: KernelForwarder | null = null;
  let routeLookups: string[] = [];

  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval", "Date"] });
    vi.setSystemTime(new Date("2030-01-01T00:00:00Z"));
    program = newProgram();
    forwarder = null;
    routeLookups = [];
  });

  afterEach(() => {
    forwarder?.close();
    vi.useRealTimers();
  });

  return {
    get program() {
      return program;
    },
    get routeLookups() {
      return routeLookups;
    },
    makeForwarder(
      resolveRoute = async (remote) => {
        routeLookups.push(remote);
        return UPLINK;
      },
      wireguardPort = WG_PORT,
    ) {
      const f = new KernelForwarder(program as unknown as FastPathProgram, {
        wireguardInterface: WG_INTERFACE,
        logger: pino({ level: "silent" }),
        resolveRoute,
        nextHops: true, // whatever kernel runs the tests (nextHopsSafe has its own test)
      });
      forwarder = f;
      if (wireguardPort !== 0) f.setWireGuardPort(wireguardPort, []);
      return f;
    },
  };
}
