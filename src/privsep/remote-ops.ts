/**
 * The worker's PrivilegedOps: every privileged operation is a request to the parent over the IPC
 * channel (ipc-protocol.ts). Synchronous parts of the interfaces (the saved endpoints, the bypass
 * status, the fast path's counters) are served from local copies the answers keep up to date; fast
 * path map updates are batched per tick and counters read in one request per poll.
 */
import type {
  EntryCounters,
  InboundEntry,
  InboundFlow,
  MovedCounter,
  OutboundEntry,
} from "../../ebpf/loader.js";
import { RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import type { KeyAgreement } from "../signalling/key-agreement.js";
import { IntroKeyError } from "../signalling/signalling-crypto.js";
import { trafficWaiting } from "../wg/handshake-nudge.js";
import type { TunnelBypassStatus } from "../wg/tunnel-bypass.js";
import type { EndpointChange, WireGuardInterfaceInfo, WireGuardPeerInfo } from "../wg/wg-command.js";
import type { WgQuickConfigCheck } from "../wg/wg-quick-config.js";
import type { WireGuardSocketStatus } from "../wg/wireguard-sockets.js";
import { type InterfaceChanges, InterfaceMirror } from "./interface-diff.js";
import {
  type FastPathUpdate,
  MAX_BATCH,
  type Request,
  type WireCounters,
  type WireMovedCounter,
  wireguardSocketAnswerSchema,
} from "./ipc-protocol.js";
import type {
  EndpointMemory,
  EndpointRefusal,
  FastPathControl,
  PrivilegedOps,
  SocketMarking,
} from "./privileged-ops.js";

/** Sends one request to the privileged parent and resolves with its answer. */
export type Ask = (request: Request) => Promise<unknown>;

/** How often the fast path's counters are fetched (KernelForwarder folds them in as often). */
const COUNTER_POLL_MS = 250;

export class RemotePrivilegedOps implements PrivilegedOps {
  readonly endpoints: RemoteEndpointMemory;
  readonly bypass: RemoteSocketMarking;
  private readonly mirror = new InterfaceMirror();

  constructor(
    private readonly ask: Ask,
    private readonly logger: Logger,
  ) {
    this.endpoints = new RemoteEndpointMemory(ask);
    this.bypass = new RemoteSocketMarking(ask);
  }

  async readInterface(): Promise<WireGuardInterfaceInfo> {
    // Only what changed since the last answer crosses (interface-diff.ts).
    try {
      const answer = (await this.ask({
        op: "readInterfaceChanges",
        since: this.mirror.since,
      })) as InterfaceChanges;
      return this.mirror.apply(answer);
    } catch (err) {
      this.mirror.reset();
      throw err;
    }
  }

  keyAgreement(info: WireGuardInterfaceInfo): KeyAgreement | null {
    // The dump has a public key exactly when the interface has a private key.
    return info.publicKey ? new RemoteKeyAgreement(info.publicKey, this.ask) : null;
  }

  async setPeerEndpoint(publicKey: string, endpoint: string): Promise<void> {
    await this.ask({ op: "setPeerEndpoint", key: publicKey, endpoint });
  }

  async setPeerEndpoints(changes: EndpointChange[]): Promise<EndpointRefusal[]> {
    const refused: EndpointRefusal[] = [];
    for (const chunk of chunks(changes)) {
      const answer = (await this.ask({
        op: "setPeerEndpoints",
        changes: chunk.map(({ publicKey, endpoint }) => ({ key: publicKey, endpoint })),
      })) as EndpointRefusal[];
      refused.push(...answer);
    }
    return refused;
  }

  async nudgeIfTrafficWaiting(peer: WireGuardPeerInfo, endpoint: string, log: Logger): Promise<void> {
    // Most peers have nothing waiting: no request for them (a hub's start asked 10,000 times). The
    // parent decides on its own reading all the same.
    if (!trafficWaiting(peer)) return;
    await this.ask({ op: "nudgeTraffic", key: peer.publicKey, endpoint }).catch((err: unknown) =>
      log.warn({ err, peer: peer.publicKey }, "cannot start WireGuard's handshake; it retries by itself"),
    );
  }

  async nudgeHandshake(publicKey: string, _keepalive: number): Promise<void> {
    await this.ask({ op: "nudgeHandshake", key: publicKey });
  }

  async restoreEndpoints(): Promise<number> {
    // The parent restores where WireGuard points at a loopback address: it knows the state file.
    const restored = (await this.ask({ op: "restoreEndpoints" })) as number;
    await this.endpoints.load();
    return restored;
  }

  async checkWgQuickConfig(): Promise<WgQuickConfigCheck | null> {
    return (await this.ask({ op: "wgQuickCheck" })) as WgQuickConfigCheck | null;
  }

  async wireguardSocket(): Promise<WireGuardSocketStatus | null> {
    const answer = wireguardSocketAnswerSchema.safeParse(await this.ask({ op: "wireguardSocket" }));
    if (!answer.success)
      throw new PrivilegedRequestError("privsep-bad-answer", "malformed answer about WireGuard's socket");
    return answer.data;
  }

  async loadFastPath(): Promise<FastPathControl> {
    const loaded = (await this.ask({ op: "fastPathLoad" })) as { preference: number; interfaces: string[] };
    return new RemoteFastPath(this.ask, loaded.preference, loaded.interfaces, this.logger);
  }
}

/** X25519 answered by the parent, which holds the private key. */
export class RemoteKeyAgreement implements KeyAgreement {
  constructor(
    readonly publicKey: string,
    private readonly ask: Ask,
  ) {}

  async x25519(peerPublicKey: Uint8Array): Promise<Buffer> {
    const peer = Buffer.from(peerPublicKey).toString("base64");
    try {
      return Buffer.from((await this.ask({ op: "x25519", peer })) as string, "base64");
    } catch (err) {
      throw new IntroKeyError("X25519 with this public key failed", {}, { cause: err });
    }
  }
}

/** The saved real endpoints: kept by the parent, mirrored here for synchronous reads. */
class RemoteEndpointMemory implements EndpointMemory {
  private readonly mirror = new Map<string, string>();

  constructor(private readonly ask: Ask) {}

  async load(): Promise<void> {
    const entries = (await this.ask({ op: "stateLoad" })) as [string, string][];
    this.mirror.clear();
    for (const [key, endpoint] of entries) this.mirror.set(key, endpoint);
  }

  original(publicKey: string): string | undefined {
    return this.mirror.get(publicKey);
  }

  async set(publicKey: string, endpoint: string): Promise<void> {
    await this.ask({ op: "stateSet", key: publicKey, endpoint });
    this.mirror.set(publicKey, endpoint);
  }

  async delete(publicKey: string): Promise<void> {
    this.mirror.delete(publicKey);
    await this.ask({ op: "stateDelete", key: publicKey });
  }

  async setMany(entries: [string, string][]): Promise<string[]> {
    const refused: string[] = [];
    for (const chunk of chunks(entries)) {
      const answer = (await this.ask({
        op: "stateSetMany",
        entries: chunk.map(([key, endpoint]) => ({ key, endpoint })),
      })) as EndpointRefusal[];
      const notRemembered = new Set(answer.map((r) => r.publicKey));
      for (const [key, endpoint] of chunk) if (!notRemembered.has(key)) this.mirror.set(key, endpoint);
      refused.push(...notRemembered);
    }
    return refused;
  }

  async deleteMany(publicKeys: string[]): Promise<void> {
    for (const key of publicKeys) this.mirror.delete(key);
    for (const chunk of chunks(publicKeys)) await this.ask({ op: "stateDeleteMany", keys: chunk });
  }
}

/** A request carries at most MAX_BATCH entries: more go in several, in order. */
function chunks<T>(items: T[]): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += MAX_BATCH) out.push(items.slice(i, i + MAX_BATCH));
  return out;
}

