// A userspace WireGuard (wireguard-go, boringtun) serves `wg` on a unix socket, /var/run/wireguard/IF.sock.
// Reading it ourselves rather than through `wg show IF dump` saves a process every poll: at a hub's
// 10,000 peers each `wg` cost 20-30 ms of CPU of its own and ~9 ms of ours to spawn, every 2 s (issue
// 16). `wg` looks there first too, then asks the kernel; so do we (no socket: `wg`, for the kernel's).
import { connect } from "node:net";
import { join } from "node:path";
import { RuntimeError } from "../errors.js";

export const UAPI_DIRECTORY = "/var/run/wireguard";
/** wireguard-go answers a hub's 3.4 MB within a few tens of ms; a socket that says nothing is broken. */
const ANSWER_TIMEOUT_MS = 5000;
const NEWLINE = 0x0a;
/** Free space below this, the buffer doubles before the next read. */
const MIN_ROOM = 16 * 1024;
const ERRNO = Buffer.from("errno=");

export class UapiSocket {
  /**
   * The answer, kept between reads: a new 3.4 MB each 2 s was memory outside V8's heap (as in
   * dump-file.ts). The socket reads straight into it, at the end of what arrived so far.
   */
  private buffer = Buffer.alloc(64 * 1024);
  private length = 0;
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly directory = UAPI_DIRECTORY,
    private readonly answerTimeoutMs = ANSWER_TIMEOUT_MS,
  ) {}

  /**
   * The interface's answer to `get=1`, a view of the kept buffer valid until the next read; null when
   * no userspace WireGuard serves the interface (no socket, or a stale one nobody listens on).
   */
  read(name: string): Promise<Buffer | null> {
    // One read at a time: they share the buffer (a caller's view is valid until the next read).
    const read = this.last.then(() => this.readNow(name));
    this.last = read.catch(() => null);
    return read;
  }

  private readNow(name: string): Promise<Buffer | null> {
    const path = join(this.directory, `${name}.sock`);
    return new Promise<Buffer | null>((resolve, reject) => {
      this.length = 0;
      let connected = false;
      const socket = connect({
        path,
        onread: {
          buffer: () => this.room(),
          callback: (n: number) => {
            this.length += n;
            const length = this.length;
            if (length >= 2 && this.buffer[length - 2] === NEWLINE && this.buffer[length - 1] === NEWLINE) {
              finish(null, this.buffer.subarray(0, length));
            }
            return true;
          },
        },
      });
      const timer = setTimeout(
        () => finish(new RuntimeError("wg-failed", `${path} did not answer`, { interface: name })),
        this.answerTimeoutMs,
      );
      const finish = (err: Error | null, answer?: Buffer | null) => {
        clearTimeout(timer);
        socket.destroy();
        if (err) reject(err);
        else resolve(answer ?? null);
      };
      socket.once("connect", () => {
        connected = true;
        socket.write("get=1\n\n");
      });
      socket.once("error", (err: NodeJS.ErrnoException) => {
        // Not there, or nobody listening: not a userspace interface (the kernel's, or none).
        if (!connected && ["ENOENT", "ECONNREFUSED", "ENOTDIR"].includes(err.code ?? "")) finish(null, null);
        else finish(new RuntimeError("wg-failed", `${path}: ${err.message}`, { interface: name }));
      });
      socket.once("end", () =>
        finish(new RuntimeError("wg-failed", `${path} closed before its answer ended`, { interface: name })),
      );
    }).then((answer) => answer && checkErrno(name, answer));
  }

  /** Where the next read lands: the free end of the buffer, grown (once, at the first large read) when short. */
  private room(): Buffer {
    if (this.buffer.length - this.length < MIN_ROOM) {
      // Not zeroed: only what the socket wrote is ever read. Quadrupled: a hub's first answer is MBs.
      const bigger = Buffer.allocUnsafeSlow(4 * this.buffer.length);
      this.buffer.copy(bigger, 0, 0, this.length);
      this.buffer = bigger;
    }
    return this.buffer.subarray(this.length);
  }
}

/** The answer, when its errno line says 0. */
function checkErrno(name: string, answer: Buffer): Buffer {
  const at = answer.lastIndexOf(ERRNO);
  const errno = at < 0 ? Number.NaN : Number(answer.toString("latin1", at + ERRNO.length, answer.length - 2));
  if (errno === 0) return answer;
  throw new RuntimeError("wg-failed", `${name}'s WireGuard socket answered errno ${errno}`, {
    interface: name,
  });
}
