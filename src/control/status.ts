import type { IntroConnectionStatus } from "../intro-client/intro-status.js";
import type { IceRestartCounts } from "../peer/ice-restarts.js";
import type { IcePairFacts, Peer } from "../peer/peer.js";
import { formatPeerState } from "../peer/peer-state.js";
import type { PrivilegeStatus } from "../privsep/privilege-status.js";
import type { DropCounters } from "../proxy/counters.js";
import type { ForwardingStatus } from "../proxy/kernel-fast-path-choice.js";
import { loopbackEndpointText } from "../proxy/loopback-address.js";
import type { ProxyPeer } from "../proxy/proxy-peer.js";
import type { TunnelBypassStatus } from "../wg/tunnel-bypass.js";
import type { WireGuardSocketStatus } from "../wg/wireguard-sockets.js";

/** What `tunnelbore status` shows of one peer. */
export interface PeerStatus {
  publicKey: string;
  state: string;
  /** "direct", "relay", "static", or null while no path exists. */
  pathKind: string | null;
  remote: string | null;
  /** L(P), "127.a.b.c:port": the endpoint WireGuard is pointed at. */
  loopback: string;
  /**
   * L6(P), "[::1]:port", once bound (a plain UDP path over IPv6 carried by the kernel); null before.
   * While `wireguardHearsLoopback6`, WireGuard hears the peer from it, and `wg show` lists it.
   */
  loopback6: string | null;
  wireguardHearsLoopback6: boolean;
  rttMs: number | null;
  /** Unix seconds of WireGuard's latest handshake with the peer, 0 when never. */
  lastHandshake: number;
  txBytes: number;
  rxBytes: number;
  /** True while the kernel fast path carries the peer's transport data. */
  kernelFastPath: boolean;
  /**
   * Datagrams each way (part of all the counts) the kernel fast path carried. Read from the kernel every
   * 250 ms while the entry is busy, every 5 s once it was quiet for 5 s: a burst after a quiet spell
   * shows up to 5 s late (user space's own counts at once).
   */
  kernelTxDatagrams: number;
  kernelRxDatagrams: number;
  /** Bytes each way (part of `txBytes`, `rxBytes`) the kernel fast path carried. */
  kernelTxBytes: number;
  kernelRxBytes: number;
  /** Datagrams each way in all, the kernel's included. */
  txDatagrams: number;
  rxDatagrams: number;
  /**
   * The path's remote address when Tunnelbore's datagrams to it would be routed into this very
   * interface (a loop no mark prevents: see src/wg/tunnel-loop-check.ts); null otherwise.
   */
  routedIntoTunnel: string | null;
  /** Why the path is not direct (e.g. "symmetric NAT on both sides: relayed"); null when it is. */
  notDirectReason?: string | null;
  /** The ICE pair in use: both candidates' types, our TURN allocation's transport; null off ICE. */
  pair?: IcePairFacts | null;
  /** ICE restarts the peer asked for, by reason. */
  iceRestarts: IceRestartCounts;
}

export interface StatusReport {
  interface: string;
  /** False while `run` is still starting (reading the interface, binding sockets). */
  ready: boolean;
  /** What `run` waits for while not ready (e.g. "interface wg0 to appear"), else null. */
  waitingFor: string | null;
  /** Configuration problems the user should fix (e.g. wg-quick's SaveConfig without the release hook). */
  warnings: string[];
  /** The introduction server connection; null without --intro. */
  intro: IntroConnectionStatus | null;
  catchAll: string;
  wireguardPort: number;
  peers: PeerStatus[];
  drops: DropCounters;
  /** Where transport data is forwarded (kernel fast path or user space), and why not the kernel. */
  forwarding: ForwardingStatus;
  /** Whether Tunnelbore's sockets carry the interface's fwmark (full tunnels), and why not. */
  tunnelBypass: TunnelBypassStatus;
  /**
   * A userspace WireGuard's own UDP sockets: their receive buffer and drops (a small buffer drops
   * datagrams at speed); null for the kernel's, which has none.
   */
  wireguardSocket?: WireGuardSocketStatus | null;
  /** Whether network input is parsed by an unprivileged worker (privilege separation), and why not. */
  privileges?: PrivilegeStatus;
}

/** One peer's line of status: its life (`Peer`) and its data-plane counters (`ProxyPeer`). */
export function peerStatusOf(
  peer: Peer,
  data: ProxyPeer,
  more: { rttMs: number | null; kernelFastPath: boolean; routedIntoTunnel: string | null },
): PeerStatus {
  const path = peer.path;
  return {
    publicKey: peer.publicKey,
    state: formatPeerState(peer.state),
    pathKind: path?.kind ?? null,
    remote: path?.remote ?? null,
    loopback: loopbackEndpointText(data.loopback),
    loopback6: data.loopback6 ? loopbackEndpointText(data.loopback6) : null,
    wireguardHearsLoopback6: data.deliversFrom6,
    rttMs: more.rttMs === null ? data.handshakeRttMs : Math.round(more.rttMs * 10) / 10,
    lastHandshake: peer.lastHandshake,
    txBytes: data.traffic.txBytes,
    rxBytes: data.traffic.rxBytes,
    kernelFastPath: more.kernelFastPath,
    kernelTxDatagrams: data.kernelTraffic.txDatagrams,
    kernelRxDatagrams: data.kernelTraffic.rxDatagrams,
    kernelTxBytes: data.kernelTraffic.txBytes,
    kernelRxBytes: data.kernelTraffic.rxBytes,
    txDatagrams: data.traffic.txDatagrams,
    rxDatagrams: data.traffic.rxDatagrams,
    routedIntoTunnel: more.routedIntoTunnel,
    notDirectReason: peer.notDirectReason,
    pair: peer.pair,
    iceRestarts: { ...peer.iceRestarts },
  };
}
