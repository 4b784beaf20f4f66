import { errnoName, loadNativeAddon } from "../native-addon.js";
import type { BatchedUdpSocket, ReceivedBatch } from "./batched-udp.js";
import { type BindUdpSocketOptions, bindError, SOCKET_BUFFER_BYTES } from "./udp-socket.js";

/** An opened socket of the addon (native/batched_udp.c); only the addon looks inside. */
type NativeHandle = { readonly nativeSocket: unique symbol };

/** native/batched_udp.c's exports. */
interface BatchedUdpAddon {
  open(
    family: 4 | 6,
    host: string,
    port: number,
    receiveBufferBytes: number,
    sendBufferBytes: number,
    onBatch: (data: Buffer, count: number) => void,
    onError: (code: string, syscall: string) => void,
  ): NativeHandle;
  /**
   * 0, or the errno of a failed destination or of the flush it had to do first. `borrowed`: send from
   * the datagram's own memory (no copy); it must stay alive and unchanged until the next flush.
   */
  queue(handle: NativeHandle, datagram: Buffer, port: number, host: string, borrowed: boolean): number;
  /** 0, or the errno of the first send that failed (that datagram is dropped). */
  flush(handle: NativeHandle): number;
  close(handle: NativeHandle): void;
  ref(handle: NativeHandle, on: boolean): void;
  /** Local address and port, granted buffer sizes (doubled, as Linux reports them), GSO and GRO (0/1). */
  info(handle: NativeHandle): [string, number, number, number, number, number];
  /** Per received datagram: offset, length, port, family (4/6), address as four host-order words. */
  readonly meta: Int32Array;
  readonly metaStride: number;
}

let loaded: { addon: BatchedUdpAddon | null; error: string | null } | null = null;

/** Loads the addon once; `error` says why it is not there (not built, does not load). */
export function loadBatchedUdpAddon(): { addon: BatchedUdpAddon | null; error: string | null } {
  if (loaded) return loaded;
  const addon = loadNativeAddon<BatchedUdpAddon>("batched_udp");
  loaded = typeof addon === "string" ? { addon: null, error: addon } : { addon, error: null };
  return loaded;
}

function errnoError(code: string, syscall: string, context = ""): NodeJS.ErrnoException {
  const err: NodeJS.ErrnoException = new Error(`${syscall} ${code}${context}`);
  err.code = code;
  err.syscall = syscall;
  return err;
}

/**
 * Sends made while any native socket delivers a batch wait here and go out (sendmmsg, one call a
 * socket) when the outermost delivery ends: a batch from WireGuard becomes a batch to the peer.
 */
let deliveryDepth = 0;
const waitingToFlush: NativeBatchedSocket[] = [];
/**
 * The memory of the batch being delivered: a datagram in it is sent from there, not copied (the common
 * case, a batch from WireGuard forwarded to the peer), as it stays referenced until the flush below.
 */
let delivering: ArrayBufferLike | null = null;

function flushWaiting(): void {
  for (let i = 0; i < waitingToFlush.length; i++) waitingToFlush[i]!.flush();
  waitingToFlush.length = 0;
}

/** The view of one delivered round: the batch's Buffer and the addon's meta, read in place. */
class NativeBatch implements ReceivedBatch {
  count = 0;
  data: Buffer = Buffer.alloc(0);
  private cachedWords: [number, number, number, number, number] = [0, 0, 0, 0, 0];
  private cachedAddress = "";

  constructor(
    private readonly meta: Int32Array,
    private readonly stride: number,
  ) {}

  datagram(index: number): Buffer {
    const at = index * this.stride;
    const offset = this.meta[at]!;
    return this.data.subarray(offset, offset + this.meta[at + 1]!);
  }

  port(index: number): number {
    return this.meta[index * this.stride + 2]!;
  }

  /** Formatted once per sender: a batch nearly always comes from one address. */
  address(index: number): string {
    const m = this.meta;
    const at = index * this.stride;
    const c = this.cachedWords;
    if (
      c[0] === m[at + 3] &&
      c[1] === m[at + 4] &&
      c[2] === m[at + 5] &&
      c[3] === m[at + 6] &&
      c[4] === m[at + 7] &&
      this.cachedAddress !== ""
    ) {
      return this.cachedAddress;
    }
    this.cachedWords = [m[at + 3]!, m[at + 4]!, m[at + 5]!, m[at + 6]!, m[at + 7]!];
    this.cachedAddress =
      m[at + 3] === 6 ? formatIpv6([m[at + 4]!, m[at + 5]!, m[at + 6]!, m[at + 7]!]) : formatIpv4(m[at + 4]!);
    return this.cachedAddress;
  }
}

export function formatIpv4(word: number): string {
  return `${(word >>> 24) & 255}.${(word >>> 16) & 255}.${(word >>> 8) & 255}.${word & 255}`;
}

