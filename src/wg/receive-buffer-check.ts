// Whether a userspace WireGuard's socket has a receive buffer too small for its traffic, said once in a
// log line at start and again after the interface is recreated or its port changes (a new socket).
// Tunnelbore never changes WireGuard's socket: the line says what the user can do.
import type { Logger } from "../log.js";
import { interfaceIndex } from "./interface-watch.js";
import { readWireGuardSockets, type WireGuardSocketStatus } from "./wireguard-sockets.js";

/**
 * Below this, WireGuard's socket drops datagrams from a few hundred Mbit/s on (208 KiB dropped 13-17 %
 * at 350-450 Mbit/s; docs/benchmarks.md, "The receiver's socket buffer"). wireguard-go since 2023 asks
 * for 7 MiB (the kernel shows 14).
 */
export const SMALL_RECEIVE_BUFFER = 1 << 20;

/**
 * No socket found (wireguard-go binds once the link is up: wg-quick configures it first), or none
 * readable: looked at again after 2 s, then twice as long each time up to a minute.
 */
const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 60_000;
/** status() reuses a read this young. */
const STATUS_REUSE_MS = 2000;

export function isSmallReceiveBuffer(status: WireGuardSocketStatus): boolean {
  return status.receiveBufferBytes !== null && status.receiveBufferBytes < SMALL_RECEIVE_BUFFER;
}

/** "208 KiB", "14 MiB", "1.5 MiB". */
export function formatBufferSize(bytes: number): string {
  const units = ["bytes", "KiB", "MiB", "GiB"];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

/** The one log line for a small buffer, or null when it is not small (or unknown). */
export function receiveBufferWarning(status: WireGuardSocketStatus): string | null {
  if (!isSmallReceiveBuffer(status) || status.receiveBufferBytes === null) return null;
  const dropped = status.drops ? ` (${status.drops.toLocaleString("en-US")} so far)` : "";
  return (
    `WireGuard's socket has a ${formatBufferSize(status.receiveBufferBytes)} receive buffer, under 1 MiB: ` +
    `from a few hundred Mbit/s on it drops datagrams${dropped} and TCP through the tunnel slows down, ` +
    "with or without Tunnelbore. Upgrade wireguard-go (since 2023 it sets 7 MiB itself), or raise " +
    "net.core.rmem_default (e.g. sysctl -w net.core.rmem_default=7340032) before starting wireguard-go; " +
    "Tunnelbore does not touch WireGuard's socket"
  );
}

export type ReadSockets = (name: string, port: number) => Promise<WireGuardSocketStatus | null>;

/**
 * Looks at WireGuard's socket after the interface's reads (`afterRead`, for a userspace interface):
 * once per socket, known by the listen port and the interface's index (a recreated interface has a new
 * one), so a poll costs a sysfs read and no process. `status()` reads it again, for `tunnelbore status`.
 */
export class ReceiveBufferCheck {
  private port = 0;
  /** The socket last looked at ("port@ifindex"), and whether that look is done with. */
  private key = "";
  private settled = false;
  private retryAt = 0;
  private retryMs = FIRST_RETRY_MS;
  private checking = false;
  /** The latest read for status(). */
  private recent: { at: number; port: number; read: Promise<WireGuardSocketStatus | null> } | null = null;

  private readonly read: ReadSockets;
  private readonly index: (name: string) => Promise<number | null>;
  private readonly now: () => number;

  constructor(
    private readonly interfaceName: string,
    private readonly log: Logger,
    deps: Partial<{
      read: ReadSockets;
      index: (name: string) => Promise<number | null>;
      now: () => number;
    }> = {},
  ) {
    this.read = deps.read ?? ((name, port) => readWireGuardSockets(name, port));
    this.index = deps.index ?? interfaceIndex;
    this.now = deps.now ?? Date.now;
  }

  /** After a read of the interface that showed `listenPort`: warns once when the buffer is small. */
  async afterRead(listenPort: number): Promise<void> {
    this.port = listenPort;
    if (!listenPort || this.checking) return;
    this.checking = true;
    try {
      await this.check(listenPort);
    } catch (err) {
      // Never the interface read's failure: this is advice, tried again later.
      this.retryLater();
      this.log.debug({ err, interface: this.interfaceName }, "cannot read WireGuard's socket");
    } finally {
      this.checking = false;
    }
  }

  private async check(listenPort: number): Promise<void> {
    const key = `${listenPort}@${(await this.index(this.interfaceName)) ?? "?"}`;
    if (key === this.key && (this.settled || this.now() < this.retryAt)) return;
    if (key !== this.key) this.retryMs = FIRST_RETRY_MS;
    this.key = key;
    this.settled = false;
    const found = await this.read(this.interfaceName, listenPort);
    if (found?.unknown) {
      // Not up yet (wireguard-go binds when the link is up), or ss is missing: again later.
      this.retryLater();
      this.log.debug({ interface: this.interfaceName, reason: found.unknown }, "WireGuard's socket unread");
      return;
    }
    this.settled = true;
    const warning = found && receiveBufferWarning(found);
    if (warning) {
      const { port, receiveBufferBytes, drops } = found;
      this.log.warn({ interface: this.interfaceName, port, receiveBufferBytes, drops }, warning);
    }
  }

  private retryLater(): void {
    this.retryAt = this.now() + this.retryMs;
    this.retryMs = Math.min(MAX_RETRY_MS, 2 * this.retryMs);
  }

  /**
   * WireGuard's socket now, by the listen port last read; null for the kernel's, or before a read. A
   * read younger than STATUS_REUSE_MS is shared: status is polled (tests, monitoring, metrics), and each
   * read starts a process in the privileged parent.
   */
  status(): Promise<WireGuardSocketStatus | null> {
    if (!this.port) return Promise.resolve(null);
    const now = this.now();
    const recent = this.recent;
    if (recent && recent.port === this.port && now - recent.at < STATUS_REUSE_MS && now >= recent.at)
      return recent.read;
    const read = this.read(this.interfaceName, this.port);
    this.recent = { at: now, port: this.port, read };
    return read;
  }
}