const NO_BYPASS: TunnelBypassStatus = { state: "inactive", fwmark: 0, mark: 0, cgroup: null, reason: null };

/** The parent sets the mark up and moves this process into the cgroup whose sockets carry it. */
class RemoteSocketMarking implements SocketMarking {
  private last: TunnelBypassStatus = NO_BYPASS;

  constructor(private readonly ask: Ask) {}

  get mark(): number {
    return this.last.mark;
  }

  async start(fwmark: number): Promise<void> {
    await this.call({ op: "bypassStart", fwmark });
  }

  async follow(fwmark: number): Promise<boolean> {
    return this.call({ op: "bypassFollow", fwmark });
  }

  status(): TunnelBypassStatus {
    return this.last;
  }

  async close(): Promise<void> {
    await this.ask({ op: "bypassClose" }).catch(() => undefined);
  }

  /** Never throws, as TunnelBypass does not: a refusal is a reason in the status. */
  private async call(request: Request): Promise<boolean> {
    try {
      const answer = (await this.ask(request)) as { changed: boolean; status: TunnelBypassStatus };
      this.last = answer.status;
      return answer.changed;
    } catch (err) {
      this.last = { ...this.last, state: "unavailable", reason: (err as Error).message };
      return false;
    }
  }
}

function counterKey(address: string, port: number): string {
  return `${address}:${port}`;
}

