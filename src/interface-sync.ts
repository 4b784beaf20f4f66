import { setImmediate as nextTurn, setTimeout as sleep } from "node:timers/promises";
import { TunnelboreError } from "./errors.js";
import { HeapRelease } from "./heap-release.js";
import type { Logger } from "./log.js";
import type { Peer } from "./peer/peer.js";
import type { PrivilegedOps } from "./privsep/privileged-ops.js";
import { type Endpoint, isLoopbackHost, parseEndpoint } from "./proxy/endpoint.js";
import { EndpointTakeover, type Takeover } from "./wg/endpoint-takeover.js";
import { interfaceIndex } from "./wg/interface-watch.js";
import { PeerChanges, sameAllowedIps } from "./wg/peer-changes.js";
import type { WireGuardInterfaceInfo, WireGuardPeerInfo } from "./wg/wg-command.js";

/** After the interface was recreated, peers missing from it are kept this long (its config may follow). */
const RECREATED_GRACE_MS = 10_000;
/** More peers than this applied at once: each one's lines at debug (the lot is logged). */
const BULK_PEERS = 10;
/** Re-reads of the interface after a link event on it, to catch its configuration as it is applied (ms). */
const RESYNC_AFTER_LINK_EVENT_MS = [250, 750, 1500, 3000, 6000];

export interface InterfaceSyncOptions {
  interfaceName: string;
  /** Point each peer's WireGuard endpoint at its L(P), keeping the real one as the static path. */
  manageEndpoints: boolean;
  /** Static endpoints given by the user, by public key. */
  staticEndpoints: Map<string, Endpoint>;
  pollIntervalMs: number;
  /**
   * With more peers, reads this much further apart per peer (0: every `pollIntervalMs` whatever the
   * count; `readInterval`).
   */
  pollPerPeerMs?: number;
  /** An interface missing at start is waited for instead of a configuration error. */
  waitForInterface?: boolean;
}

/** What a sync asks of Tunnelbore: the peers are made, given paths and removed there, in one place each. */
export interface SyncedPeers {
  /** Follows the interface's fwmark and listen port before the peers; false while there is no data plane. */
  follow(info: WireGuardInterfaceInfo): Promise<boolean>;
  /**
   * The peer's Peer, L(P) ("127.a.b.c:port") and L6(P) ("[::1]:port", while bound), made when new
   * (WireGuard's endpoint is a hint for them).
   */
  ensure(wireguard: WireGuardPeerInfo): Promise<{ peer: Peer; loopback: string; loopback6: string | null }>;
  remove(publicKey: string): void;
  /** Many peers are about to be set up (true), or that is done: each one's lines at debug meanwhile. */
  bulk(on: boolean): void;
  /** The public keys of the peers held now. */
  keys(): Iterable<string>;
  /** How many peers are held, and whether this one is. */
  count(): number;
  has(publicKey: string): boolean;
  /** Opens the peer's static path when the endpoint is new or changed. */
  setStaticPath(peer: Peer, endpoint: Endpoint | undefined): Promise<void>;
  /** The peer's L(P) as "127.a.b.c:port" and L6(P) as "[::1]:port", those held: WireGuard's endpoints of ours. */
  loopbacksOf(publicKey: string): string[];
  /** Every peer of this read is applied. Answers how many peers went dormant meanwhile (lazy peers). */
  applied(info: WireGuardInterfaceInfo, changed: ReadChanges): number;
}

/**
 * What a read changed that depends on more than a peer's own line: traffic alone (counters, the
 * latest handshake) changes neither, and at a hub with any traffic every read has some (issue 15).
 */
export interface ReadChanges {
  /** Peers came or went, or the interface's own fields changed. */
  peers: boolean;
  /** Some peer's allowed IPs changed (or peers came or went). */
  allowedIps: boolean;
}

/**
 * How long until the next read of an interface with `peers` peers: a read costs time in proportion to
 * them, on WireGuard's side (a userspace WireGuard writes 3.4 MB for 10,000 peers: 2.4 % of a core
 * every 2 s) and on ours, so a big interface is read less often (5 s at 10,000 peers with 0.5 ms a
 * peer), and at most every 10 s however big. What a read finds is slow to change at that size: peers
 * configured, allowed IPs, endpoints set by hand (docs/decisions.md, "How often the interface is read").
 */
