/**
 * `run`'s metrics, rendered from the StatusReports the control socket serves (one per interface):
 * every value is taken at scrape time, so metrics and `tunnelbore status` never disagree. Peers are
 * labelled by the first 8 characters of their public key (public, and enough to tell them apart).
 */
import { Counter, Gauge, type Registry } from "prom-client";
import type { PeerStatus, StatusReport } from "../control/status.js";
import type { IntroConnectionStatus } from "../intro-client/intro-status.js";
import { ICE_RESTART_REASONS } from "../peer/ice-restarts.js";
import { PEER_STATE_NAMES } from "../peer/peer-state.js";
import { DROP_REASONS } from "../proxy/counters.js";

const PATH_KINDS = ["direct", "relay", "static", "none"] as const;
const INTRO_STATES: readonly IntroConnectionStatus["state"][] = [
  "connected",
  "connecting",
  "retrying",
  "not-member",
  "stopped",
];
const FORWARDING_MODES = ["kernel", "user"] as const;

/** The label of a peer: its public key's first 8 characters. */
export function peerLabel(publicKey: string): string {
  return publicKey.slice(0, 8);
}

/** The state's name without its path: `connected(direct)` is `connected`. */
function stateName(formatted: string): string {
  return /^[a-z-]+/.exec(formatted)?.[0] ?? formatted;
}

export class StatusMetrics {
  private readonly ready: Gauge;
  private readonly peerState: Gauge;
  private readonly peerPath: Gauge;
  private readonly peerKernelFastPath: Gauge;
  private readonly peerBytes: Counter;
  private readonly peerDatagrams: Counter;
  private readonly handshakeAge: Gauge;
  private readonly rtt: Gauge;
  private readonly iceRestarts: Counter;
  private readonly drops: Counter;
  private readonly introState: Gauge;
  private readonly introFailures: Gauge;
  private readonly forwardingMode: Gauge;
  private readonly wireguardReceiveBuffer: Gauge;
  private readonly wireguardSocketDrops: Counter;
  private readonly warnings: Gauge;
  private readonly all: Array<Gauge | Counter>;

  constructor(registry: Registry) {
    const registers = [registry];
    const peer = ["interface", "peer"] as const;
    this.ready = new Gauge({
      name: "tunnelbore_ready",
      help: "1 while run serves the interface (started, interface present), else 0",
      labelNames: ["interface"],
      registers,
    });
    this.peerState = new Gauge({
      name: "tunnelbore_peer_state",
      help: "1 for the peer's current state, 0 for the others",
      labelNames: [...peer, "state"],
      registers,
    });
    this.peerPath = new Gauge({
      name: "tunnelbore_peer_path",
      help: "1 for the kind of the peer's path in use (none: no path)",
      labelNames: [...peer, "kind"],
      registers,
    });
    this.peerKernelFastPath = new Gauge({
      name: "tunnelbore_peer_kernel_fast_path",
      help: "1 while the kernel fast path carries the peer's transport data",
      labelNames: [...peer],
      registers,
    });
    this.peerBytes = new Counter({
      name: "tunnelbore_peer_bytes_total",
      help: "WireGuard bytes forwarded for the peer, by direction (tx: to the peer) and plane (kernel fast path or user space)",
      labelNames: [...peer, "direction", "plane"],
      registers,
    });
    this.peerDatagrams = new Counter({
      name: "tunnelbore_peer_datagrams_total",
      help: "WireGuard datagrams forwarded for the peer, by direction (tx: to the peer) and plane",
      labelNames: [...peer, "direction", "plane"],
      registers,
    });
    this.handshakeAge = new Gauge({
      name: "tunnelbore_peer_handshake_age_seconds",
      help: "Seconds since WireGuard's latest handshake with the peer (absent: none yet)",
      labelNames: [...peer],
      registers,
    });
    this.rtt = new Gauge({
      name: "tunnelbore_peer_rtt_seconds",
      help: "Round-trip time on the peer's path (absent: not measured yet)",
      labelNames: [...peer],
      registers,
    });
    this.iceRestarts = new Counter({
      name: "tunnelbore_peer_ice_restarts_total",
      help: "ICE restarts asked for the peer, by reason",
      labelNames: [...peer, "reason"],
      registers,
    });
    this.drops = new Counter({
      name: "tunnelbore_drops_total",
      help: "Datagrams not forwarded, by reason",
      labelNames: ["interface", "reason"],
      registers,
    });
    this.introState = new Gauge({
      name: "tunnelbore_intro_connection_state",
      help: "1 for the introduction server connection's current state, 0 for the others (absent without --intro)",
      labelNames: ["interface", "state"],
      registers,
    });
    this.introFailures = new Gauge({
      name: "tunnelbore_intro_connection_failures",
      help: "Consecutive failed attempts to reach the introduction server (0 once connected)",
      labelNames: ["interface"],
      registers,
    });
    this.forwardingMode = new Gauge({
      name: "tunnelbore_forwarding_mode",
      help: "1 for where transport data is forwarded: kernel (tc/eBPF fast path) or user space",
      labelNames: ["interface", "mode"],
      registers,
    });
    // A userspace WireGuard's own UDP socket (absent for the kernel's): a small buffer drops at speed.
    this.wireguardReceiveBuffer = new Gauge({
      name: "tunnelbore_wireguard_socket_receive_buffer_bytes",
      help: "The receive buffer of a userspace WireGuard's UDP socket, as the kernel counts it (absent for kernel WireGuard)",
      labelNames: ["interface"],
      registers,
    });
    this.wireguardSocketDrops = new Counter({
      name: "tunnelbore_wireguard_socket_drops_total",
      help: "Datagrams a userspace WireGuard's UDP socket dropped (its buffer full), with or without Tunnelbore",
      labelNames: ["interface"],
      registers,
    });
    this.warnings = new Gauge({
      name: "tunnelbore_config_warnings",
      help: "Configuration problems status shows as warnings (wg-quick SaveConfig, WireGuard's MTU): 0 when none",
      labelNames: ["interface"],
      registers,
    });
    this.all = [
      this.ready,
      this.warnings,
      this.peerState,
      this.peerPath,
      this.peerKernelFastPath,
      this.peerBytes,
      this.peerDatagrams,
      this.handshakeAge,
      this.rtt,
      this.iceRestarts,
      this.drops,
      this.introState,
      this.introFailures,
      this.forwardingMode,
      this.wireguardReceiveBuffer,
      this.wireguardSocketDrops,
    ];
  }

