/**
 * Everything `tunnelbore run` does that needs root, CAP_NET_ADMIN or the WireGuard private key, as one
 * narrow interface (DESIGN §6). Tunnelbore (the part that parses network input) asks only through it.
 * LocalPrivilegedOps does it in this process (one-process mode, as before privilege separation);
 * RemotePrivilegedOps (remote-ops.ts) asks the privileged parent over IPC.
 */
import { FastPathProgram, type MovedCounter } from "../../ebpf/loader.js";
import type { Logger } from "../log.js";
import { type KeyAgreement, LocalKeyAgreement } from "../signalling/key-agreement.js";
import { canMakePrivateFiles, DumpFile } from "../wg/dump-file.js";
import { restoreEndpoints } from "../wg/endpoint-restore.js";
import { EndpointState } from "../wg/endpoint-state.js";
import { nudgeIfTrafficWaiting } from "../wg/handshake-nudge.js";
import { type DumpChanges, InterfaceReader } from "../wg/interface-reader.js";
import { nudgeHandshake } from "../wg/interface-watch.js";
import { ReceiveBufferCheck } from "../wg/receive-buffer-check.js";
import { TunnelBypass, type TunnelBypassStatus } from "../wg/tunnel-bypass.js";
import { UapiSocket } from "../wg/uapi-socket.js";
import {
  type EndpointChange,
  readDump,
  setPeerEndpoint,
  setPeerEndpoints,
  type WireGuardInterfaceInfo,
  type WireGuardPeerInfo,
} from "../wg/wg-command.js";
import { checkWgQuickConfigFile, type WgQuickConfigCheck } from "../wg/wg-quick-config.js";
import type { WireGuardSocketStatus } from "../wg/wireguard-sockets.js";
import { decodeKey } from "../wireguard/keys.js";

/** What the kernel fast path offers its user (KernelForwarder): the loaded program's control plane. */
export type FastPathControl = Pick<
  FastPathProgram,
  | "attach"
  | "setOutbound"
  | "deleteOutbound"
  | "outboundCounters"
  | "setInbound"
  | "deleteInbound"
  | "inboundCounters"
  | "close"
  | "preference"
  | "interfaces"
> &
  // Optional: fakes, and anything without batched reads, answer one entry at a time.
  Partial<Pick<FastPathProgram, "countersMany">> & {
    /**
     * The entries whose packets moved since the last call (every one when `full`); without it the
     * forwarder reads every quiet entry's counters in turn.
     */
    countersMoved?(full: boolean): MovedCounter[] | Promise<MovedCounter[]>;
  };

/** The real endpoints Tunnelbore replaced, remembered on disk (by the privileged side). */
export interface EndpointMemory {
  load(): Promise<void>;
  original(publicKey: string): string | undefined;
  set(publicKey: string, endpoint: string): Promise<void>;
  delete(publicKey: string): Promise<void>;
  /** Many at once, with one write of the file; answers the keys not remembered (refused). */
  setMany(entries: [publicKey: string, endpoint: string][]): Promise<string[]>;
  deleteMany(publicKeys: string[]): Promise<void>;
}

/** A peer of a batch whose endpoint was not set, and why. */
export interface EndpointRefusal {
  publicKey: string;
  reason: string;
}

/** Keeps Tunnelbore's sockets out of a full tunnel (src/wg/tunnel-bypass.ts). */
export interface SocketMarking {
  readonly mark: number;
  start(fwmark: number): Promise<void>;
  follow(fwmark: number): Promise<boolean>;
  status(): TunnelBypassStatus;
  close(): Promise<void>;
}

export interface PrivilegedOps {
  /** `wg show IF dump`. Whether privateKey is there depends on the side: never in the worker. */
  readInterface(): Promise<WireGuardInterfaceInfo>;
  /** X25519 with the interface's private key, or null when it has none. */
  keyAgreement(info: WireGuardInterfaceInfo): KeyAgreement | null;
  /** Points the peer's WireGuard endpoint at `endpoint` (a loopback L(P)). */
  setPeerEndpoint(publicKey: string, endpoint: string): Promise<void>;
  /** Many at once, in batches of one `wg set` (src/wg/wg-command.ts); the peers that failed. */
  setPeerEndpoints(changes: EndpointChange[]): Promise<EndpointRefusal[]>;
  /** handshake-nudge.ts: WireGuard tries again now when it had traffic waiting. Never throws. */
  nudgeIfTrafficWaiting(peer: WireGuardPeerInfo, endpoint: string, log: Logger): Promise<void>;
  /** interface-watch.ts: a handshake now, after the interface was recreated. */
  nudgeHandshake(publicKey: string, keepalive: number): Promise<void>;
  readonly endpoints: EndpointMemory;
  /** Gives WireGuard its real endpoints back where it still points at us; how many. */
  restoreEndpoints(pointsAtUs: (publicKey: string, endpoint: string | null) => boolean): Promise<number>;
  /** The interface's wg-quick file, checked for SaveConfig (null: none). */
  checkWgQuickConfig(): Promise<WgQuickConfigCheck | null>;
  readonly bypass: SocketMarking;
  /** Loads the kernel fast path for the interface (chooseKernelFastPath's `load`). */
  loadFastPath(wireguardInterface: string): Promise<FastPathControl>;
  /** A userspace WireGuard's socket: its receive buffer and drops (null for the kernel's). */
  wireguardSocket(): Promise<WireGuardSocketStatus | null>;
}

