/**
 * One write a turn of the event loop for a connection to the engine. A login storm or an envelope stream
 * asks Redis for hundreds of scripts a turn, and each was a write of its own: a syscall, and on loopback
 * the engine's wake-up too (a node profiled during a failover spent a quarter of its CPU in socket
 * writes). The stream is corked at the turn's first command and uncorked in the check phase, once the
 * turn's I/O callbacks have run: the commands leave in one writev, in the order they were written (what
 * ioredis's auto-pipelining did not keep: its batches went out a tick later than MULTI and pipelines).
 */
import type { Writable } from "node:stream";

export class TurnBatch {
  private corked: Writable | undefined;

  /** `streamOf`: the connection's stream now (it changes when the connection is made again). */
  constructor(private readonly streamOf: () => Writable | undefined) {}

  /** Before a command is written: from now to the end of this turn, writes wait to go out together. */
  hold(): void {
    if (this.corked) return;
    const stream = this.streamOf();
    if (!stream?.writable) return;
    stream.cork();
    this.corked = stream;
    setImmediate(() => {
      this.corked = undefined;
      stream.uncork();
    });
  }
}