/**
 * As libuv's inet_ntop6 (so as dgram's rinfo.address and dns.lookup): the longest run of two or more
 * zero groups becomes "::" (the first of equal runs), and an IPv4-mapped or -compatible address ends
 * in dotted form.
 */
export function formatIpv6(words: readonly number[]): string {
  const groups: number[] = [];
  for (const w of words) groups.push((w >>> 16) & 0xffff, w & 0xffff);
  let bestStart = -1;
  let bestLength = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  if (bestLength < 2) bestStart = -1;
  let out = "";
  for (let i = 0; i < 8; i++) {
    if (i === bestStart) {
      out += i === 0 ? "::" : ":";
      i += bestLength - 1;
      continue;
    }
    if (i === 6 && bestStart === 0 && (bestLength === 6 || (bestLength === 5 && groups[5] === 0xffff))) {
      return `${out}${formatIpv4(words[3]! >>> 0)}`;
    }
    out += groups[i]!.toString(16);
    if (i < 7) out += ":";
  }
  return out;
}

class NativeBatchedSocket implements BatchedUdpSocket {
  readonly io = "native" as const;
  onBatch: ((batch: ReceivedBatch) => void) | null = null;
  onError: ((err: NodeJS.ErrnoException) => void) | null = null;
  private handle: NativeHandle | null = null;
  private readonly batch: NativeBatch;
  private queued = false;
  private local: { address: string; port: number; family: "IPv4" | "IPv6" } = {
    address: "",
    port: 0,
    family: "IPv4",
  };
  private granted = { receive: 0, send: 0 };
  /** Whether the kernel takes GSO messages / gives GRO ones on this socket (for tests and benchmarks). */
  offloads = { gso: false, gro: false };

  constructor(private readonly addon: BatchedUdpAddon) {
    this.batch = new NativeBatch(addon.meta, addon.metaStride);
  }

  open(options: BindUdpSocketOptions): void {
    const { address, port, role, type = "udp4" } = options;
    try {
      this.handle = this.addon.open(
        type === "udp6" ? 6 : 4,
        address,
        port,
        SOCKET_BUFFER_BYTES,
        SOCKET_BUFFER_BYTES,
        (data, count) => this.deliver(data, count),
        (code, syscall) => this.onError?.(errnoError(code, syscall)),
      );
    } catch (err) {
      throw bindError(err as NodeJS.ErrnoException, role, address, port);
    }
    const [host, boundPort, receive, send, gso, gro] = this.addon.info(this.handle);
    this.local = { address: host, port: boundPort, family: type === "udp6" ? "IPv6" : "IPv4" };
    // Linux reports double the size it granted.
    this.granted = { receive: receive / 2, send: send / 2 };
    this.offloads = { gso: gso === 1, gro: gro === 1 };
  }

  private deliver(data: Buffer, count: number): void {
    const batch = this.batch;
    batch.data = data;
    batch.count = count;
    deliveryDepth++;
    delivering = data.buffer;
    try {
      this.onBatch?.(batch);
    } finally {
      if (--deliveryDepth === 0) {
        flushWaiting();
        delivering = null;
      }
    }
  }

  send(datagram: Buffer, port: number, address: string): void {
    const handle = this.handle;
    if (!handle) return;
    const err = this.addon.queue(handle, datagram, port, address, datagram.buffer === delivering);
    if (err !== 0) this.reportSendError(err, `sending to ${address}:${port}`);
    if (deliveryDepth === 0) this.flush();
    else if (!this.queued) {
      this.queued = true;
      waitingToFlush.push(this);
    }
  }

  flush(): void {
    this.queued = false;
    if (!this.handle) return;
    const err = this.addon.flush(this.handle);
    if (err !== 0) this.reportSendError(err, "");
  }

  private reportSendError(errno: number, context: string): void {
    const name = errnoName(errno);
    const code = typeof name === "string" ? name : `errno ${name}`;
    this.onError?.(errnoError(code, "sendmmsg", context ? ` (${context})` : ""));
  }

  address(): { address: string; port: number; family: "IPv4" | "IPv6" } {
    return this.local;
  }

  grantedBufferBytes(): { receive: number; send: number } {
    return this.granted;
  }

  unref(): void {
    if (this.handle) this.addon.ref(this.handle, false);
  }

  close(): void {
    if (!this.handle) return;
    // What was queued in this delivery still goes out, as dgram would have sent it already.
    this.flush();
    this.addon.close(this.handle);
    this.handle = null;
  }
}

export async function openNativeBatchedSocket(options: BindUdpSocketOptions): Promise<BatchedUdpSocket> {
  const { addon, error } = loadBatchedUdpAddon();
  if (!addon) throw new Error(`batched UDP addon unavailable: ${error}`);
  const socket = new NativeBatchedSocket(addon);
  socket.open(options);
  return socket;
}
