import type { RemoteInfo, Socket } from "node:dgram";
import type { BatchedUdpSocket, ReceivedBatch } from "./batched-udp.js";
import { type BindUdpSocketOptions, bindUdpSocket } from "./udp-socket.js";

/** The largest UDP payload an IPv4 / IPv6 datagram carries (without IPv6 jumbograms). */
const MAX_UDP_PAYLOAD = { IPv4: 65_507, IPv6: 65_527 } as const;

/** One dgram message as a batch of one; the same object is reused for every message. */
class SingleDatagram implements ReceivedBatch {
  readonly count = 1;
  msg: Buffer = Buffer.alloc(0);
  rinfo: RemoteInfo | null = null;
  datagram(): Buffer {
    return this.msg;
  }
  address(): string {
    return this.rinfo?.address ?? "";
  }
  port(): number {
    return this.rinfo?.port ?? 0;
  }
}

/** The fallback: Node's dgram behind the BatchedUdpSocket interface, one system call per datagram. */
class DgramBatchedSocket implements BatchedUdpSocket {
  readonly io = "dgram" as const;
  onBatch: ((batch: ReceivedBatch) => void) | null = null;
  onError: ((err: NodeJS.ErrnoException) => void) | null = null;
  private readonly single = new SingleDatagram();
  private closed = false;
  private readonly local: { address: string; port: number; family: "IPv4" | "IPv6" };

  constructor(private readonly socket: Socket) {
    const a = socket.address();
    this.local = { address: a.address, port: a.port, family: a.family === "IPv6" ? "IPv6" : "IPv4" };
    socket.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
      this.single.msg = msg;
      this.single.rinfo = rinfo;
      this.onBatch?.(this.single);
    });
    socket.on("error", (err: NodeJS.ErrnoException) => this.onError?.(err));
  }

  /**
   * Without a callback dgram drops a send's error silently; a callback per send would cost a JS call per
   * datagram on the hot path, so the one error a caller can cause (too big) is reported here, as the
   * native socket does.
   */
  send(datagram: Buffer, port: number, address: string): void {
    // After close, as the native socket: nothing (dgram would throw ERR_SOCKET_DGRAM_NOT_RUNNING).
    if (this.closed) return;
    if (datagram.length > MAX_UDP_PAYLOAD[this.local.family]) {
      const err: NodeJS.ErrnoException = new Error(
        `send EMSGSIZE (${datagram.length} bytes to ${address}:${port})`,
      );
      err.code = "EMSGSIZE";
      err.syscall = "send";
      this.onError?.(err);
      return;
    }
    this.socket.send(datagram, port, address);
  }

  address(): { address: string; port: number; family: "IPv4" | "IPv6" } {
    return this.local;
  }

  grantedBufferBytes(): { receive: number; send: number } {
    return { receive: this.socket.getRecvBufferSize() / 2, send: this.socket.getSendBufferSize() / 2 };
  }

  unref(): void {
    this.socket.unref();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }
}

export async function openDgramBatchedSocket(options: BindUdpSocketOptions): Promise<BatchedUdpSocket> {
  return new DgramBatchedSocket(await bindUdpSocket(options));
}
