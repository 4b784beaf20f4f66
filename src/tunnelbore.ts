import { type PingAnswer, type PingRequest, type PingTarget, probePath } from "./control/path-probe.js";
import { type PeerStatus, peerStatusOf, type StatusReport } from "./control/status.js";
import { ConfigError, RuntimeError } from "./errors.js";
import type { TurnConfig } from "./ice/ice-session.js";
import { IceSessionFactory } from "./ice/ice-session-factory.js";
import { InterfaceSync, type SyncedPeers } from "./interface-sync.js";
import { IntroLink, linkSignalling } from "./intro-client/intro-link.js";
import type { Logger } from "./log.js";
import type { IceServersAnswer } from "./netcheck/ice-servers.js";
import { systemClock } from "./peer/clock.js";
import { sweepIdlePeers } from "./peer/idle-sweep.js";
import { Peer, type PeerEnvironment, type PeerTiming } from "./peer/peer.js";
import { formatPeerState } from "./peer/peer-state.js";
import type { PrivilegeStatus } from "./privsep/privilege-status.js";
import {
  type EndpointMemory,
  type FastPathControl,
  LocalPrivilegedOps,
  type PrivilegedOps,
  type SocketMarking,
} from "./privsep/privileged-ops.js";
import { batchedUdpAvailability } from "./proxy/batched-udp.js";
import { newDropCounters } from "./proxy/counters.js";
import { type Endpoint, formatEndpoint, parseEndpoint } from "./proxy/endpoint.js";
import { chooseKernelFastPath, type KernelFastPathSetting } from "./proxy/kernel-fast-path-choice.js";
import type { KernelForwarder } from "./proxy/kernel-forwarder.js";
import { LivenessMonitor, type LivenessOptions } from "./proxy/liveness.js";
import { loopbackEndpointText } from "./proxy/loopback-address.js";
import { StaticPath } from "./proxy/static-path.js";
import { StaticSockets } from "./proxy/static-sockets.js";
import { WireGuardProxy } from "./proxy/wireguard-proxy.js";
import { AddressWatch } from "./wg/address-watch.js";
import { type MtuScene, mtuWarning, type PathMtuLeg, readMtuScene } from "./wg/mtu-check.js";
import { RemoteKeys } from "./wg/remote-keys.js";
import { TunnelLoopCheck } from "./wg/tunnel-loop-check.js";
import { tunnelRanges, type WireGuardInterfaceInfo, type WireGuardPeerInfo } from "./wg/wg-command.js";
import { wgQuickWarning } from "./wg/wg-quick-warning.js";
import { unknownSocketStatus } from "./wg/wireguard-sockets.js";
import { decodeKey } from "./wireguard/keys.js";

/** WireGuard's REJECT_AFTER_TIME: a session's keys are used no longer than this after its handshake. */
const WIREGUARD_SESSION_MS = 180_000;
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
  /** Reads further apart per peer for big interfaces (InterfaceSync's readInterval); 0 or absent: fixed. */
  pollPerPeerMs?: number;
  /** NAT traversal through an introduction server; without it only static paths exist. */
  intro?: IntroSettings;
  /** Path liveness tuning (tests). */
  liveness?: LivenessOptions;
  /** Watch addresses and routes (default true; tests of the proxy alone turn it off). */
  watchNetwork?: boolean;
  /** Forward transport data in the kernel (ebpf/fast-path.bpf.c): auto (default), on, off. */
  ebpf?: KernelFastPathSetting;
  /** Retry and upgrade backoffs of peers (tests). */
  peerTiming?: Partial<PeerTiming>;
  /**
   * `--idle-timeout`: a peer with no traffic for this long releases its ICE session (`dormant`) until
   * WireGuard sends to it again; 0 or absent: never.
   */
  idleTimeoutMs?: number;
  /** An interface missing at start is waited for (service boot order) instead of a configuration error. */
  waitForInterface?: boolean;
  /** The wg-quick configuration of the interface, checked for `SaveConfig` (default /etc/wireguard/IF.conf). */
  wgQuickConfig?: string;
  /** What needs privileges or the private key (default: done in this process). */
  privileged?: PrivilegedOps;
  /** How privileges are split, for status (default: one process). */
  privileges?: PrivilegeStatus;
  logger: Logger;
}