export function readInterval(pollIntervalMs: number, perPeerMs: number, peers: number): number {
  return Math.max(pollIntervalMs, Math.min(MAX_SCALED_READ_MS, Math.round(peers * perPeerMs)));
}

/** A scaled read interval stops growing here: a new peer is still picked up within 10 s. */
const MAX_SCALED_READ_MS = 10_000;

/**
 * Keeps the peers in step with the WireGuard interface: reads it at start (waiting for it where
 * allowed), every poll interval and after its link events; notices it recreated or gone; applies only
 * the peers whose `wg show` line changed (`PeerChanges`), peers with a session first; points endpoints
 * at L(P) in batches, real endpoints remembered first (`EndpointTakeover`), and restores them.
 */
export class InterfaceSync {
  private readonly takeover: EndpointTakeover;
  /** The peers whose `wg show` line changed since they were applied (the rest need nothing). */
  private readonly changes = new PeerChanges();
  /** Bumped by a reload: every peer is applied again. */
  private reloads = 0;
  private timer: NodeJS.Timeout | null = null;
  private readonly resyncTimers = new Set<NodeJS.Timeout>();
  private syncing: Promise<void> | null = null;
  private resyncWanted = false;
  private interfaceMissing = false;
  private ifindex: number | null = null;
  /** When the interface was last seen recreated (0: never). */
  private recreatedAt = 0;
  /** The interface's own fields (listen port, fwmark, key) as last applied. */
  private lastHead = "";
  private polling = false;
  private stopped = false;
  private readonly stopRequested = new AbortController();
  /** Thousands of peers applied at once (a hub's start): that garbage is given back afterwards. */
  private readonly heapRelease: HeapRelease;
  /** What readAtStart waits for, for status. */
  waitingFor: string | null = null;
  /**
   * `tunnelbore release` gave WireGuard its real endpoints back (wg-quick's PreDown before SaveConfig):
   * endpoints are left alone until the interface is recreated or a reload.
   */
  private released = false;

  constructor(
    private readonly options: InterfaceSyncOptions,
    private readonly ops: PrivilegedOps,
    private readonly peers: SyncedPeers,
    private readonly log: Logger,
  ) {
    this.takeover = new EndpointTakeover(ops, log);
    this.heapRelease = new HeapRelease(log);
  }

  /**
   * The interface as `wg` shows it. Missing, it is waited for where allowed (a service may start
   * before WireGuard's interface exists) and status says so; null when stopped while waiting.
   */
  async readAtStart(): Promise<WireGuardInterfaceInfo | null> {
    const name = this.options.interfaceName;
    for (;;) {
      let waitFor: string;
      try {
        const info = await this.ops.readInterface();
        // Just created (wg-quick, wireguard-go) and not configured yet: its listen port comes next.
        if (info.listenPort || !this.options.waitForInterface) {
          if (this.waitingFor) this.log.info({ interface: name }, "interface is there; starting");
          this.waitingFor = null;
          return info;
        }
        waitFor = `interface ${name} to get a listen port`;
      } catch (err) {
        const missing = err instanceof TunnelboreError && err.code === "interface-missing";
        if (!missing || !this.options.waitForInterface) throw err;
        waitFor = `interface ${name} to appear`;
      }
      if (this.waitingFor !== waitFor) this.log.warn({ interface: name }, `waiting for ${waitFor}`);
      this.waitingFor = waitFor;
      const waited = await sleep(Math.min(this.options.pollIntervalMs, 500), undefined, {
        signal: this.stopRequested.signal,
      }).then(
        () => true,
        () => false,
      );
      if (!waited) return null;
    }
  }

  /** Applies the interface as read at start. */
  async applyFirst(info: WireGuardInterfaceInfo): Promise<void> {
    this.ifindex = await interfaceIndex(info.name);
    await this.apply(info);
  }

  /** Reads the interface every poll interval from now on (`readInterval`: longer for many peers). */
  startPolling(): void {
    this.polling = true;
    this.scheduleRead();
  }

