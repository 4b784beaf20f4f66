import { EventEmitter } from "node:events";
import { FastPathProgram } from "../ebpf/loader.js";
import type { PeerStatus, StatusReport } from "./control/status.js";
import { ConfigError, TunnelboreError } from "./errors.js";
import type { TurnConfig } from "./ice/ice-session.js";
import { PeerConnector } from "./intro-client/peer-connector.js";
import type { Logger } from "./log.js";
import { newDropCounters } from "./proxy/counters.js";
import { type Endpoint, formatEndpoint, isLoopbackHost, parseEndpoint } from "./proxy/endpoint.js";
import { KernelForwarder } from "./proxy/kernel-forwarder.js";
import { LivenessMonitor, type LivenessOptions } from "./proxy/liveness.js";
import type { PeerPath } from "./proxy/path.js";
import type { ProxyPeer } from "./proxy/proxy-peer.js";
import { StaticPath } from "./proxy/static-path.js";
import { WireGuardProxy } from "./proxy/wireguard-proxy.js";
import { AddressWatch } from "./wg/address-watch.js";
import { EndpointState } from "./wg/endpoint-state.js";
import { interfaceIndex, nudgeHandshake } from "./wg/interface-watch.js";
import { readInterface, setPeerEndpoint, type WireGuardInterfaceInfo } from "./wg/wg-command.js";
import { decodeKey } from "./wireguard/keys.js";

export interface TunnelboreOptions {
  interfaceName: string;
  catchAll: { address: string; port: number };
  loopbackPortBase?: number;
  /** Point each peer's WireGuard endpoint at its L(P) (default), keeping the real one as the static path. */
  manageEndpoints: boolean;
  /** Static endpoints given by the user, by public key; a hostname is re-resolved at each initiation. */
  staticEndpoints: Map<string, Endpoint>;
  stateDir: string;
  pollIntervalMs: number;
  /** NAT traversal through an introduction server; without it only static paths exist. */
  intro?: IntroSettings;
  /** Path liveness tuning (tests). */
  liveness?: LivenessOptions;
  /** Watch addresses and routes (default true; tests of the proxy alone turn it off). */
  watchNetwork?: boolean;
  /** Forward transport data of direct and static paths in the kernel (ebpf/fast-path.bpf.c). */
  ebpf?: boolean;
  logger: Logger;
}

/** After the interface was recreated, peers missing from it are kept this long (its config may follow). */
const RECREATED_GRACE_MS = 10_000;
/** Re-reads of the interface after a link event on it, to catch its configuration as it is applied (ms). */
const RESYNC_AFTER_LINK_EVENT_MS = [250, 750, 1500, 3000, 6000];

export interface IntroSettings {
  url: string;
  stunUrls?: string[];
  turn?: TurnConfig;
  /** Interfaces whose addresses must not become ICE candidates (besides the WireGuard interface). */
  excludeInterfaces: string[];
}

export interface TunnelboreEvents {
  "peer-added": [peer: ProxyPeer];
  "peer-removed": [publicKey: string];
}

/**
 * Keeps the proxy in step with the WireGuard interface: peers added and removed, endpoints pointed at
 * L(P) and restored on stop, and each peer's static path.
 */
export class Tunnelbore extends EventEmitter<TunnelboreEvents> {
  proxy!: WireGuardProxy;
  private readonly log: Logger;
  private readonly state: EndpointState;
  private readonly staticPaths = new Map<string, StaticPath>();
  private readonly icePaths = new Map<string, PeerPath>();
  private connector: PeerConnector | null = null;
  private monitor: LivenessMonitor | null = null;
  private fastPath: FastPathProgram | null = null;
  private kernel: KernelForwarder | null = null;
  private watch: AddressWatch | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly resyncTimers = new Set<NodeJS.Timeout>();
  private syncing: Promise<void> | null = null;
  private resyncWanted = false;
  private interfaceMissing = false;
  private ifindex: number | null = null;
  /** When the interface was last seen recreated (0: never). */
  private recreatedAt = 0;
  private lastHandshakes = new Map<string, number>();
  private stopped = false;
  private started = false;

  constructor(private readonly options: TunnelboreOptions) {
    super();
    this.log = options.logger;
    this.state = new EndpointState(options.stateDir, options.interfaceName);
  }