function flowKey(flow: InboundFlow): string {
  const { localAddress, localPort, remoteAddress, remotePort, channel } = flow;
  return `${localAddress}:${localPort}>${remoteAddress}:${remotePort}#${channel ?? 0}`;
}

/** Just the flow (callers pass objects with more in them, bigint counts among them). */
function flowOnly(flow: InboundFlow): InboundFlow {
  const { localAddress, localPort, remoteAddress, remotePort, channel } = flow;
  return { localAddress, localPort, remoteAddress, remotePort, ...(channel ? { channel } : {}) };
}

function outboundOnly(e: OutboundEntry): OutboundEntry {
  const { loopbackAddress, loopbackPort, wireguardPort, ifindex, toLoopback, nextHop } = e;
  return {
    ...flowOnly(e),
    loopbackAddress,
    loopbackPort,
    wireguardPort,
    ifindex,
    toLoopback,
    ...(nextHop ? { nextHop } : {}),
  };
}

function inboundOnly(e: InboundEntry): InboundEntry {
  const { loopbackAddress, loopbackPort, wireguardPort, loopbackIfindex } = e;
  return { ...flowOnly(e), loopbackAddress, loopbackPort, wireguardPort, loopbackIfindex };
}

/** `readAt`: when it was asked for (the privileged side reads after that, never before). */
function counters(wire: WireCounters | null, readAt: number): EntryCounters | null {
  return wire
    ? { packets: BigInt(wire.packets), bytes: BigInt(wire.bytes), lastNs: BigInt(wire.lastNs), readAt }
    : null;
}

/**
 * The fast path's control plane in the parent: entries go in batches, counters come back in one
 * answer per poll and are read from here. Data packets never cross; only these entries do.
 */
class RemoteFastPath implements FastPathControl {
  private attached: string[];
  private pending: FastPathUpdate[] = [];
  private flushScheduled = false;
  private readonly outbound = new Map<string, { loopbackAddress: string; loopbackPort: number }>();
  private readonly inbound = new Map<string, InboundFlow>();
  private readonly outboundCounts = new Map<string, EntryCounters | null>();
  private readonly inboundCounts = new Map<string, EntryCounters | null>();
  /**
   * The entries whose counts were read since the last poll: only those are fetched again (the forwarder
   * reads its quiet entries seldom, and a hub has thousands of them).
   */
  private readonly wantedOutbound = new Set<string>();
  /** The attachments asked for, by "dev#ifindex" (a recreated interface has a new index). */
  private readonly attachedAt = new Map<string, Promise<void>>();
  private readonly wantedInbound = new Set<string>();
  /** The inbound flow last set for each L(P) (a moved inbound entry is named by its L(P)). */
  private readonly inboundOf = new Map<string, string>();
  private readonly loopbackOfFlow = new Map<string, string>();
  private readonly timer: NodeJS.Timeout;
  private polling = false;
  /** Bumped at every set and delete: counters read before one are not an entry's after it. */
  private generation = 0;