export interface LocalPrivilegedOpsOptions {
  interfaceName: string;
  stateDir: string;
  /** Default /etc/wireguard/IF.conf. */
  wgQuickConfig?: string;
  logger: Logger;
  /** The process whose sockets the bypass marks (default this one): the worker's, in the parent. */
  markedPid?: () => number;
}

/** PrivilegedOps done in this process. The privileged parent uses it too, behind its validation. */
export class LocalPrivilegedOps implements PrivilegedOps {
  readonly endpoints: EndpointState;
  readonly bypass: TunnelBypass;
  /** Peers whose record did not change since the last read are not parsed again. */
  private readonly reader: InterfaceReader;
  /** A userspace WireGuard's socket, read directly (no `wg` process per read). */
  private readonly uapi = new UapiSocket();
  /** The dump read into one kept buffer (null: no private temporary file here; read through a pipe). */
  private readonly dumpFile: DumpFile | null;
  /** Warns when a userspace WireGuard's socket buffer is small: here, where the interface is read. */
  private readonly receiveBuffer: ReceiveBufferCheck;

  constructor(private readonly options: LocalPrivilegedOpsOptions) {
    this.reader = new InterfaceReader(options.interfaceName);
    this.receiveBuffer = new ReceiveBufferCheck(options.interfaceName, options.logger);
    this.dumpFile = canMakePrivateFiles() ? new DumpFile() : null;
    this.endpoints = new EndpointState(options.stateDir, options.interfaceName);
    this.bypass = new TunnelBypass({
      interfaceName: options.interfaceName,
      logger: options.logger,
      memberPid: options.markedPid,
    });
  }

  async readInterface(): Promise<WireGuardInterfaceInfo> {
    const name = this.options.interfaceName;
    const answer = await this.uapi.read(name);
    if (answer) {
      // Only a userspace WireGuard has a socket of its own: the kernel's reads pay nothing for this.
      const info = this.reader.readUapi(answer);
      await this.receiveBuffer.afterRead(info.listenPort);
      return info;
    }
    return this.reader.readDump(this.dumpFile ? await this.dumpFile.read(name) : await readDump(name));
  }

  /** readInterface, with what it changed against the read before (the parent answers the worker so). */
  async readInterfaceChanges(): Promise<{ info: WireGuardInterfaceInfo; changes: DumpChanges }> {
    const info = await this.readInterface();
    return { info, changes: this.reader.changes };
  }

  /** The peer as the last read showed it. */
  lastReadPeer(publicKey: string): WireGuardPeerInfo | undefined {
    return this.reader.peer(publicKey);
  }

  keyAgreement(info: WireGuardInterfaceInfo): KeyAgreement | null {
    return info.privateKey ? new LocalKeyAgreement(decodeKey(info.privateKey)) : null;
  }

  setPeerEndpoint(publicKey: string, endpoint: string): Promise<void> {
    return setPeerEndpoint(this.options.interfaceName, publicKey, endpoint);
  }

  async setPeerEndpoints(changes: EndpointChange[]): Promise<EndpointRefusal[]> {
    const failures = await setPeerEndpoints(this.options.interfaceName, changes);
    return failures.map(({ publicKey, error }) => ({ publicKey, reason: error.message }));
  }

  nudgeIfTrafficWaiting(peer: WireGuardPeerInfo, endpoint: string, log: Logger): Promise<void> {
    return nudgeIfTrafficWaiting(this.options.interfaceName, peer, endpoint, log);
  }

  nudgeHandshake(publicKey: string, keepalive: number): Promise<void> {
    return nudgeHandshake(this.options.interfaceName, publicKey, keepalive);
  }

  restoreEndpoints(pointsAtUs: (publicKey: string, endpoint: string | null) => boolean): Promise<number> {
    return restoreEndpoints(this.options.interfaceName, this.endpoints, pointsAtUs, this.options.logger);
  }

  checkWgQuickConfig(): Promise<WgQuickConfigCheck | null> {
    return checkWgQuickConfigFile(this.wgQuickConfigPath);
  }

  get wgQuickConfigPath(): string {
    return this.options.wgQuickConfig ?? `/etc/wireguard/${this.options.interfaceName}.conf`;
  }

  loadFastPath(wireguardInterface: string): Promise<FastPathControl> {
    return FastPathProgram.load(wireguardInterface);
  }

  wireguardSocket(): Promise<WireGuardSocketStatus | null> {
    return this.receiveBuffer.status();
  }
}
