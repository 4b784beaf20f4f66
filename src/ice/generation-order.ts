// Controlled side: the order of the peer's generations. Every signal names the (epoch, generation) it
// belongs to (see ice-signal.ts); offers may come late or be replayed, and a generation's candidates may
// overtake its offer. Only the newest generation announced may win.
import { type IceSignal, MAX_REMOTE_CANDIDATES } from "./ice-signal.js";

export interface GenerationId {
  readonly epoch: string;
  readonly generation: number;
}

type TrickleSignal = Extract<IceSignal, GenerationId>;

/** How many replaced epochs are remembered (each is a restart of the peer's process). */
const RETIRED_EPOCHS = 8;

export class GenerationOrder {
  /** Epochs replaced by a newer one; their late offers must not win back. */
  private readonly retiredEpochs: string[] = [];
  /** Candidates that overtook their offer (only for the newest generation announced). */
  private early: { epoch: string; generation: number; signals: TrickleSignal[] } | null = null;

  /** Whether an offer for `offered` is newer than `latest`, the newest generation accepted (if any). */
  isNewer(offered: GenerationId, latest: GenerationId | null): boolean {
    return (
      !latest ||
      (offered.epoch === latest.epoch
        ? offered.generation > latest.generation
        : !this.retiredEpochs.includes(offered.epoch))
    );
  }

  /** An offer for `offered` replaces `latest`: a new epoch retires the previous one. */
  accepted(offered: GenerationId, latest: GenerationId | null): void {
    if (latest && latest.epoch !== offered.epoch) {
      this.retiredEpochs.push(latest.epoch);
      if (this.retiredEpochs.length > RETIRED_EPOCHS) this.retiredEpochs.shift();
    }
  }

  /**
   * Keeps a candidate (or end-of-candidates) of a generation newer than `latest` whose offer has not
   * come yet. False when it belongs to no such generation (it is stale) or the buffer is full.
   */
  bufferEarly(message: TrickleSignal, latest: GenerationId | null): boolean {
    if (this.retiredEpochs.includes(message.epoch)) return false;
    if (latest && latest.epoch === message.epoch && message.generation <= latest.generation) return false;
    if (!this.early || this.early.epoch !== message.epoch || this.early.generation !== message.generation) {
      if (this.early && this.early.epoch === message.epoch && this.early.generation > message.generation)
        return false;
      this.early = { epoch: message.epoch, generation: message.generation, signals: [] };
    }
    if (this.early.signals.length > MAX_REMOTE_CANDIDATES) return false;
    this.early.signals.push(message);
    return true;
  }

  /** The signals kept for `accepted`'s generation, in arrival order; anything else kept is dropped. */
  takeEarly(accepted: GenerationId): TrickleSignal[] {
    const early = this.early;
    this.early = null;
    return early && early.epoch === accepted.epoch && early.generation === accepted.generation
      ? early.signals
      : [];
  }
}