  constructor(
    private readonly ask: Ask,
    readonly preference: number,
    interfaces: string[],
    private readonly log: Logger,
  ) {
    this.attached = interfaces;
    this.timer = setInterval(() => void this.poll(), COUNTER_POLL_MS);
    this.timer.unref();
  }

  get interfaces(): string[] {
    return this.attached;
  }

  async attach(dev: string, ifindex: number): Promise<void> {
    // Asked for every path that comes up (thousands at a hub's start): once per interface is enough.
    const key = `${dev}#${ifindex}`;
    let pending = this.attachedAt.get(key);
    if (!pending) {
      pending = (async () => {
        this.attached = (await this.ask({ op: "fastPathAttach", dev, ifindex })) as string[];
      })();
      this.attachedAt.set(key, pending);
      // A failure is asked again by the next path.
      pending.catch(() => this.attachedAt.delete(key));
    }
    await pending;
  }

  setOutbound(entry: OutboundEntry): void {
    const key = counterKey(entry.loopbackAddress, entry.loopbackPort);
    this.outbound.set(key, { loopbackAddress: entry.loopbackAddress, loopbackPort: entry.loopbackPort });
    this.outboundCounts.set(key, { packets: 0n, bytes: 0n, lastNs: 0n, readAt: Date.now() });
    this.queue({ op: "setOutbound", entry: outboundOnly(entry) });
  }

  deleteOutbound(loopbackAddress: string, loopbackPort: number): void {
    const key = counterKey(loopbackAddress, loopbackPort);
    this.outbound.delete(key);
    this.outboundCounts.delete(key);
    this.queue({ op: "deleteOutbound", key: { loopbackAddress, loopbackPort } });
  }

  outboundCounters(loopbackAddress: string, loopbackPort: number): EntryCounters | null {
    const key = counterKey(loopbackAddress, loopbackPort);
    if (this.outbound.has(key)) this.wantedOutbound.add(key);
    return this.outboundCounts.get(key) ?? null;
  }

  setInbound(entry: InboundEntry): void {
    const { localAddress, localPort, remoteAddress, remotePort, channel } = entry;
    const flow = { localAddress, localPort, remoteAddress, remotePort, channel };
    this.inbound.set(flowKey(flow), flowOnly(flow));
    this.inboundCounts.set(flowKey(flow), { packets: 0n, bytes: 0n, lastNs: 0n, readAt: Date.now() });
    const loopback = counterKey(entry.loopbackAddress, entry.loopbackPort);
    this.inboundOf.set(loopback, flowKey(flow));
    this.loopbackOfFlow.set(flowKey(flow), loopback);
    this.queue({ op: "setInbound", entry: inboundOnly(entry) });
  }

  deleteInbound(flow: InboundFlow): void {
    const key = flowKey(flow);
    const loopback = this.loopbackOfFlow.get(key);
    if (loopback !== undefined && this.inboundOf.get(loopback) === key) this.inboundOf.delete(loopback);
    this.loopbackOfFlow.delete(key);
    this.inbound.delete(key);
    this.inboundCounts.delete(flowKey(flow));
    this.queue({ op: "deleteInbound", flow: flowOnly(flow) });
  }

  inboundCounters(flow: InboundFlow): EntryCounters | null {
    const key = flowKey(flow);
    if (this.inbound.has(key)) this.wantedInbound.add(key);
    return this.inboundCounts.get(key) ?? null;
  }

