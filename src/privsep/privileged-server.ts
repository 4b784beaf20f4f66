/**
 * The privileged parent's side of privilege separation: answers the worker's requests (ipc-protocol.ts)
 * after checking each against what the parent itself read from WireGuard. It holds the private key
 * (answering only X25519 with a given public key), points endpoints only of the interface's peers and
 * only at 127.x, remembers only endpoints WireGuard itself showed, and gives the fast path only entries
 * that lead to 127.x. Anything else is refused with an error the worker sees; nothing crashes it.
 */
import { RuntimeError } from "../errors.js";
import { HeapRelease } from "../heap-release.js";
import type { Logger } from "../log.js";
import { isLoopbackHost, parseEndpoint } from "../proxy/endpoint.js";
import { LocalKeyAgreement } from "../signalling/key-agreement.js";
import type { DumpChanges } from "../wg/interface-reader.js";
import type { EndpointChange, WireGuardInterfaceInfo, WireGuardPeerInfo } from "../wg/wg-command.js";
import { decodeKey } from "../wireguard/keys.js";
import { InterfaceDiffer } from "./interface-diff.js";
import {
  type FastPathUpdate,
  loopbackIPv4,
  type Request,
  requestSchema,
  type WireCounters,
} from "./ipc-protocol.js";
import type { EndpointRefusal, FastPathControl, LocalPrivilegedOps } from "./privileged-ops.js";

/** A request the parent will not carry out (malformed, or outside what the worker may ask). */
export class PrivsepRefusal extends RuntimeError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("privsep-refused", message, context);
  }
}

export interface PrivilegedServerOptions {
  interfaceName: string;
  ops: LocalPrivilegedOps;
  logger: Logger;
}

export class PrivilegedServer {
  private readonly log: Logger;
  private readonly ops: LocalPrivilegedOps;
  /** The interface as the parent last read it for the worker: what requests are checked against. */
  private lastInfo: WireGuardInterfaceInfo | null = null;
  /** What the worker was told of the interface, to tell it only what changed. */
  private readonly differ = new InterfaceDiffer();
  private keys: LocalKeyAgreement | null = null;
  private keysFrom: string | null = null;
  private fastPath: FastPathControl | null = null;
  private closed = false;
  /** A hub's start sends thousands of entries: their garbage is given back once that is over. */
  private readonly heapRelease: HeapRelease;

  constructor(private readonly options: PrivilegedServerOptions) {
    this.log = options.logger;
    this.ops = options.ops;
    this.heapRelease = new HeapRelease(this.log);
  }

  /** Validates and carries out one request; throws PrivsepRefusal (or what the operation threw). */
  async handle(raw: unknown): Promise<unknown> {
    if (this.closed) throw new PrivsepRefusal("the privileged side is shutting down");
    const parsed = requestSchema.safeParse(raw);
    if (!parsed.success) {
      const op = typeof raw === "object" && raw !== null && "op" in raw ? String(raw.op).slice(0, 32) : "?";
      throw new PrivsepRefusal("malformed request", { op, issue: parsed.error.issues[0]?.message });
    }
    const answer = await this.dispatch(parsed.data);
    this.heapRelease.after(batchSize(parsed.data));
    return answer;
  }

  /** Shutdown: the fast path and the bypass go; WireGuard gets its real endpoints back. */
  async close(): Promise<number> {
    this.closed = true;
    this.heapRelease.stop();
    const restored = await this.restoreEndpoints();
    await this.fastPath
      ?.close()
      .catch((err: unknown) => this.log.warn({ err }, "cannot unload the fast path"));
    this.fastPath = null;
    await this.ops.bypass.close();
    return restored;
  }

  /** Restores every replaced endpoint WireGuard still has at a loopback address. Never throws. */
  async restoreEndpoints(): Promise<number> {
    try {
      return await this.ops.restoreEndpoints((_key, endpoint) => isLoopbackEndpoint(endpoint));
    } catch (err) {
      this.log.warn({ err }, "cannot restore endpoints");
      return 0;
    }
  }