export interface IntroSettings {
  /** The first of `urls`. */
  url: string;
  /** Every --intro server, in order: one is used at a time (src/intro-client/server-list.ts). */
  urls: string[];
  stunUrls?: string[];
  turn?: TurnConfig;
  /** Interfaces whose addresses must not become ICE candidates (besides the WireGuard interface). */
  excludeInterfaces: string[];
}

/**
 * Keeps Tunnelbore in step with the WireGuard interface (peers added and removed, endpoints pointed at
 * L(P) and restored on stop, each peer's static path, the interface recreated) and wires the parts
 * together: the data plane, one Peer per WireGuard peer, the introduction server, liveness, the network.
 */
export class Tunnelbore {
  private readonly log: Logger;
  /** Everything that needs privileges or the private key (src/privsep/). */
  private readonly ops: PrivilegedOps;
  private readonly state: EndpointMemory;
  /** Keeps our own sockets out of a full tunnel (they carry the interface's fwmark). */
  private readonly bypass: SocketMarking;
  /** Peers whose remote routes into the interface all the same. */
  private readonly loops: TunnelLoopCheck;
  /** The peers' remotes parsed, for the routing handler's question before the loop check. */
  private readonly remoteKeys = new RemoteKeys();
  /** Reads the interface and applies its peers and endpoints (src/interface-sync.ts). */
  private readonly interfaceSync: InterfaceSync;
  /** One per WireGuard peer: each owns its life (src/peer/peer.ts). */
  private readonly peers = new Map<string, Peer>();
  private proxy: WireGuardProxy | null = null;
  /** The static paths' sockets: one per address family, shared. */
  private staticSockets: StaticSockets | null = null;
  private link: IntroLink | null = null;
  private iceSessions: IceSessionFactory | null = null;
  private monitor: LivenessMonitor | null = null;
  private fastPath: FastPathControl | null = null;
  private kernel: KernelForwarder | null = null;
  /** Why transport data is forwarded in user space (null while the kernel does it). */
  private userSpaceReason: string | null = null;
  private watch: AddressWatch | null = null;
  /** A peer's path changed since the last sync: the loop check is due. */
  private pathsMoved = false;
  private environment: {
    proxy: WireGuardProxy;
    link: IntroLink | null;
    iceSessions: IceSessionFactory | null;
    env: PeerEnvironment;
  } | null = null;
  private stopped = false;
  private started = false;
  /** Configuration problems, by topic, for status (each is also logged once at warn). */
  private readonly warnings = new Map<string, string>();
  /** The links and default routes as last read, for the MTU check when paths change. */
  private mtuScene: MtuScene | null = null;

  constructor(private readonly options: TunnelboreOptions) {
    this.log = options.logger;
    this.ops = options.privileged ?? new LocalPrivilegedOps(options);
    this.state = this.ops.endpoints;
    this.bypass = this.ops.bypass;
    this.interfaceSync = new InterfaceSync(options, this.ops, this.syncedPeers(), this.log);
    this.loops = new TunnelLoopCheck({
      interfaceName: options.interfaceName,
      logger: this.log,
      mark: () => this.bypass.mark,
    });
  }

  async start(): Promise<void> {
    const info = await this.interfaceSync.readAtStart();
    if (!info) return; // stopped while waiting for it
    await Promise.all([this.checkWgQuickConfig(), this.checkMtu()]);
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
    await this.bypass.start(info.fwmark); // before our first socket, so that it carries the mark too
    const choice = await chooseKernelFastPath({
      setting: this.options.ebpf ?? "auto",
      wireguardInterface: info.name,
      logger: this.log,
      load: (name) => this.ops.loadFastPath(name),
    });
    this.fastPath = choice.program;
    this.kernel = choice.forwarder;
    this.userSpaceReason = choice.reason;
    const proxy = new WireGuardProxy({
      kernel: this.kernel,
      wireguardPort: info.listenPort,
      catchAll: this.options.catchAll,
      loopbackPortBase: this.options.loopbackPortBase,
      localPublicKey: info.publicKey ? decodeKey(info.publicKey) : undefined,
      logger: this.log,
    });
    await proxy.start();
    this.proxy = proxy;
    this.staticSockets = new StaticSockets(this.log);
    this.staticSockets.onForeignDatagram = () => proxy.drops["foreign-source"]++;
    const monitor = new LivenessMonitor(() => proxy.peersWithPath(), this.options.liveness);
    this.monitor = monitor;
    proxy.on("path-needed", (data) => this.peers.get(data.publicKey)?.onHandshakeHeld());
    proxy.on("initiation-sent", (data) => {
      this.log.debug({ peer: data.publicKey, path: data.path?.remote }, "handshake initiation sent");
      monitor.initiationSent(data);
    });
    monitor.on("suspect", (data, reason, repeat) =>
      this.peers.get(data.publicKey)?.onSuspect(reason, repeat),
    );
    monitor.on("recovered", (data) => this.peers.get(data.publicKey)?.onRecovered());
    monitor.on("dead", (data) => this.peers.get(data.publicKey)?.onDead());
    monitor.on("doubt", (data) => this.peers.get(data.publicKey)?.onDoubt());
    monitor.on("heard", (data) => this.peers.get(data.publicKey)?.onHeard());
    monitor.on("quiet", (data) => this.peers.get(data.publicKey)?.onQuiet());
    if (this.options.intro) this.startIntroductions(this.options.intro, info);
    await this.interfaceSync.applyFirst(info);
    monitor.start();
    if (this.options.watchNetwork !== false) await this.startWatch(info);
    this.interfaceSync.startPolling();
    this.started = true;
  }