  private scheduleRead(): void {
    if (this.stopped) return;
    const { pollIntervalMs, pollPerPeerMs = 0 } = this.options;
    this.timer = setTimeout(
      // sync() logs its own failures; whatever it does, the next read is scheduled.
      () =>
        void this.sync().then(
          () => this.scheduleRead(),
          () => this.scheduleRead(),
        ),
      readInterval(pollIntervalMs, pollPerPeerMs, this.peers.count()),
    );
    this.timer.unref();
  }

  /** SIGHUP: every peer applied again, endpoints managed again. */
  reload(): Promise<void> {
    this.released = false;
    this.reloads++;
    return this.sync();
  }

  /** `tunnelbore release`: WireGuard gets its real endpoints back, left alone until recreated or reload. */
  async release(): Promise<number> {
    this.released = true;
    await this.syncing;
    return this.options.manageEndpoints && this.polling ? await this.restoreEndpoints() : 0;
  }

  /** Reads the interface now and a few times more while it is being (re)configured. */
  resyncSoon(): void {
    void this.sync();
    for (const t of this.resyncTimers) clearTimeout(t);
    this.resyncTimers.clear();
    for (const delay of RESYNC_AFTER_LINK_EVENT_MS) {
      const timer = setTimeout(() => {
        this.resyncTimers.delete(timer);
        void this.sync();
      }, delay);
      timer.unref();
      this.resyncTimers.add(timer);
    }
  }