  private async dispatch(req: Request): Promise<unknown> {
    switch (req.op) {
      case "x25519": {
        if (!this.keys) throw new PrivsepRefusal("the interface has no private key");
        return this.keys.x25519Now(decodeKey(req.peer)).toString("base64");
      }
      case "readInterface":
        return this.readInterface();
      case "readInterfaceChanges": {
        const { info, changes } = await this.readInterfaceWithChanges();
        return this.differ.changes(info, req.since, changes);
      }
      case "setPeerEndpoint":
        this.peer(req.key);
        await this.ops.setPeerEndpoint(req.key, loopbackEndpoint(req.endpoint));
        return null;
      case "nudgeTraffic":
        await this.ops.nudgeIfTrafficWaiting(this.peer(req.key), loopbackEndpoint(req.endpoint), this.log);
        return null;
      case "nudgeHandshake":
        await this.ops.nudgeHandshake(req.key, this.peer(req.key).persistentKeepalive);
        return null;
      case "stateLoad":
        await this.ops.endpoints.load();
        return this.ops.endpoints.entries();
      case "stateSet": {
        // Only what WireGuard itself showed as the peer's real endpoint: restored on stop, it must
        // never be a destination the worker made up.
        const shown = this.peer(req.key).endpoint;
        if (shown !== req.endpoint || isLoopbackEndpoint(shown))
          throw new PrivsepRefusal("not the peer's real endpoint as WireGuard shows it", { peer: req.key });
        await this.ops.endpoints.set(req.key, req.endpoint);
        return null;
      }
      case "stateDelete":
        await this.ops.endpoints.delete(req.key);
        return null;
      case "setPeerEndpoints":
        return this.setPeerEndpoints(req.changes);
      case "stateSetMany":
        return this.rememberEndpoints(req.entries);
      case "stateDeleteMany":
        await this.ops.endpoints.deleteMany(req.keys);
        return null;
      case "restoreEndpoints":
        return this.restoreEndpoints();
      case "wgQuickCheck":
        return this.ops.checkWgQuickConfig();
      case "bypassStart":
        this.currentFwmark(req.fwmark);
        await this.ops.bypass.start(req.fwmark);
        return { changed: false, status: this.ops.bypass.status() };
      case "bypassFollow": {
        this.currentFwmark(req.fwmark);
        const changed = await this.ops.bypass.follow(req.fwmark);
        return { changed, status: this.ops.bypass.status() };
      }
      case "bypassClose":
        await this.ops.bypass.close();
        return null;
      case "fastPathLoad": {
        if (this.fastPath) throw new PrivsepRefusal("the fast path is loaded already");
        this.fastPath = await this.ops.loadFastPath(this.options.interfaceName);
        return { preference: this.fastPath.preference, interfaces: this.fastPath.interfaces };
      }
      case "fastPathAttach":
        await this.loadedFastPath().attach(req.dev, req.ifindex);
        return this.loadedFastPath().interfaces;
      case "fastPathUpdate": {
        const program = this.loadedFastPath();
        for (const update of req.updates) this.applyUpdate(program, update);
        return null;
      }
      case "fastPathCounters": {
        const program = this.loadedFastPath();
        // Many keys (the forwarder's round of every quiet entry): a batched pass over each map.
        if (program.countersMany) {
          const read = program.countersMany(req.outbound, req.inbound);
          return { outbound: read.outbound.map(wire), inbound: read.inbound.map(wire) };
        }
        return {
          outbound: req.outbound.map((k) =>
            wire(program.outboundCounters(k.loopbackAddress, k.loopbackPort)),
          ),
          inbound: req.inbound.map((flow) => wire(program.inboundCounters(flow))),
        };
      }
      case "fastPathCountersMoved": {
        const program = this.loadedFastPath();
        if (!program.countersMoved) return null;
        const moved = await program.countersMoved(req.full);
        return moved.map(({ loopback, direction, counters }) => ({
          loopback,
          direction,
          counters: wire(counters),
        }));
      }
      case "fastPathClose":
        await this.fastPath?.close();
        this.fastPath = null;
        return null;
      case "wireguardSocket":
        return this.ops.wireguardSocket();
    }
  }

  /**
   * Each change checked as `setPeerEndpoint` is (a peer of the interface, a 127.x endpoint); the ones
   * that pass are made in batches, the others refused by name. Answers the refusals.
   */
  private async setPeerEndpoints(changes: { key: string; endpoint: string }[]): Promise<EndpointRefusal[]> {
    const refused: EndpointRefusal[] = [];
    const valid: EndpointChange[] = [];
    for (const { key, endpoint } of changes) {
      try {
        this.peer(key);
        valid.push({ publicKey: key, endpoint: loopbackEndpoint(endpoint) });
      } catch (err) {
        refused.push({ publicKey: key, reason: (err as Error).message });
      }
    }
    if (refused.length > 0)
      this.log.warn({ refused: refused.length, first: refused[0] }, "refused endpoint changes");
    return [...refused, ...(valid.length > 0 ? await this.ops.setPeerEndpoints(valid) : [])];
  }

