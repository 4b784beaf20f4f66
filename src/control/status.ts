import type { IntroConnectionStatus } from "../intro-client/intro-client.js";
import type { DropCounters } from "../proxy/counters.js";
import type { TunnelBypassStatus } from "../wg/tunnel-bypass.js";

/** What `tunnelbore status` shows of one peer. */
export interface PeerStatus {
  publicKey: string;
  state: string;
  /** "direct", "relay", "static", or null while no path exists. */
  pathKind: string | null;
  remote: string | null;
  loopback: string;
  rttMs: number | null;
  /** Unix seconds of WireGuard's latest handshake with the peer, 0 when never. */
  lastHandshake: number;
  txBytes: number;
  rxBytes: number;
  /** True while the kernel fast path carries the peer's transport data (--ebpf). */
  kernelFastPath: boolean;
  /** Datagrams each way (part of all the counts) the kernel fast path carried. */
  kernelTxDatagrams: number;
  kernelRxDatagrams: number;
  /** Datagrams each way in all, the kernel's included. */
  txDatagrams: number;
  rxDatagrams: number;
  /**
   * The path's remote address when Tunnelbore's datagrams to it would be routed into this very
   * interface (a loop no mark prevents: see src/wg/tunnel-loop-check.ts); null otherwise.
   */
  routedIntoTunnel: string | null;
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
  /** With --ebpf: the interfaces the fast path is attached to; null without it. */
  kernelFastPath: { interfaces: string[] } | null;
  /** Whether Tunnelbore's sockets carry the interface's fwmark (full tunnels), and why not. */
  tunnelBypass: TunnelBypassStatus;
}
