import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log.js";
import { MessageType, messageType } from "../wireguard/messages.js";
import {
  type BatchedUdpSocket,
  openBatchedUdpSocket,
  type ReceivedBatch,
  type UdpIo,
} from "./batched-udp.js";
import { type Endpoint, formatEndpoint } from "./endpoint.js";
import type { PeerPath, UdpRoute } from "./path.js";

/** With a hostname: re-resolve when datagrams go out but none came back for this long. */
const SILENCE_BEFORE_RERESOLVE_MS = 3000;
const MIN_RERESOLVE_INTERVAL_MS = 1000;

/**
 * The path to a peer that does not run Tunnelbore: its real endpoint, through a UDP socket of its own
 * (so replies can be told apart per peer). A hostname is re-resolved on every initiation WireGuard sends,
 * and when the peer falls silent while WireGuard keeps sending (its next data packets then reach the new
 * address and the peer roams to it, without waiting for WireGuard's next handshake); when the address
 * changed, the latest initiation is sent again to the new address at once.
 */
export class StaticPath implements PeerPath {
  readonly kind = "static" as const;
  onDatagram: ((datagram: Buffer) => void) | null = null;
  /** Called for every datagram that arrives from an address other than the endpoint's. */
  onForeignDatagram: (() => void) | null = null;
  onRouteChange: (() => void) | null = null;

  private socket: BatchedUdpSocket | null = null;
  private family: 4 | 6 = 4;
  private address: string | null;
  private readonly isHostname: boolean;
  private resolving: Promise<void> | null = null;
  private lastInitiation: Buffer | null = null;
  private lastReceivedAt = 0;
  private lastResolvedAt = 0;
  private closed = false;

  constructor(
    readonly endpoint: Endpoint,
    private readonly log: Logger,
    /** How the path's socket does its I/O (batched-udp.ts). */
    private readonly udpIo: UdpIo | "auto" = "auto",
  ) {
    const family = isIP(endpoint.host);
    this.isHostname = family === 0;
    this.address = this.isHostname ? null : endpoint.host;
    if (family === 6) this.family = 6;
  }

  get remote(): string {
    return this.address ? formatEndpoint({ host: this.address, port: this.endpoint.port }) : "unresolved";
  }

  /** Binds the socket and, for a hostname, resolves it once. */
  async open(): Promise<void> {
    if (this.isHostname) await this.resolve();
    await this.openSocket();
  }

  send(datagram: Buffer): void {
    if (this.isHostname) {
      if (messageType(datagram) === MessageType.Initiation) {
        // Keep a copy: the resend happens after an await.
        this.lastInitiation = Buffer.from(datagram);
        void this.resolve();
      } else this.resolveIfSilent();
    }
    if (this.socket && this.address) this.socket.send(datagram, this.endpoint.port, this.address);
  }

  udpRoute(): UdpRoute | null {
    if (!this.socket || !this.address) return null;
    return {
      localAddress: null,
      localPort: this.socket.address().port,
      remoteAddress: this.address,
      remotePort: this.endpoint.port,
    };
  }

  /** Data the kernel fast path carried counts as contact too (it never reaches `send` or the socket). */
  kernelTraffic(sent: number, received: number): void {
    if (!this.isHostname) return;
    if (received > 0) this.lastReceivedAt = Date.now();
    else if (sent > 0) this.resolveIfSilent();
  }

  private resolveIfSilent(): void {
    const now = Date.now();
    if (
      now - this.lastReceivedAt > SILENCE_BEFORE_RERESOLVE_MS &&
      now - this.lastResolvedAt > MIN_RERESOLVE_INTERVAL_MS
    ) {
      void this.resolve();
    }
  }

  close(): void {
    this.closed = true;
    this.socket?.close();
    this.socket = null;
    this.onRouteChange?.();
  }

  private async openSocket(): Promise<void> {
    const where = this.family === 6 ? { address: "::", type: "udp6" as const } : { address: "0.0.0.0" };
    const socket = await openBatchedUdpSocket({
      ...where,
      port: 0,
      role: "static path",
      logger: this.log,
      io: this.udpIo,
    });
    socket.onBatch = (batch: ReceivedBatch) => {
      const port = this.endpoint.port;
      for (let i = 0; i < batch.count; i++) {
        if (batch.port(i) === port && batch.address(i) === this.address) {
          if (this.isHostname) this.lastReceivedAt = Date.now();
          this.onDatagram?.(batch.datagram(i));
        } else this.onForeignDatagram?.();
      }
    };
    socket.onError = (err) => this.log.warn({ err, endpoint: this.remote }, "static path socket error");
    const old = this.socket;
    this.socket = socket;
    old?.close();
    this.onRouteChange?.();
  }

  /** One resolution at a time; a change of address (or address family) takes effect at once. */
  private resolve(): Promise<void> {
    if (this.resolving) return this.resolving;
    this.lastResolvedAt = Date.now();
    this.resolving = (async () => {
      try {
        const { address, family } = await lookup(this.endpoint.host);
        this.log.debug({ host: this.endpoint.host, address }, "static endpoint resolved");
        if (this.closed || address === this.address) return;
        const previous = this.address;
        this.address = address;
        this.log.info(
          { host: this.endpoint.host, from: previous, to: address },
          "static endpoint resolved to a new address",
        );
        if (family !== this.family) {
          this.family = family === 6 ? 6 : 4;
          if (this.socket) await this.openSocket();
        } else this.onRouteChange?.();
        if (previous && this.lastInitiation && this.socket) {
          this.socket.send(this.lastInitiation, this.endpoint.port, address);
        }
      } catch (err) {
        this.log.warn(
          { host: this.endpoint.host, err },
          "cannot resolve static endpoint; keeping the last address",
        );
      } finally {
        this.resolving = null;
      }
    })();
    return this.resolving;
  }
}