  async start(): Promise<void> {
    const info = await readInterface(this.options.interfaceName);
    if (!info.listenPort) {
      throw new ConfigError(
        "no-listen-port",
        `interface ${info.name} has no listen port: set one (wg set ${info.name} listen-port N)`,
        { interface: info.name },
      );
    }
    for (const key of this.options.staticEndpoints.keys()) {
      if (!info.peers.some((p) => p.publicKey === key)) {
        this.log.warn({ peer: key }, "--endpoint names a peer that is not on the interface (yet)");
      }
    }
    await this.state.load();
    if (this.options.ebpf) {
      try {
        this.fastPath = await FastPathProgram.load(info.name);
      } catch (err) {
        if (err instanceof ConfigError) throw err;
        throw new ConfigError(
          "ebpf-unavailable",
          `--ebpf: the kernel fast path cannot be loaded (${(err as Error).message}); run without --ebpf to forward in user space`,
          { interface: info.name },
          { cause: err },
        );
      }
      this.kernel = new KernelForwarder(this.fastPath, { wireguardInterface: info.name, logger: this.log });
      this.log.info({ tcPreference: this.fastPath.preference }, "kernel fast path loaded");
    }
    this.proxy = new WireGuardProxy({
      kernel: this.kernel,
      wireguardPort: info.listenPort,
      catchAll: this.options.catchAll,
      loopbackPortBase: this.options.loopbackPortBase,
      localPublicKey: info.publicKey ? decodeKey(info.publicKey) : undefined,
      logger: this.log,
    });
    await this.proxy.start();
    this.ifindex = await interfaceIndex(info.name);
    const monitor = new LivenessMonitor(() => this.proxy.allPeers(), this.options.liveness);
    this.monitor = monitor;
    this.proxy.on("initiation-sent", (peer) => {
      this.log.debug({ peer: peer.publicKey, path: peer.path?.remote }, "handshake initiation sent");
      monitor.initiationSent(peer);
    });
    if (this.options.intro) this.startConnector(this.options.intro, info);
    await this.apply(info);
    monitor.start();
    if (this.options.watchNetwork !== false) await this.startWatch(info);
    this.timer = setInterval(() => void this.sync(), this.options.pollIntervalMs);
    this.timer.unref();
    this.started = true;
  }

  /** Local network changes restart ICE; link events of the WireGuard interface make us look at it again. */
  private async startWatch(info: WireGuardInterfaceInfo): Promise<void> {
    const watch = new AddressWatch({
      wireguardInterface: info.name,
      ignoreInterfaces: this.options.intro?.excludeInterfaces ?? [],
      logger: this.log,
    });
    watch.on("change", (summary) => {
      this.log.info({ addresses: summary.addresses, routes: summary.defaultRoutes }, "local network changed");
      this.connector?.networkChanged("local network changed");
      this.kernel?.refresh(this.proxy.allPeers());
    });
    watch.on("wireguard-link", () => this.resyncSoon());
    try {
      await watch.start();
      this.watch = watch;
    } catch (err) {
      this.log.warn({ err }, "cannot watch local addresses; network changes are noticed by probes only");
    }
  }

  /** Reads the interface now and a few times more while it is being (re)configured. */
  private resyncSoon(): void {
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
        const info = await readInterface(this.options.interfaceName);
        const index = await interfaceIndex(info.name);
        if (this.interfaceMissing || (index !== null && this.ifindex !== null && index !== this.ifindex)) {
          this.log.info({ interface: info.name }, "interface is back (recreated)");
          this.recreatedAt = Date.now();
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

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.resyncTimers) clearTimeout(t);
    this.watch?.stop();
    this.monitor?.stop();
    await this.syncing;
    await this.connector?.stop();
    if (this.options.manageEndpoints && this.started) await this.restoreEndpoints();
    await this.proxy?.close();
    for (const path of this.staticPaths.values()) path.close();
    this.staticPaths.clear();
    await this.fastPath?.close();
  }

  /** Everything `tunnelbore status` shows. */
  statusReport(): StatusReport {
    if (!this.proxy) {
      const { address, port } = this.options.catchAll;
      return {
        interface: this.options.interfaceName,
        ready: false,
        catchAll: `${address}:${port}`,
        wireguardPort: 0,
        peers: [],
        drops: newDropCounters(),
        kernelFastPath: null,
      };
    }
    const peers: PeerStatus[] = [];
    for (const peer of this.proxy.allPeers()) {
      const path = peer.path;
      peers.push({
        publicKey: peer.publicKey,
        state: this.peerState(peer),
        pathKind: path?.kind ?? null,
        remote: path?.remote ?? null,
        loopback: `${peer.loopback.address}:${peer.loopback.port}`,
        rttMs: roundMs(this.monitor?.rttMs(peer) ?? null) ?? peer.handshakeRttMs,
        lastHandshake: this.lastHandshakes.get(peer.publicKey) ?? 0,
        txBytes: peer.traffic.txBytes,
        rxBytes: peer.traffic.rxBytes,
        kernelFastPath: this.kernel?.carries(peer) ?? false,
        kernelTxDatagrams: peer.kernelTraffic.txDatagrams,
        kernelRxDatagrams: peer.kernelTraffic.rxDatagrams,
        txDatagrams: peer.traffic.txDatagrams,
        rxDatagrams: peer.traffic.rxDatagrams,
      });
    }
    const { address, port } = this.proxy.catchAllAddress;
    return {
      interface: this.options.interfaceName,
      ready: this.started,
      catchAll: `${address}:${port}`,
      wireguardPort: this.proxy.wireguardListenPort,
      peers,
      drops: { ...this.proxy.drops },
      kernelFastPath: this.fastPath ? { interfaces: this.fastPath.interfaces } : null,
    };
  }

