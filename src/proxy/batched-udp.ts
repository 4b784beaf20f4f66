import type { Logger } from "../log.js";
import { openDgramBatchedSocket } from "./batched-udp-dgram.js";
import { loadBatchedUdpAddon, openNativeBatchedSocket } from "./batched-udp-native.js";
import type { BindUdpSocketOptions } from "./udp-socket.js";

/**
 * Datagrams one receive delivered, in arrival order. `datagram(i)` is a view that stays valid after
 * the callback (each batch owns its memory); the other accessors are valid only during the callback.
 */
export interface ReceivedBatch {
  readonly count: number;
  datagram(index: number): Buffer;
  /** The sender's address as dgram's `rinfo.address` writes it ("127.0.0.1", "fd00::1"). */
  address(index: number): string;
  port(index: number): number;
}

/**
 * A bound UDP socket that receives in batches and may send in batches: the native addon
 * (recvmmsg/sendmmsg, GRO/GSO) or Node's dgram, one datagram at a time; callers cannot tell which.
 * Sends made while a batch is being delivered go out together when the delivery ends; other sends go
 * out at once. Nothing throws out of the event loop: send and receive errors go to `onError`.
 */
export interface BatchedUdpSocket {
  readonly io: UdpIo;
  onBatch: ((batch: ReceivedBatch) => void) | null;
  onError: ((err: NodeJS.ErrnoException) => void) | null;
  /** The destination must be an IP literal. The datagram is copied (native) or handed to dgram; after close, nothing. */
  send(datagram: Buffer, port: number, address: string): void;
  address(): { address: string; port: number; family: "IPv4" | "IPv6" };
  /** The buffer sizes the kernel granted (Linux doubles what it grants in what it reports; this does not). */
  grantedBufferBytes(): { receive: number; send: number };
  /** Stops keeping the process alive (as dgram's `unref`). */
  unref(): void;
  close(): void;
}

/** Which implementation carries a socket's datagrams. */
export type UdpIo = "native" | "dgram";

export interface OpenBatchedUdpSocketOptions extends BindUdpSocketOptions {
  logger: Logger;
  /**
   * "auto" (default): the native addon when it loads, else dgram. "dgram" forces the fallback, as does
   * the environment variable TBT_UDP_IO=dgram; "native" fails when the addon cannot be loaded.
   */
  io?: UdpIo | "auto";
}

let told = false;
const FORCED = "TBT_UDP_IO=dgram";

/** Which implementation "auto" picks in this process, and why the native one is not used if it is not. */
export function batchedUdpAvailability(): { io: UdpIo; reason: string | null } {
  if (process.env.TBT_UDP_IO === "dgram") return { io: "dgram", reason: FORCED };
  const loaded = loadBatchedUdpAddon();
  return loaded.addon ? { io: "native", reason: null } : { io: "dgram", reason: loaded.error };
}

/**
 * Opens and binds a batched UDP socket. Bind failures reject with udp-socket.ts's ConfigError
 * (`port-busy`, `bind-failed`), whichever implementation runs. The first socket of the process logs
 * which implementation carries datagrams, once.
 */
export async function openBatchedUdpSocket(options: OpenBatchedUdpSocketOptions): Promise<BatchedUdpSocket> {
  const wanted = options.io ?? "auto";
  const available = batchedUdpAvailability();
  if (wanted === "native" && available.io !== "native") {
    throw new Error(`batched UDP addon unavailable: ${available.reason}`);
  }
  const io: UdpIo = wanted === "dgram" ? "dgram" : available.io;
  if (!told && wanted === "auto") {
    told = true;
    if (io === "native") {
      options.logger.info("user-space UDP: batched I/O (native addon: recvmmsg/sendmmsg, GRO/GSO)");
    } else if (available.reason === FORCED) {
      options.logger.info(`user-space UDP: Node's dgram, one system call per datagram (${FORCED})`);
    } else {
      options.logger.warn(
        { reason: available.reason },
        "user-space UDP: Node's dgram, one system call per datagram (the native addon is not available)",
      );
    }
  }
  return io === "native" ? openNativeBatchedSocket(options) : openDgramBatchedSocket(options);
}