  /** Reads the interface again and applies what changed; one sync at a time (a request meanwhile runs after). */
  sync(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    if (this.syncing) {
      this.resyncWanted = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      try {
        const info = await this.ops.readInterface();
        const index = await interfaceIndex(info.name);
        if (this.interfaceMissing || (index !== null && this.ifindex !== null && index !== this.ifindex)) {
          this.log.info({ interface: info.name }, "interface is back (recreated)");
          this.recreatedAt = Date.now();
          this.released = false;
        }
        this.ifindex = index ?? this.ifindex;
        this.interfaceMissing = false;
        await this.apply(info);
      } catch (err) {
        if (err instanceof TunnelboreError && err.code === "interface-missing") {
          if (!this.interfaceMissing)
            this.log.warn({ interface: this.options.interfaceName }, "interface is gone; waiting for it");
          this.interfaceMissing = true;
        } else {
          this.log.warn({ err }, "reading the interface failed");
        }
      } finally {
        this.syncing = null;
        if (this.resyncWanted && !this.stopped) {
          this.resyncWanted = false;
          void this.sync();
        }
      }
    })();
    return this.syncing;
  }

  /** No more reads; resolves once the one under way is done. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopRequested.abort();
    this.heapRelease.stop();
    if (this.timer) clearTimeout(this.timer);
    for (const t of this.resyncTimers) clearTimeout(t);
    await this.syncing;
  }

  /** Gives WireGuard back the real endpoints we replaced, where it still points at our L(P) (or L6(P)). */
  restoreEndpoints(): Promise<number> {
    return this.ops.restoreEndpoints(
      (key, endpoint) => endpoint !== null && this.peers.loopbacksOf(key).includes(endpoint),
    );
  }

  private async apply(info: WireGuardInterfaceInfo): Promise<void> {
    if (!(await this.peers.follow(info))) return;
    let gone: string[] = [];
    // A recreated interface is often configured peer by peer: keep our peers (their L(P), paths and ICE
    // sessions) for a while rather than tear them down because a read came too early. A read that
    // holds every peer we hold, and no other, has none gone: a hub's usual read, 10,000 keys not copied.
    // A list settled at the last read (the very same one: nothing changed) left none gone then.
    // A read told as a delta from the list settled last (src/wg/peer-changes.ts): the keys it removed are
    // the ones gone, and only its changed peers are looked at, not a hub's 10,000 (issue 15).
    const context = `${this.released}|${this.recentlyRecreated()}|${this.reloads}`;
    const delta = this.recentlyRecreated() ? undefined : info.delta;
    const continued = this.changes.continues(delta, context);
    if (continued) gone = delta.removed.filter((key) => this.peers.has(key));
    else if (
      !this.recentlyRecreated() &&
      !this.changes.isSettled(info.peers) &&
      !this.holdsExactly(info.peers)
    ) {
      const present = new Set(info.peers.map((p) => p.publicKey));
      gone = [...this.peers.keys()].filter((key) => !present.has(key));
    }
    if (gone.length > 0) {
      for (const key of gone) {
        this.peers.remove(key);
        this.changes.forget(key);
      }
      await this.ops.endpoints
        .deleteMany(gone)
        .catch((err: unknown) => this.log.warn({ err }, "cannot forget removed peers"));
    }
    // Sorted, so that a fresh start assigns colliding loopback addresses in the same order every time;
    // peers with a session first (restartOrder), so that after a restart they carry traffic at once.
    const changed = continued ? this.changes.changedOf(delta) : this.changes.changed(info.peers, context);
    const sorted = restartOrder(changed.sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1)));
    // Before they are applied: which of them are new, or route other addresses (a line not applied
    // before, e.g. since a reload, counts as both).
    let came = false;
    let allowedIps = false;
    for (const p of sorted) {
      if (!this.peers.has(p.publicKey)) came = true;
      const before = this.changes.appliedLine(p.publicKey);
      if (!before || !sameAllowedIps(before, p)) allowedIps = true;
    }
    // A start or a hub's many changes: a line for the lot rather than three lines a peer.
    const bulk = sorted.length > BULK_PEERS;
    if (bulk) this.peers.bulk(true);
    try {
      await this.applyPeers(sorted);
    } finally {
      if (bulk) this.peers.bulk(false);
    }
    if (bulk) this.log.info({ peers: sorted.length }, "peers set up (each one's lines at debug)");
    // While recently recreated, peers missing from the read were kept: the list is not all there is.
    if (continued) this.changes.settleDelta(info.peers, delta);
    else if (sorted.length > 0 || gone.length > 0)
      this.changes.settle(this.recentlyRecreated() ? null : info.peers);
    const head = `${info.listenPort}|${info.fwmark}|${info.publicKey}`;
    const peers = came || gone.length > 0 || head !== this.lastHead;
    const rested = this.peers.applied(info, { peers, allowedIps: allowedIps || peers });
    // Many peers set up, gone or gone dormant at once: their garbage is given back once that is over.
    this.heapRelease.after(sorted.length + gone.length + rested);
    this.lastHead = head;
  }

  /** The read lists exactly the peers held (so none is gone). */
  private holdsExactly(peers: WireGuardPeerInfo[]): boolean {
    return peers.length === this.peers.count() && peers.every((p) => this.peers.has(p.publicKey));
  }

  /**
   * The peers in order; endpoints change in batches (src/wg/endpoint-takeover.ts): every real endpoint
   * remembered, the static paths set, then one `wg set` per chunk of peers.
   */
  private async applyPeers(sorted: WireGuardPeerInfo[]): Promise<void> {
    const turns = new EventLoopTurns();
    const applied: { wireguard: WireGuardPeerInfo; peer: Peer; takeover: Takeover | null }[] = [];
    for (const p of sorted) {
      await turns.due();
      try {
        const done = await this.applyPeer(p);
        applied.push({ wireguard: p, ...done });
        // Its endpoint is ours already (a restart): its static path at once, not after every other peer.
        if (!done.takeover && hasSession(p))
          await this.peers.setStaticPath(done.peer, this.staticEndpointOf(p, null));
      } catch (err) {
        this.log.warn({ err, peer: p.publicKey }, "cannot set up peer");
      }
    }
    const takeovers = applied.flatMap((a) => (a.takeover ? [a.takeover] : []));
    const remembered = new Set(
      (
        await this.takeover.remember(takeovers).catch((err: unknown) => {
          this.log.warn({ err }, "cannot remember real endpoints: WireGuard keeps them");
          return [];
        })
      ).map((t) => t.wireguard.publicKey),
    );
    for (const { wireguard, peer, takeover } of applied) {
      await turns.due();
      try {
        // A real endpoint not remembered stays WireGuard's: it is the static path meanwhile.
        const kept = takeover?.real && !remembered.has(wireguard.publicKey) ? takeover.real : null;
        await this.peers.setStaticPath(peer, this.staticEndpointOf(wireguard, kept));
        peer.onHandshakeObserved(wireguard.latestHandshake);
        // Pointed at L(P) now, its line changes: applied again at the next read, then settled.
        if (!takeover) this.changes.markApplied(wireguard);
      } catch (err) {
        this.log.warn({ err, peer: wireguard.publicKey }, "cannot set up peer's static path");
      }
    }
    await this.takeover
      .point(
        takeovers.filter((t) => remembered.has(t.wireguard.publicKey)),
        this.polling && this.recentlyRecreated(),
      )
      .catch((err: unknown) => this.log.warn({ err }, "cannot point WireGuard endpoints at loopback"));
  }

  /** The interface was recreated a moment ago (WireGuard restarted), and may still be being configured. */
  private recentlyRecreated(): boolean {
    return this.recreatedAt !== 0 && Date.now() - this.recreatedAt < RECREATED_GRACE_MS;
  }

  /**
   * A peer as this sync read it: its L(P) and Peer, and whether WireGuard's endpoint is to be pointed
   * at L(P) (`apply` does it, in a batch).
   */
  private async applyPeer(wireguard: WireGuardPeerInfo): Promise<{ peer: Peer; takeover: Takeover | null }> {
    const { peer, loopback, loopback6 } = await this.peers.ensure(wireguard);
    const real = realEndpointOf(wireguard);
    // Released (wg-quick's PreDown before SaveConfig): WireGuard keeps its real endpoints for now.
    const manage = this.options.manageEndpoints && !this.released;
    // L6(P) is ours too: WireGuard learnt it from our datagrams (its path is IPv6), and keeps it.
    if (wireguard.endpoint === loopback || (loopback6 !== null && wireguard.endpoint === loopback6))
      peer.onEndpointOurs();
    // A peer WireGuard itself roams back to (it reaches WireGuard's port directly) is left alone.
    else if (manage && (real === null || peer.onEndpointElsewhere(real, wireguard.rxBytes))) {
      return { peer, takeover: { wireguard, loopback, real } };
    }
    return { peer, takeover: null };
  }

  /** The peer's static path: given by the user, else the real endpoint remembered (or kept by WireGuard). */
  private staticEndpointOf(wireguard: WireGuardPeerInfo, kept: string | null): Endpoint | undefined {
    const { publicKey } = wireguard;
    const manage = this.options.manageEndpoints && !this.released;
    const real = kept ?? realEndpointOf(wireguard);
    const fallback = manage && !kept ? this.ops.endpoints.original(publicKey) : real;
    return this.options.staticEndpoints.get(publicKey) ?? (fallback ? parseEndpoint(fallback) : undefined);
  }
}