  private startConnector(intro: IntroSettings, info: WireGuardInterfaceInfo): void {
    if (!info.privateKey) {
      throw new ConfigError(
        "no-private-key",
        `interface ${info.name} has no private key; the introduction server needs it to authenticate us`,
        { interface: info.name },
      );
    }
    const connector = new PeerConnector({
      introUrl: intro.url,
      privateKey: decodeKey(info.privateKey),
      stunUrls: intro.stunUrls,
      turn: intro.turn,
      excludeInterfaces: [info.name, ...intro.excludeInterfaces],
      excludeAddresses: tunnelRanges(info),
      logger: this.log,
    });
    connector.on("path", (key, path, reason) => {
      if (path) this.icePaths.set(key, path);
      else this.icePaths.delete(key);
      this.choosePath(key, path ? reason : `ice path lost: ${reason}`);
    });
    this.proxy.on("path-needed", (peer) => connector.connect(peer.publicKey, "initiation held"));
    const monitor = this.monitor;
    if (monitor) {
      monitor.on("suspect", (peer, reason, repeat) => {
        this.log[repeat ? "debug" : "info"](
          { peer: peer.publicKey, remote: peer.path?.remote, reason },
          repeat ? "path still suspect" : "path suspect; restarting ice",
        );
        connector.connect(peer.publicKey, reason);
      });
      monitor.on("recovered", (peer) =>
        this.log.info({ peer: peer.publicKey, remote: peer.path?.remote }, "suspect path answers again"),
      );
      monitor.on("dead", (peer) => connector.pathDead(peer.publicKey));
    }
    connector.start();
    this.connector = connector;
  }

  /** ICE (direct, else relay) when it has a pair, else the static endpoint, else none (initiations wait). */
  private choosePath(publicKey: string, reason: string): void {
    this.proxy.setPath(
      publicKey,
      this.icePaths.get(publicKey) ?? this.staticPaths.get(publicKey) ?? null,
      reason,
    );
  }

  /** The peer's place in DESIGN.md's life cycle, for status. */
  private peerState(peer: ProxyPeer): string {
    const path = peer.path;
    const ice = this.connector?.state(peer.publicKey) ?? null;
    if (path) {
      // Upgrade attempts and restarts the peer started on its own leave a working path: connected.
      if (ice === "restarting" && this.connector?.repairing(peer.publicKey)) return "restarting";
      return this.monitor?.suspectReason(peer) ? "suspect" : `connected(${path.kind})`;
    }
    if (ice === "connecting" || ice === "restarting") return "connecting";
    if (ice === "failed") return "failed";
    if (peer.heldInitiation) return "signalling";
    return "idle";
  }

