import { EventEmitter } from "node:events";
import type { PeerStatus, StatusReport } from "./control/status.js";
import { ConfigError, TunnelboreError } from "./errors.js";
import type { TurnConfig } from "./intro-client/ice-session.js";
import { PeerConnector } from "./intro-client/peer-connector.js";
import type { Logger } from "./log.js";
import { decodeKey } from "./mac1/keys.js";
import { newDropCounters } from "./proxy/counters.js";
import { type Endpoint, formatEndpoint, isLoopbackHost, parseEndpoint } from "./proxy/endpoint.js";
import type { PeerPath } from "./proxy/path.js";
import type { ProxyPeer } from "./proxy/proxy-peer.js";
import { StaticPath } from "./proxy/static-path.js";
import { WireGuardProxy } from "./proxy/wireguard-proxy.js";
import { EndpointState } from "./wg/endpoint-state.js";
import { readInterface, setPeerEndpoint, type WireGuardInterfaceInfo } from "./wg/wg-command.js";

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
  logger: Logger;
}

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
  private timer: NodeJS.Timeout | null = null;
  private syncing: Promise<void> | null = null;
  private interfaceMissing = false;
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
    this.proxy = new WireGuardProxy({
      wireguardPort: info.listenPort,
      catchAll: this.options.catchAll,
      loopbackPortBase: this.options.loopbackPortBase,
      localPublicKey: info.publicKey ? decodeKey(info.publicKey) : undefined,
      logger: this.log,
    });
    await this.proxy.start();
    this.proxy.on("initiation-sent", (peer) =>
      this.log.debug({ peer: peer.publicKey, path: peer.path?.remote }, "handshake initiation sent"),
    );
    if (this.options.intro) this.startConnector(this.options.intro, info);
    await this.apply(info);
    this.timer = setInterval(() => void this.sync(), this.options.pollIntervalMs);
    this.timer.unref();
    this.started = true;
  }

  /** Reads the interface again and applies what changed; one sync at a time. */
  sync(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    this.syncing ??= (async () => {
      try {
        const info = await readInterface(this.options.interfaceName);
        if (this.interfaceMissing) this.log.info({ interface: info.name }, "interface is back");
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
      }
    })();
    return this.syncing;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.syncing;
    await this.connector?.stop();
    if (this.options.manageEndpoints && this.started) await this.restoreEndpoints();
    await this.proxy?.close();
    for (const path of this.staticPaths.values()) path.close();
    this.staticPaths.clear();
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
        rttMs: peer.handshakeRttMs,
        lastHandshake: this.lastHandshakes.get(peer.publicKey) ?? 0,
        txBytes: peer.traffic.txBytes,
        rxBytes: peer.traffic.rxBytes,
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
    connector.on("path", (key, path) => {
      if (path) this.icePaths.set(key, path);
      else this.icePaths.delete(key);
      this.choosePath(key);
    });
    this.proxy.on("path-needed", (peer) => connector.connect(peer.publicKey, "initiation held"));
    connector.start();
    this.connector = connector;
  }

  /** ICE (direct, else relay) when it has a pair, else the static endpoint, else none (initiations wait). */
  private choosePath(publicKey: string): void {
    this.proxy.setPath(publicKey, this.icePaths.get(publicKey) ?? this.staticPaths.get(publicKey) ?? null);
  }

  /** The peer's place in DESIGN.md's life cycle, for status. */
  private peerState(peer: ProxyPeer): string {
    const path = peer.path;
    const ice = this.connector?.state(peer.publicKey) ?? null;
    if (path) return ice === "restarting" ? "restarting" : `connected(${path.kind})`;
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
    for (const peer of [...this.proxy.allPeers()]) {
      if (!present.has(peer.publicKey)) this.removePeer(peer.publicKey);
    }
    // Sorted, so that a fresh start assigns colliding loopback addresses in the same order every time.
    const sorted = [...info.peers].sort((a, b) => (a.publicKey < b.publicKey ? -1 : 1));
    for (const p of sorted) {
      try {
        await this.applyPeer(p.publicKey, p.endpoint);
      } catch (err) {
        this.log.warn({ err, peer: p.publicKey }, "cannot set up peer");
      }
    }
    this.connector?.setPeers(sorted.map((p) => p.publicKey));
  }

  private async applyPeer(publicKey: string, endpoint: string | null): Promise<void> {
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
    this.choosePath(peer.publicKey);
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

function maybeParse(text: string | undefined): Endpoint | undefined {
  return text ? parseEndpoint(text) : undefined;
}
