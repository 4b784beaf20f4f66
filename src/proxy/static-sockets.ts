import type { Logger } from "../log.js";
import {
  type BatchedUdpSocket,
  openBatchedUdpSocket,
  type ReceivedBatch,
  type UdpIo,
} from "./batched-udp.js";

/** What a static path is told of each datagram from its remote. */
export type StaticReceiver = (datagram: Buffer) => void;

/**
 * A static path's hold on a socket: sends to its remote, receives what comes from it. Usually a share
 * of the family's one socket; a socket of its own when another path already has the same remote.
 */
export interface StaticSocketLease {
  readonly localPort: number;
  send(datagram: Buffer): void;
  close(): void;
}

/** One socket of a family, shared by the static paths: inbound datagrams go by their source. */
class SharedSocket {
  readonly receivers = new Map<string, StaticReceiver>();
  retired = false;

  constructor(readonly socket: BatchedUdpSocket) {}
}

/**
 * The sockets of the static paths (issue 16: a hub with thousands of peers). One socket per address
 * family, bound lazily, serves every static path: a remote has one path, and its datagrams are told
 * apart by their source address and port (what a socket per path did before, at a file descriptor and
 * its buffers per peer). A remote two paths share (two peers configured with the same endpoint) costs
 * the second one a socket of its own, as before. `renew` (the sockets' mark changed) makes the next
 * leases use fresh sockets; the old ones close with their last lease.
 */
export class StaticSockets {
  /** Counted per datagram from a source no static path has (or not its remote, on a socket of its own). */
  onForeignDatagram: (() => void) | null = null;
  private readonly shared = new Map<4 | 6, Promise<SharedSocket>>();

  constructor(
    private readonly log: Logger,
    /** How the sockets do their I/O (batched-udp.ts). */
    private readonly udpIo: UdpIo | "auto" = "auto",
  ) {}

  /** A lease for datagrams to and from `address:port` (an IP literal of `family`). */
  async lease(
    family: 4 | 6,
    address: string,
    port: number,
    receiver: StaticReceiver,
  ): Promise<StaticSocketLease> {
    const key = `${address}:${port}`;
    const shared = await this.sharedSocket(family);
    if (!shared.receivers.has(key)) {
      shared.receivers.set(key, receiver);
      return this.shareOf(shared, key, receiver, address, port);
    }
    return this.ownSocket(family, key, receiver, address, port);
  }

  /** New leases get fresh sockets (they carry the current mark); the current ones close with their last lease. */
  renew(): void {
    const current = [...this.shared.values()];
    this.shared.clear();
    for (const pending of current) {
      void pending.then(
        (shared) => {
          shared.retired = true;
          if (shared.receivers.size === 0) shared.socket.close();
        },
        () => undefined,
      );
    }
  }

  /** Closes the shared sockets (every lease is dead from then on). */
  close(): void {
    const current = [...this.shared.values()];
    this.shared.clear();
    for (const pending of current) {
      void pending.then(
        (shared) => {
          shared.retired = true;
          shared.receivers.clear();
          shared.socket.close();
        },
        () => undefined,
      );
    }
  }

  private sharedSocket(family: 4 | 6): Promise<SharedSocket> {
    let pending = this.shared.get(family);
    if (!pending) {
      pending = this.open(family).then((socket) => {
        const shared = new SharedSocket(socket);
        socket.onBatch = (batch: ReceivedBatch) => {
          for (let i = 0; i < batch.count; i++) {
            const receiver = shared.receivers.get(`${batch.address(i)}:${batch.port(i)}`);
            if (receiver) receiver(batch.datagram(i));
            else this.onForeignDatagram?.();
          }
        };
        return shared;
      });
      // A failed bind is tried again by the next lease.
      pending.catch(() => {
        if (this.shared.get(family) === pending) this.shared.delete(family);
      });
      this.shared.set(family, pending);
    }
    return pending;
  }

  private shareOf(
    shared: SharedSocket,
    key: string,
    receiver: StaticReceiver,
    address: string,
    port: number,
  ): StaticSocketLease {
    const socket = shared.socket;
    let closed = false;
    return {
      localPort: socket.address().port,
      send: (datagram) => {
        if (!closed) socket.send(datagram, port, address);
      },
      close: () => {
        if (closed) return;
        closed = true;
        if (shared.receivers.get(key) === receiver) shared.receivers.delete(key);
        if (shared.retired && shared.receivers.size === 0) shared.socket.close();
      },
    };
  }

  private async ownSocket(
    family: 4 | 6,
    key: string,
    receiver: StaticReceiver,
    address: string,
    port: number,
  ): Promise<StaticSocketLease> {
    this.log.info({ remote: key }, "another static path has this remote: this one gets a socket of its own");
    const socket = await this.open(family);
    socket.onBatch = (batch: ReceivedBatch) => {
      for (let i = 0; i < batch.count; i++) {
        if (batch.port(i) === port && batch.address(i) === address) receiver(batch.datagram(i));
        else this.onForeignDatagram?.();
      }
    };
    return {
      localPort: socket.address().port,
      send: (datagram) => socket.send(datagram, port, address),
      close: () => socket.close(),
    };
  }

  private async open(family: 4 | 6): Promise<BatchedUdpSocket> {
    const where = family === 6 ? { address: "::", type: "udp6" as const } : { address: "0.0.0.0" };
    const socket = await openBatchedUdpSocket({
      ...where,
      port: 0,
      role: "static path",
      logger: this.log,
      io: this.udpIo,
    });
    socket.onError = (err) => this.log.warn({ err }, "static path socket error");
    return socket;
  }
}