  /** Each entry checked as `stateSet` is; the ones that pass are saved with one write. Answers the refusals. */
  private async rememberEndpoints(entries: { key: string; endpoint: string }[]): Promise<EndpointRefusal[]> {
    const refused: EndpointRefusal[] = [];
    const valid: [string, string][] = [];
    for (const { key, endpoint } of entries) {
      const shown = this.lastPeer(key)?.endpoint ?? null;
      if (shown !== endpoint || isLoopbackEndpoint(shown))
        refused.push({ publicKey: key, reason: "not the peer's real endpoint as WireGuard shows it" });
      else valid.push([key, endpoint]);
    }
    if (refused.length > 0)
      this.log.warn({ refused: refused.length, first: refused[0] }, "refused endpoints to remember");
    await this.ops.endpoints.setMany(valid);
    return refused;
  }

  /** `wg show dump` for the worker: the private key stays here (it answers X25519 requests). */
  private async readInterface(): Promise<WireGuardInterfaceInfo> {
    return (await this.readInterfaceWithChanges()).info;
  }

  private async readInterfaceWithChanges(): Promise<{ info: WireGuardInterfaceInfo; changes: DumpChanges }> {
    const { info, changes } = await this.ops.readInterfaceChanges();
    this.lastInfo = info;
    if (info.privateKey !== this.keysFrom) {
      this.keysFrom = info.privateKey;
      this.keys = info.privateKey ? new LocalKeyAgreement(decodeKey(info.privateKey)) : null;
    }
    // The reader's delta is the parent's own (the worker's mirror makes its own): it never crosses.
    const { delta: _delta, ...crossing } = info;
    return { info: { ...crossing, privateKey: null }, changes };
  }

  /** The peer as the interface was last read for the worker (none before the first read). */
  private lastPeer(publicKey: string): WireGuardPeerInfo | undefined {
    return this.lastInfo ? this.ops.lastReadPeer(publicKey) : undefined;
  }

  /** A peer of the interface as last read; anything else is refused. */
  private peer(publicKey: string): WireGuardPeerInfo {
    const peer = this.lastPeer(publicKey);
    if (!peer) throw new PrivsepRefusal("not a peer of the interface", { peer: publicKey });
    return peer;
  }

  /** The bypass marks sockets with the interface's own fwmark only. */
  private currentFwmark(fwmark: number): void {
    if (!this.lastInfo || this.lastInfo.fwmark !== fwmark)
      throw new PrivsepRefusal("not the interface's fwmark", { fwmark });
  }

  private loadedFastPath(): FastPathControl {
    if (!this.fastPath) throw new PrivsepRefusal("the fast path is not loaded");
    return this.fastPath;
  }

  private applyUpdate(program: FastPathControl, update: FastPathUpdate): void {
    switch (update.op) {
      case "setOutbound":
        program.setOutbound(update.entry);
        return;
      case "deleteOutbound":
        program.deleteOutbound(update.key.loopbackAddress, update.key.loopbackPort);
        return;
      case "setInbound":
        program.setInbound(update.entry);
        return;
      case "deleteInbound":
        program.deleteInbound(update.flow);
        return;
    }
  }
}

/** "127.a.b.c:port", the only kind of endpoint the worker may point WireGuard at. */
export function loopbackEndpoint(text: string): string {
  const match = /^([0-9.]+):(\d{1,5})$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || !loopbackIPv4.safeParse(match[1]).success || port < 1 || port > 65535)
    throw new PrivsepRefusal("not a 127.x endpoint", { endpoint: text.slice(0, 64) });
  return text;
}

function isLoopbackEndpoint(endpoint: string | null): boolean {
  if (!endpoint) return false;
  try {
    return isLoopbackHost(parseEndpoint(endpoint).host);
  } catch {
    return false;
  }
}

function wire(counters: { packets: bigint; bytes: bigint; lastNs: bigint } | null): WireCounters | null {
  return counters
    ? { packets: String(counters.packets), bytes: String(counters.bytes), lastNs: String(counters.lastNs) }
    : null;
}

/** How many peers or entries a request carries (0 for a request about one thing). */
function batchSize(req: Request): number {
  switch (req.op) {
    case "setPeerEndpoints":
      return req.changes.length;
    case "stateSetMany":
      return req.entries.length;
    case "stateDeleteMany":
      return req.keys.length;
    case "fastPathUpdate":
      return req.updates.length;
    default:
      return 0;
  }
}
