/**
 * Sliding window of seen sequence numbers (a ring bitmap, as in RFC 6479): accepts each number
 * once, and rejects numbers that fell more than `size` behind the highest one seen.
 */
export class ReplayWindow {
  private highest = -1;
  private readonly seen: Uint32Array;

  constructor(readonly size = 1024) {
    if (size <= 0 || size % 32 !== 0)
      throw new RangeError("replay window size must be a positive multiple of 32");
    this.seen = new Uint32Array(size / 32);
  }

  /** True, and remembered, if `sequence` has not been seen and is inside the window. */
  accept(sequence: number): boolean {
    if (sequence > this.highest) {
      const advance = Math.min(sequence - this.highest, this.size);
      for (let i = 1; i <= advance; i++) this.clear(this.highest + i);
      this.highest = sequence;
      this.mark(sequence);
      return true;
    }
    if (this.highest - sequence >= this.size) return false;
    if (this.isMarked(sequence)) return false;
    this.mark(sequence);
    return true;
  }

  private slot(sequence: number): [number, number] {
    const bit = sequence % this.size;
    return [bit >>> 5, 1 << (bit & 31)];
  }
  private mark(sequence: number): void {
    const [word, mask] = this.slot(sequence);
    this.seen[word]! |= mask;
  }
  private clear(sequence: number): void {
    const [word, mask] = this.slot(sequence);
    this.seen[word]! &= ~mask;
  }
  private isMarked(sequence: number): boolean {
    const [word, mask] = this.slot(sequence);
    return (this.seen[word]! & mask) !== 0;
  }
}