  /**
   * The entries whose packets moved since the last call (every one when `full`), their counts read from
   * here after: one small answer where the forwarder's round of every quiet entry crossed as thousands
   * of keys each way (issue 16).
   */
  async countersMoved(full: boolean): Promise<MovedCounter[]> {
    this.flush();
    const generation = this.generation;
    const askedAt = Date.now();
    const answer = (await this.ask({ op: "fastPathCountersMoved", full })) as WireMovedCounter[] | null;
    // An entry set or removed meanwhile: these counts may be a predecessor's (the caller asks in full).
    if (!answer || generation !== this.generation) throw new StaleCounters();
    const moved: MovedCounter[] = [];
    for (const { loopback, direction, counters: wireCounts } of answer) {
      const read = counters(wireCounts, askedAt);
      if (!read) continue;
      if (direction === "outbound") {
        if (!this.outbound.has(loopback)) continue;
        this.outboundCounts.set(loopback, read);
      } else {
        const key = this.inboundOf.get(loopback);
        if (key === undefined || !this.inbound.has(key)) continue;
        this.inboundCounts.set(key, read);
      }
      moved.push({ loopback, direction, counters: read });
    }
    return moved;
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    this.flush();
    await this.ask({ op: "fastPathClose" });
  }

  /** Updates made in one tick go as one request, in order. */
  private queue(update: FastPathUpdate): void {
    this.generation++;
    this.pending.push(update);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.pending.length === 0) return;
    const pending = this.pending;
    this.pending = [];
    // In order, in requests of at most MAX_BATCH (thousands of static paths come up in one tick).
    for (const updates of chunks(pending)) {
      this.ask({ op: "fastPathUpdate", updates }).catch((err: unknown) =>
        this.log.warn({ err }, "kernel fast path: the privileged side refused an update"),
      );
    }
  }

  private async poll(): Promise<void> {
    if (this.polling || (this.wantedOutbound.size === 0 && this.wantedInbound.size === 0)) return;
    this.polling = true;
    const outbound = [...this.wantedOutbound].flatMap((key) => {
      const entry = this.outbound.get(key);
      return entry ? [[key, entry] as const] : [];
    });
    const inbound = [...this.wantedInbound].flatMap((key) => {
      const flow = this.inbound.get(key);
      return flow ? [[key, flow] as const] : [];
    });
    this.wantedOutbound.clear();
    this.wantedInbound.clear();
    const generation = this.generation;
    const askedAt = Date.now();
    try {
      const answer: { outbound: (WireCounters | null)[]; inbound: (WireCounters | null)[] } = {
        outbound: [],
        inbound: [],
      };
      // Requests of at most MAX_BATCH keys each way, as many as it takes.
      for (let i = 0; i < Math.max(outbound.length, inbound.length); i += MAX_BATCH) {
        const part = (await this.ask({
          op: "fastPathCounters",
          outbound: outbound.slice(i, i + MAX_BATCH).map(([, key]) => key),
          inbound: inbound.slice(i, i + MAX_BATCH).map(([, flow]) => flow),
        })) as { outbound: (WireCounters | null)[]; inbound: (WireCounters | null)[] };
        answer.outbound.push(...part.outbound);
        answer.inbound.push(...part.inbound);
      }
      // An entry set or removed meanwhile: these counts may be its predecessor's; the next poll tells.
      if (generation !== this.generation) return;
      outbound.forEach(([key], i) => {
        if (this.outbound.has(key))
          this.outboundCounts.set(key, counters(answer.outbound[i] ?? null, askedAt));
      });
      inbound.forEach(([key], i) => {
        if (this.inbound.has(key)) this.inboundCounts.set(key, counters(answer.inbound[i] ?? null, askedAt));
      });
    } catch (err) {
      this.log.debug({ err }, "kernel fast path: counters unreadable");
    } finally {
      this.polling = false;
    }
  }
}

/** Counts answered across a change of the entries: the next look asks for every entry. */
export class StaleCounters extends RuntimeError {
  constructor() {
    super("stale-counters", "fast-path entries changed while their counters were read");
  }
}

/** An answer the parent refused or failed. */
export class PrivilegedRequestError extends RuntimeError {}