  private async apply(info: WireGuardInterfaceInfo): Promise<void> {
    this.lastHandshakes = new Map(info.peers.map((p) => [p.publicKey, p.latestHandshake]));
    if (info.listenPort && info.listenPort !== this.proxy.wireguardListenPort) {
      this.log.info({ port: info.listenPort }, "WireGuard listen port changed");
      this.proxy.setWireGuardPort(info.listenPort);
    }
    const present = new Set(info.peers.map((p) => p.publicKey));
    // A recreated interface is often configured peer by peer: keep our peers (their L(P), paths and ICE
    // sessions) for a while rather than tear them down because a read came too early.
    const graceful = this.recentlyRecreated();
    for (const peer of [...this.proxy.allPeers()]) {
      if (!present.has(peer.publicKey) && !graceful) this.removePeer(peer.publicKey);
    }
    // Sorted, so that a fresh start assigns colliding loopback addresses in the same order every time.
    const sorted = [...info.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
    for (const p of sorted) {
      try {
        await this.applyPeer(p.publicKey, p.endpoint, p.persistentKeepalive);
      } catch (err) {
        this.log.warn({ err, peer: p.publicKey }, "cannot set up peer");
      }
    }
    const keys = new Set(sorted.map((p) => p.publicKey));
    if (graceful) for (const peer of this.proxy.allPeers()) keys.add(peer.publicKey);
    this.connector?.setExcludedAddresses(tunnelRanges(info));
    this.connector?.setPeers([...keys]);
  }

  /** The interface was recreated a moment ago (WireGuard restarted), and may still be being configured. */
  private recentlyRecreated(): boolean {
    return this.recreatedAt !== 0 && Date.now() - this.recreatedAt < RECREATED_GRACE_MS;
  }

  private async applyPeer(publicKey: string, endpoint: string | null, keepalive: number): Promise<void> {
    let peer = this.proxy.peer(publicKey);
    if (!peer) {
      peer = await this.proxy.addPeer(publicKey, decodeKey(publicKey));
      this.emit("peer-added", peer);
    }
    const loopback = `${peer.loopback.address}:${peer.loopback.port}`;
    const real = endpoint && !isLoopbackHost(parseEndpoint(endpoint).host) ? endpoint : null;
    if (this.options.manageEndpoints && endpoint !== loopback) {
      // Remember the real endpoint on disk before WireGuard forgets it.
      if (real) await this.state.set(publicKey, real);
      await setPeerEndpoint(this.options.interfaceName, publicKey, loopback);
      this.log.info(
        { peer: publicKey, from: endpoint, to: loopback },
        "pointed WireGuard endpoint at loopback",
      );
      // WireGuard lost the endpoint while we ran: it was restarted, and the peer still holds a session
      // the new WireGuard does not know. Start a handshake now rather than after the peer's 15 s.
      if (this.started && endpoint === null && this.recentlyRecreated()) {
        await nudgeHandshake(this.options.interfaceName, publicKey, keepalive).catch((err: unknown) =>
          this.log.debug({ err, peer: publicKey }, "cannot nudge a handshake"),
        );
      }
    }
    const chosen =
      this.options.staticEndpoints.get(publicKey) ??
      (this.options.manageEndpoints
        ? maybeParse(this.state.original(publicKey))
        : real
          ? parseEndpoint(real)
          : undefined);
    await this.setStaticPath(peer, chosen);
  }

  private async setStaticPath(peer: ProxyPeer, endpoint: Endpoint | undefined): Promise<void> {
    const current = this.staticPaths.get(peer.publicKey);
    if (current && endpoint && formatEndpoint(current.endpoint) === formatEndpoint(endpoint)) return;
    if (!current && !endpoint) return;
    this.staticPaths.delete(peer.publicKey);
    if (endpoint) {
      const path = new StaticPath(endpoint, this.log.child({ peer: peer.publicKey }));
      path.onForeignDatagram = () => this.proxy.drops["foreign-source"]++;
      await path.open();
      this.staticPaths.set(peer.publicKey, path);
    }
    this.choosePath(peer.publicKey, endpoint ? "static endpoint" : "static endpoint removed");
    current?.close();
  }

  private removePeer(publicKey: string): void {
    this.proxy.removePeer(publicKey);
    this.staticPaths.get(publicKey)?.close();
    this.staticPaths.delete(publicKey);
    this.icePaths.delete(publicKey);
    void this.state.delete(publicKey);
    this.emit("peer-removed", publicKey);
  }

  /** Gives WireGuard back the real endpoints we replaced, where it still points at our L(P). */
  private async restoreEndpoints(): Promise<void> {
    let info: WireGuardInterfaceInfo;
    try {
      info = await readInterface(this.options.interfaceName);
    } catch (err) {
      this.log.warn({ err }, "cannot read the interface to restore endpoints");
      return;
    }
    for (const [publicKey, original] of this.state.entries()) {
      const peer = this.proxy.peer(publicKey);
      const now = info.peers.find((p) => p.publicKey === publicKey)?.endpoint;
      if (!peer || now !== `${peer.loopback.address}:${peer.loopback.port}`) continue;
      try {
        await setPeerEndpoint(this.options.interfaceName, publicKey, original);
        await this.state.delete(publicKey);
        this.log.info({ peer: publicKey, endpoint: original }, "restored WireGuard endpoint");
      } catch (err) {
        this.log.warn({ err, peer: publicKey }, "cannot restore endpoint");
      }
    }
  }
}

/**
 * The tunnel's own ranges (the peers' allowed IPs), never ICE candidates: ICE must not run inside the
 * tunnel. Catch-all routes (/0 to /7) are left out, or nothing would remain.
 */
function tunnelRanges(info: WireGuardInterfaceInfo): string[] {
  return info.peers.flatMap((p) => p.allowedIps).filter((cidr) => Number(cidr.split("/")[1] ?? 32) >= 8);
}

function roundMs(ms: number | null): number | null {
  return ms === null ? null : Math.round(ms * 10) / 10;
}

function maybeParse(text: string | undefined): Endpoint | undefined {
  return text ? parseEndpoint(text) : undefined;
}