/**
 * Turns of the event loop in a long run of peers. Binding an L(P) completes at once, so a loop over
 * 10,000 peers would hold the event loop for seconds: after a restart the peers set up first (those
 * with a session) would forward nothing until the last was done (issue 16: the gap grew with the hub).
 */
class EventLoopTurns {
  private since = performance.now();

  /** Resolves at once, or after a turn of the event loop when the last was more than 20 ms ago. */
  async due(): Promise<void> {
    if (performance.now() - this.since < 20) return;
    await nextTurn();
    this.since = performance.now();
  }
}

/** WireGuard's endpoint for the peer when it is a real one (not one of ours at a loopback address). */
function realEndpointOf(wireguard: WireGuardPeerInfo): string | null {
  const { endpoint } = wireguard;
  return endpoint && !isLoopbackHost(parseEndpoint(endpoint).host) ? endpoint : null;
}

/** WireGuard completed a handshake with the peer within 3 minutes: it has a session and may carry traffic. */
function hasSession(peer: WireGuardPeerInfo): boolean {
  return peer.latestHandshake > 0 && Date.now() / 1000 - peer.latestHandshake < 180;
}

/** The peers with a session first (each keeps the L(P) WireGuard points at), then the rest, in order. */
function restartOrder(peers: WireGuardPeerInfo[]): WireGuardPeerInfo[] {
  return [...peers.filter(hasSession), ...peers.filter((p) => !hasSession(p))];
}
