/**
 * Outgoing frames of one introduction server connection, paced under the limits the server announced
 * (a share of them: we must never be closed for rate), queued while over them.
 */
import type { WebSocket } from "ws";
import type { WelcomeMessage } from "../signalling/protocol.js";
import { TokenBucket } from "../signalling/signalling-rate.js";
import { IntroSendError } from "./intro-errors.js";

/** Our own pace is this share of the limits the server announces, so we are never cut off for it. */
const PACE_SHARE = 0.75;
/** While over the pace, try again this often. */
const DRAIN_INTERVAL_MS = 20;

export class PacedQueue {
  private readonly frames: string[] = [];
  private ws: WebSocket | undefined;
  private drainTimer: NodeJS.Timeout | undefined;
  private messageBucket = new TokenBucket(1, 1);
  private byteBucket = new TokenBucket(1, 1);

  constructor(private readonly maxQueued: number) {}

  /** Starts sending on an authenticated connection, paced under its limits. */
  open(ws: WebSocket, limits: WelcomeMessage["limits"]): void {
    this.ws = ws;
    this.messageBucket = new TokenBucket(
      limits.messageBurst * PACE_SHARE,
      limits.messagesPerSecond * PACE_SHARE,
    );
    this.byteBucket = new TokenBucket(limits.byteBurst * PACE_SHARE, limits.bytesPerSecond * PACE_SHARE);
    this.drain();
  }

  /** The connection is gone: what was not sent is dropped. */
  close(): void {
    clearTimeout(this.drainTimer);
    this.drainTimer = undefined;
    this.frames.length = 0;
    this.ws = undefined;
  }

  private hasRoom(): boolean {
    return this.frames.length < this.maxQueued;
  }

  /** Queues a frame; throws IntroSendError when the queue is full. */
  push(frame: string): void {
    if (!this.hasRoom()) {
      throw new IntroSendError("intro-queue-full", "too many messages waiting to be sent", {
        queued: this.frames.length,
      });
    }
    this.pushControl(frame);
  }

  /** Queues a frame of the protocol's own (peers, turn-refresh): never refused, there are few. */
  pushControl(frame: string): void {
    this.frames.push(frame);
    this.drain();
  }

  private drain(): void {
    const ws = this.ws;
    if (!ws) return;
    while (this.frames.length > 0) {
      const frame = this.frames[0]!;
      const bytes = Buffer.byteLength(frame);
      if (!this.messageBucket.canTake(1) || !this.byteBucket.canTake(bytes)) break;
      this.messageBucket.take(1);
      this.byteBucket.take(bytes);
      this.frames.shift();
      ws.send(frame);
    }
    if (this.frames.length > 0 && !this.drainTimer) {
      this.drainTimer = setTimeout(() => {
        this.drainTimer = undefined;
        this.drain();
      }, DRAIN_INTERVAL_MS);
    }
  }
}