  /** wg-quick's SaveConfig would save our loopback endpoints: say how to prevent it, unless done. */
  private async checkWgQuickConfig(): Promise<void> {
    const file = this.options.wgQuickConfig ?? `/etc/wireguard/${this.options.interfaceName}.conf`;
    const warning = wgQuickWarning(await this.ops.checkWgQuickConfig(), file, this.log);
    if (warning) this.warnings.set("wg-quick", warning);
    else this.warnings.delete("wg-quick");
  }

  /** Reads the links and routes again, and checks WireGuard's MTU against them. */
  private async checkMtu(): Promise<void> {
    this.mtuScene = await readMtuScene();
    this.evaluateMtu();
  }

  /**
   * WireGuard's MTU against the uplink's and the peers' paths (src/wg/mtu-check.ts), as last read;
   * logged when the answer changes.
   */
  private evaluateMtu(): void {
    const scene = this.mtuScene;
    const legs: PathMtuLeg[] = [];
    for (const [key, peer] of this.peers) {
      const leg = peer.path?.leg?.();
      if (leg) legs.push({ path: `peer ${key}'s path`, leg });
    }
    const iface = this.options.interfaceName;
    const warning = scene ? mtuWarning(scene.links, scene.defaults, iface, legs) : null;
    if (this.stopped || warning === (this.warnings.get("mtu") ?? null)) return;
    if (warning) {
      this.warnings.set("mtu", warning);
      this.log.warn({ interface: this.options.interfaceName }, warning);
    } else {
      this.warnings.delete("mtu");
      this.log.info({ interface: this.options.interfaceName }, "WireGuard's MTU fits the uplink now");
    }
  }

  /** SIGHUP: configuration read again (the wg-quick file, the interface); endpoints managed again. */
  async reload(): Promise<void> {
    if (this.stopped || !this.started) return;
    this.log.info({ interface: this.options.interfaceName }, "reloading: reading the interface again");
    await Promise.all([this.checkWgQuickConfig(), this.checkMtu()]);
    // Waiting out a backoff (not a member yet, say, and the key was just allowed): try now.
    if (this.link?.retryNow()) this.log.info("reloading: connecting to the introduction server now");
    await this.interfaceSync.reload();
  }

