import type { RemoteInfo, Socket } from "node:dgram";
import type { BatchedUdpSocket, ReceivedBatch } from "./batched-udp.js";
import { type BindUdpSocketOptions, bindUdpSocket } from "./udp-socket.js";

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

  /** Without a callback dgram drops a send's error silently (EMSGSIZE, a failed lookup): say it. */
  private readonly afterSend = (err: Error | null) => {
    if (err) this.onError?.(err as NodeJS.ErrnoException);
  };

  send(datagram: Buffer, port: number, address: string): void {
    this.socket.send(datagram, port, address, this.afterSend);
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