  /** Replaces every value with what `reports` say (a peer or interface gone leaves no series behind). */
  render(reports: readonly StatusReport[], nowUnixSeconds = Date.now() / 1000): void {
    for (const metric of this.all) metric.reset();
    for (const report of reports) {
      const iface = report.interface;
      this.ready.set({ interface: iface }, report.ready && report.waitingFor === null ? 1 : 0);
      this.warnings.set({ interface: iface }, report.warnings.length);
      for (const reason of DROP_REASONS) this.drops.inc({ interface: iface, reason }, report.drops[reason]);
      const mode = report.forwarding.mode === "kernel" ? "kernel" : "user";
      for (const m of FORWARDING_MODES)
        this.forwardingMode.set({ interface: iface, mode: m }, m === mode ? 1 : 0);
      const socket = report.wireguardSocket;
      if (socket?.receiveBufferBytes != null)
        this.wireguardReceiveBuffer.set({ interface: iface }, socket.receiveBufferBytes);
      if (socket?.drops != null) this.wireguardSocketDrops.inc({ interface: iface }, socket.drops);
      if (report.intro) {
        for (const state of INTRO_STATES)
          this.introState.set({ interface: iface, state }, state === report.intro.state ? 1 : 0);
        this.introFailures.set({ interface: iface }, report.intro.failures);
      }
      for (const peer of report.peers) this.renderPeer(iface, peer, nowUnixSeconds);
    }
  }

  private renderPeer(iface: string, status: PeerStatus, nowUnixSeconds: number): void {
    const peer = { interface: iface, peer: peerLabel(status.publicKey) };
    const state = stateName(status.state);
    for (const name of PEER_STATE_NAMES) this.peerState.set({ ...peer, state: name }, name === state ? 1 : 0);
    const kind = status.pathKind ?? "none";
    for (const k of PATH_KINDS) this.peerPath.set({ ...peer, kind: k }, k === kind ? 1 : 0);
    this.peerKernelFastPath.set(peer, status.kernelFastPath ? 1 : 0);
    const traffic = [
      ["tx", status.txBytes, status.kernelTxBytes, status.txDatagrams, status.kernelTxDatagrams],
      ["rx", status.rxBytes, status.kernelRxBytes, status.rxDatagrams, status.kernelRxDatagrams],
    ] as const;
    for (const [direction, bytes, kernelBytes, datagrams, kernelDatagrams] of traffic) {
      this.peerBytes.inc({ ...peer, direction, plane: "kernel" }, kernelBytes);
      this.peerBytes.inc({ ...peer, direction, plane: "user" }, Math.max(0, bytes - kernelBytes));
      this.peerDatagrams.inc({ ...peer, direction, plane: "kernel" }, kernelDatagrams);
      this.peerDatagrams.inc({ ...peer, direction, plane: "user" }, Math.max(0, datagrams - kernelDatagrams));
    }
    if (status.lastHandshake > 0)
      this.handshakeAge.set(peer, Math.max(0, Math.round(nowUnixSeconds - status.lastHandshake)));
    if (status.rttMs !== null) this.rtt.set(peer, status.rttMs / 1000);
    for (const reason of ICE_RESTART_REASONS)
      this.iceRestarts.inc({ ...peer, reason }, status.iceRestarts?.[reason] ?? 0);
  }
}
