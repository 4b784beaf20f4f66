import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import type { Logger } from "../log.js";
import { MessageType, messageType } from "../wireguard/messages.js";
import { type Endpoint, formatEndpoint } from "./endpoint.js";
import { legTo, type PathLeg, type PeerPath, type UdpRoute } from "./path.js";
import type { StaticSocketLease, StaticSockets } from "./static-sockets.js";

/** With a hostname: re-resolve when datagrams go out but none came back for this long. */
const SILENCE_BEFORE_RERESOLVE_MS = 3000;
const MIN_RERESOLVE_INTERVAL_MS = 1000;

/**
 * The path to a peer that does not run Tunnelbore: its real endpoint, through a share of the static
 * paths' socket (static-sockets.ts: replies are told apart by their source). A hostname is re-resolved on every initiation WireGuard sends,
 * and when the peer falls silent while WireGuard keeps sending (its next data packets then reach the new
 * address and the peer roams to it, without waiting for WireGuard's next handshake); when the address
 * changed, the latest initiation is sent again to the new address at once.
 */
export class StaticPath implements PeerPath {
  readonly kind = "static" as const;
  onDatagram: ((datagram: Buffer) => void) | null = null;
  onRouteChange: (() => void) | null = null;

  private lease: StaticSocketLease | null = null;
  /** open() was called: a new address takes a new share at once. */
  private opened = false;
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
    private readonly sockets: StaticSockets,
  ) {
    const family = isIP(endpoint.host);
    this.isHostname = family === 0;
    this.address = this.isHostname ? null : endpoint.host;
    if (family === 6) this.family = 6;
  }

  get remote(): string {
    return this.address ? formatEndpoint({ host: this.address, port: this.endpoint.port }) : "unresolved";
  }

  /** Takes its share of a socket and, for a hostname, resolves it once. */
  async open(): Promise<void> {
    if (this.isHostname) await this.resolve();
    this.opened = true;
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
    this.lease?.send(datagram);
  }

  udpRoute(): UdpRoute | null {
    if (!this.lease || !this.address) return null;
    return {
      localAddress: null,
      localPort: this.lease.localPort,
      remoteAddress: this.address,
      remotePort: this.endpoint.port,
    };
  }

  leg(): PathLeg | null {
    return this.address ? legTo(this.address) : null;
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
    this.lease?.close();
    this.lease = null;
    this.onRouteChange?.();
  }

  /** A share for the current address (none while a hostname is unresolved); the previous one goes. */
  private async openSocket(): Promise<void> {
    const address = this.address;
    const lease = address
      ? await this.sockets.lease(this.family, address, this.endpoint.port, (datagram) => {
          if (this.isHostname) this.lastReceivedAt = Date.now();
          this.onDatagram?.(datagram);
        })
      : null;
    if (this.closed) {
      lease?.close();
      return;
    }
    const old = this.lease;
    this.lease = lease;
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
        this.family = family === 6 ? 6 : 4;
        // Datagrams from the new address are this path's from now on (and no longer the old one's).
        if (this.opened) await this.openSocket();
        if (previous && this.lastInitiation && this.lease) this.lease.send(this.lastInitiation);
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
