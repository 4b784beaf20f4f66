import type { DropCounters } from "../proxy/counters.js";

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
}

export interface StatusReport {
  interface: string;
  /** False while `run` is still starting (reading the interface, binding sockets). */
  ready: boolean;
  catchAll: string;
  wireguardPort: number;
  peers: PeerStatus[];
  drops: DropCounters;
}