  /**
   * `tunnelbore release` (wg-quick's PreDown, before SaveConfig writes the file): WireGuard gets its
   * real endpoints back, and they are left alone until the interface is recreated or SIGHUP.
   */
  async release(): Promise<{ restored: number }> {
    const restored = await this.interfaceSync.release();
    for (const peer of this.peers.values()) peer.onEndpointReleased();
    this.log.info(
      { restored },
      "released: WireGuard has its real endpoints until the interface is recreated",
    );
    return { restored };
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
      this.networkChanged("local network changed");
    });
    watch.on("wireguard-link", () => {
      this.interfaceSync.resyncSoon();
      void this.checkMtu(); // an MTU set (or wg-quick's) is a line of the interface too
    });
    watch.on("routing", (change) => {
      // The loop check looks every peer's remote up again (340 ms of CPU at 10,000): only when
      // everything changed; otherwise only the peers whose remote a changed prefix covers (a pod's /32
      // on a Kubernetes node covers none).
      if (change.all) this.loops.invalidate();
      else this.loops.recheck(this.remoteKeys.peersInside(this.pathRemotes(), change.prefixes));
      // A route or rule changed without our addresses or default routes changing (a more specific
      // route, a new gateway): kernel entries take their interface and next hop anew, only those whose
      // remote is inside a changed route's prefix when that is all that changed.
      if (!this.proxy || !this.kernel) return;
      if (change.all) this.kernel.refresh(this.proxy.allPeers());
      else this.kernel.refreshWithin(change.prefixes);
    });
    try {
      await watch.start();
      this.watch = watch;
    } catch (err) {
      this.log.warn({ err }, "cannot watch local addresses; network changes are noticed by probes only");
    }
  }

  /** Each peer's path remote (undefined: none), by key, as the loop check is given them. */
  private *pathRemotes(): Generator<[string, string | undefined]> {
    for (const [key, peer] of this.peers) yield [key, peer.path?.remote];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.watch?.stop();
    this.monitor?.stop();
    await this.interfaceSync.stop();
    await this.link?.stop();
    // A hub's stop: each peer's "path removed" and "kernel fast path off" at debug.
    if (this.peers.size > 10) this.proxy?.setBulk(true);
    await Promise.all([...this.peers.values()].map((peer) => peer.close()));
    if (this.options.manageEndpoints && this.started) await this.interfaceSync.restoreEndpoints();
    this.peers.clear();
    await this.proxy?.close();
    this.staticSockets?.close();
    await this.fastPath?.close();
    this.loops.close();
    await this.bypass.close();
  }

  /** Everything `tunnelbore status` shows. */
  async statusReport(): Promise<StatusReport> {
    // Read first: what follows is taken in one turn, as before.
    const wireguardSocket = await this.ops
      .wireguardSocket()
      .catch((err: unknown) => unknownSocketStatus(0, (err as Error).message));
    const proxy = this.proxy;
    const { address, port } = proxy?.catchAllAddress ?? this.options.catchAll;
    const peers: PeerStatus[] = [];
    for (const peer of this.peers.values()) {
      const data = proxy?.peer(peer.publicKey);
      if (data)
        peers.push(
          peerStatusOf(peer, data, {
            rttMs: this.monitor?.rttMs(data) ?? null,
            kernelFastPath: this.kernel?.carries(data) ?? false,
            routedIntoTunnel: this.loops.of(peer.publicKey),
          }),
        );
    }
    return {
      interface: this.options.interfaceName,
      ready: this.started,
      waitingFor: this.interfaceSync.waitingFor,
      warnings: [...this.warnings.values()],
      intro: this.link?.status() ?? null,
      catchAll: `${address}:${port}`,
      wireguardPort: proxy?.wireguardListenPort ?? 0,
      peers,
      drops: { ...(proxy?.drops ?? newDropCounters()) },
      forwarding: {
        setting: this.options.ebpf ?? "auto",
        mode: this.kernel ? "kernel" : "user space",
        reason: this.kernel ? null : (this.userSpaceReason ?? "not started yet"),
        interfaces: this.fastPath?.interfaces ?? [],
        userSpaceIo: batchedUdpAvailability().io,
      },
      tunnelBypass: this.bypass.status(),
      wireguardSocket,
      privileges: this.options.privileges ?? { mode: "one process", user: null, uid: null, reason: null },
    };
  }

  /** `tunnelbore netcheck`: the STUN/TURN servers and TURN credentials ICE uses now. */
  iceServers(): IceServersAnswer {
    const turn = this.link?.turn();
    return { stunUrls: this.link?.stunUrls() ?? [], turn: turn ?? null };
  }

  /** `tunnelbore ping`: one probe of the peer's current path (src/control/path-probe.ts). */
  async ping(request: PingRequest): Promise<PingAnswer> {
    const peer = this.peers.get(request.peer);
    const data = this.proxy?.peer(request.peer);
    if (!peer || !data) {
      throw new ConfigError("unknown-peer", `no peer ${request.peer} on ${this.options.interfaceName}`);
    }
    const target: PingTarget = {
      publicKey: peer.publicKey,
      state: formatPeerState(peer.state),
      path: data.path,
      kernel: this.kernel?.carries(data) ?? false,
      handshakeRttMs: data.handshakeRttMs,
      lastHandshake: peer.lastHandshake,
    };
    return probePath(target, request.timeoutMs);
  }

  /** NAT traversal: the introduction server's link, and ICE sessions made with what it hands out. */
  private startIntroductions(intro: IntroSettings, info: WireGuardInterfaceInfo): void {
    const keys = this.ops.keyAgreement(info);
    if (!keys) {
      throw new ConfigError(
        "no-private-key",
        `interface ${info.name} has no private key; the introduction server needs it to authenticate us`,
        { interface: info.name },
      );
    }
    const link = new IntroLink(
      {
        url: intro.urls,
        keys,
        stunUrls: intro.stunUrls,
        turn: intro.turn,
        logger: this.log,
      },
      {
        peerOnline: (key) => this.peers.get(key)?.onPeerOnline(),
        peerOffline: (key) => this.peers.get(key)?.onPeerOffline(),
        signal: (key, signal) => this.peers.get(key)?.onSignal(signal),
      },
    );
    this.iceSessions = new IceSessionFactory({
      excludeInterfaces: [info.name, ...intro.excludeInterfaces],
      excludeAddresses: tunnelRanges(info),
      stunUrls: () => link.stunUrls(),
      turn: () => link.turn(),
      logger: this.log,
    });
    link.start();
    this.link = link;
  }

  /** What every Peer is given: clock, data plane, and the introduction server with ICE where configured. */
  /**
   * One environment for every peer (its functions take the peer's key), made again only if what it
   * closes over changed: a hub's 10,000 peers each had their own, a dozen closures and 1 KiB (issue 15).
   */
  private peerEnvironment(proxy: WireGuardProxy): PeerEnvironment {
    const made = this.environment;
    if (made?.proxy === proxy && made.link === this.link && made.iceSessions === this.iceSessions)
      return made.env;
    const signalling = this.link && this.iceSessions ? linkSignalling(this.link, this.iceSessions) : null;
    const env: PeerEnvironment = {
      clock: systemClock,
      logger: this.log,
      dataPlane: {
        setPath: (key, path, reason) => {
          this.pathsMoved = true;
          proxy.setPath(key, path, reason);
        },
        setDormant: (key, dormant) => proxy.setDormant(key, dormant),
        pathMoved: () => {
          this.pathsMoved = true;
        },
      },
      signalling,
      timing: { ...this.options.peerTiming, idleTimeoutMs: this.options.idleTimeoutMs ?? 0 },
    };
    this.environment = { proxy, link: this.link, iceSessions: this.iceSessions, env };
    return env;
  }

  /**
   * Our addresses or routes changed: every peer restarts ICE as soon as it is online again, after the
   * link to the introduction server is replaced; kernel entries follow the new routes.
   */
  private networkChanged(reason: string): void {
    if (this.stopped) return;
    for (const peer of this.peers.values()) peer.onNetworkChanged(reason);
    this.iceSessions?.networkChanged();
    this.link?.reconnect();
    if (this.proxy) this.kernel?.refresh(this.proxy.allPeers());
  }

  /** The peers as the interface's sync makes, updates and removes them (src/interface-sync.ts). */
  private syncedPeers(): SyncedPeers {
    return {
      follow: (info) => this.followInterface(info),
      ensure: (wireguard) => this.ensurePeer(wireguard),
      remove: (key) => this.removePeer(key),
      bulk: (on) => this.proxy?.setBulk(on),
      keys: () => this.peers.keys(),
      count: () => this.peers.size,
      has: (key) => this.peers.has(key),
      setStaticPath: (peer, endpoint) => this.setStaticPath(peer, endpoint),
      loopbacksOf: (key) => {
        const data = this.proxy?.peer(key);
        if (!data) return [];
        return data.loopback6
          ? [loopbackEndpointText(data.loopback), loopbackEndpointText(data.loopback6)]
          : [loopbackEndpointText(data.loopback)];
      },
      applied: (info, changed) => {
        // Idleness rides on this periodic read: one pass, no timer of its own (src/peer/idle-sweep.ts);
        // without an introduction server there is no ICE to release (a static hub pays nothing).
        let rested = 0;
        if (this.options.idleTimeoutMs && this.link && this.proxy) {
          const proxy = this.proxy;
          rested = sweepIdlePeers(
            this.peers.values(),
            (key) => proxy.peer(key),
            Date.now(),
            (key) => proxy.trafficKnownUntil(key),
          );
        }
        // Each over every peer, so only when what it depends on changed: a hub's reads change counters
        // at most, and 10,000 peers were gone over for nothing every 2 s (issues 15, 16).
        if (changed.allowedIps) this.iceSessions?.setExcludedAddresses(tunnelRanges(info));
        if (changed.peers) this.link?.setPeers([...this.peers.keys()]);
        if (changed.peers || this.pathsMoved) {
          this.pathsMoved = false;
          this.loops.update(new Map([...this.peers].map(([key, peer]) => [key, peer.path?.remote ?? null])));
          this.evaluateMtu();
        }
        return rested;
      },
    };
  }

  /** The interface's fwmark and listen port, before its peers; false while there is no data plane yet. */
  private async followInterface(info: WireGuardInterfaceInfo): Promise<boolean> {
    const proxy = this.proxy;
    if (!proxy) return false;
    if (await this.bypass.follow(info.fwmark)) await this.renewSockets("the interface's fwmark changed");
    if (info.listenPort && info.listenPort !== proxy.wireguardListenPort) {
      this.log.info({ port: info.listenPort }, "WireGuard listen port changed");
      proxy.setWireGuardPort(info.listenPort);
    }
    return true;
  }

  /** The one place a peer comes: its L(P) (WireGuard's endpoint first, what the run before held) and Peer. */
  private async ensurePeer(
    wireguard: WireGuardPeerInfo,
  ): Promise<{ peer: Peer; loopback: string; loopback6: string | null }> {
    const proxy = this.proxy;
    if (!proxy) throw new RuntimeError("not-started", "a peer before the data plane is up");
    const { publicKey, endpoint } = wireguard;
    const data = proxy.peer(publicKey) ?? (await proxy.addPeer(publicKey, decodeKey(publicKey), endpoint));
    let peer = this.peers.get(publicKey);
    if (!peer) {
      peer = new Peer(publicKey, this.peerEnvironment(proxy));
      this.peers.set(publicKey, peer);
      // Lazy peers: one whose latest handshake with WireGuard is older than the idle timeout and than
      // WireGuard's session (its next packet is then an initiation, held as at a cold start) starts
      // dormant. One with a live session, or none yet (a new peer), is connected proactively.
      const { latestHandshake } = wireguard;
      const quietMs = Date.now() - latestHandshake * 1000;
      if (latestHandshake > 0 && quietMs >= WIREGUARD_SESSION_MS) peer.onCreatedQuiet(quietMs);
    }
    const loopback6 = data.loopback6 ? loopbackEndpointText(data.loopback6) : null;
    return { peer, loopback: loopbackEndpointText(data.loopback), loopback6 };
  }

  /** Opens a static path when the peer's real endpoint is new or changed; the peer owns it from then on. */
  private async setStaticPath(peer: Peer, endpoint: Endpoint | undefined, renew = false): Promise<void> {
    const text = endpoint ? formatEndpoint(endpoint) : null;
    if (text === peer.staticEndpoint && !renew) return;
    if (!endpoint) {
      peer.onStaticPath(null, null);
      return;
    }
    if (!this.staticSockets) return;
    const path = new StaticPath(endpoint, this.log.child({ peer: peer.publicKey }), this.staticSockets);
    await path.open();
    peer.onStaticPath(path, text);
  }

  /**
   * New sockets carry another mark (the interface's fwmark appeared or changed), and the ones made before
   * would be routed into the tunnel: ICE and the introduction server start over as after a network
   * change, static paths get new sockets.
   */
  private async renewSockets(reason: string): Promise<void> {
    this.networkChanged(reason);
    this.staticSockets?.renew();
    for (const peer of this.peers.values()) {
      if (!peer.staticEndpoint) continue;
      await this.setStaticPath(peer, parseEndpoint(peer.staticEndpoint), true).catch((err: unknown) =>
        this.log.warn({ err, peer: peer.publicKey }, "cannot renew the static path's socket"),
      );
    }
  }

  /** The one place a peer goes: its life ends (paths, ICE), then its L(P) (`apply` forgets its saved endpoint). */
  private removePeer(publicKey: string): void {
    const peer = this.peers.get(publicKey);
    this.peers.delete(publicKey);
    void peer?.close();
    this.proxy?.removePeer(publicKey);
  }
}
