// BLAKE2s (RFC 7693) for mac1 and mac2, hand-written because mac1 scanning needs what no library
// exposes: a keyed state computed once per peer key and then reused, allocation-free, for every
// datagram. @noble/hashes can clone a keyed state, but each clone allocates and runs its generic
// buffering path: about 20 times slower per key check (docs/decisions.md has the numbers).
//
// The compression function is generated (blake2s-compress.generated.ts); this module has one-shot
// BLAKE2s (plain or keyed, any output length) for mac1 keys and mac2, and the pre-keyed state for
// repeated MACs under one key. Noise's HMAC and HKDF live with the test Noise (test/support/noise.ts).
import { compress, IV } from "./blake2s-compress.generated.js";

export { compress } from "./blake2s-compress.generated.js";

export const BLOCK_SIZE = 64;
export const HASH_SIZE = 32;

const EMPTY = new Uint8Array(0);

function checkLength(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`BLAKE2s ${what} must be ${min}..${max}, got ${value}`);
  }
}

/** The initial chaining value for a (key length, output length) parameter block, into h[0..8]. */
function initState(h: Int32Array, keyLen: number, outLen: number): void {
  h.set(IV);
  // Parameter block word 0: digest length, key length, fanout 1, depth 1.
  h[0]! ^= 0x01010000 ^ (keyLen << 8) ^ outLen;
}

/**
 * Loads `len` bytes of `bytes` starting at `offset` as little-endian words into m[0..], zero-padded to
 * whole 64-byte blocks; returns the number of blocks (at least 1). `m` must hold 16 words per block.
 * Byte-wise, so the result does not depend on host endianness or buffer alignment.
 */
export function loadBlocks(bytes: Uint8Array, offset: number, len: number, m: Int32Array): number {
  const blocks = len === 0 ? 1 : (len + 63) >>> 6;
  const fullWords = len >>> 2;
  let p = offset;
  for (let i = 0; i < fullWords; i++, p += 4) {
    m[i] = bytes[p]! | (bytes[p + 1]! << 8) | (bytes[p + 2]! << 16) | (bytes[p + 3]! << 24);
  }
  let w = fullWords;
  const rest = len & 3;
  if (rest !== 0) {
    let word = 0;
    for (let j = 0; j < rest; j++) word |= bytes[p + j]! << (8 * j);
    m[w++] = word;
  }
  const words = blocks << 4;
  for (; w < words; w++) m[w] = 0;
  return blocks;
}

/** Writes the first `outLen` bytes of the little-endian words h[0..] into a new array. */
export function wordsToBytes(h: Int32Array, outLen: number): Uint8Array {
  const out = new Uint8Array(outLen);
  for (let i = 0; i < outLen; i++) out[i] = h[i >>> 2]! >>> (8 * (i & 3));
  return out;
}

/** One-shot BLAKE2s, plain or keyed (key 0..32 bytes), output 1..32 bytes; BLAKE2s-256 by default. */
export function blake2s(data: Uint8Array, opts: { key?: Uint8Array; outLen?: number } = {}): Uint8Array {
  const outLen = opts.outLen ?? HASH_SIZE;
  const key = opts.key ?? EMPTY;
  checkLength(outLen, 1, 32, "output length");
  checkLength(key.length, 0, 32, "key length");
  // A key is a zero-padded block of its own ahead of the data (RFC 7693, section 3.3).
  const start = key.length > 0 ? BLOCK_SIZE : 0;
  const total = start + data.length;
  const input = new Uint8Array(total);
  input.set(key);
  input.set(data, start);
  const m = new Int32Array((total === 0 ? 1 : (total + 63) >>> 6) << 4);
  const blocks = loadBlocks(input, 0, total, m);
  const h = new Int32Array(8);
  initState(h, key.length, outLen);
  for (let b = 0; b < blocks; b++) {
    const last = b === blocks - 1;
    const t = last ? total : (b + 1) * BLOCK_SIZE;
    compress(h, 0, m, b << 4, t >>> 0, Math.floor(t / 0x100000000), last, h, 0);
  }
  return wordsToBytes(h, outLen);
}

/** WireGuard's HASH: BLAKE2s-256 of the concatenation of `parts`. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  return blake2s(parts.length === 1 ? parts[0]! : Buffer.concat(parts));
}

/**
 * Keyed BLAKE2s of a message already loaded with `loadBlocks` (length `len` >= 1), starting from a
 * pre-keyed chaining value at state[so..so+8] (the state after compressing the key block). Writes the
 * final chaining value to out[0..8]; its first outLen bytes are the MAC. Allocation-free.
 */
export function prekeyedMacWords(
  state: Int32Array,
  so: number,
  m: Int32Array,
  len: number,
  out: Int32Array,
): void {
  const blocks = (len + 63) >>> 6;
  const lastBlock = blocks - 1;
  if (lastBlock === 0) {
    compress(state, so, m, 0, BLOCK_SIZE + len, 0, true, out, 0);
    return;
  }
  compress(state, so, m, 0, 2 * BLOCK_SIZE, 0, false, out, 0);
  for (let b = 1; b < lastBlock; b++) compress(out, 0, m, b << 4, (b + 2) * BLOCK_SIZE, 0, false, out, 0);
  compress(out, 0, m, lastBlock << 4, BLOCK_SIZE + len, 0, true, out, 0);
}

/**
 * Writes the chaining value after the key block of keyed BLAKE2s (key 1..32 bytes, output outLen bytes)
 * into state[so..so+8]. Computing this once per key saves one of the two or three compressions that
 * every mac1 would otherwise cost.
 */
export function prekeyState(key: Uint8Array, outLen: number, state: Int32Array, so: number): void {
  checkLength(key.length, 1, 32, "key length");
  checkLength(outLen, 1, 32, "output length");
  const init = new Int32Array(8);
  initState(init, key.length, outLen);
  const m = new Int32Array(16);
  loadBlocks(key, 0, key.length, m);
  // The key block is never the last one here: prekeyedMacWords requires a non-empty message.
  compress(init, 0, m, 0, BLOCK_SIZE, 0, false, state, so);
}

/**
 * Scratch space every Blake2sPrekeyed shares (a MAC is computed synchronously, start to end): a hub's
 * 10,000 peers each kept their own message block and output, 1 KiB of typed arrays a peer (issue 15).
 */
let scratchBlocks = new Int32Array(16);
const scratchOut = new Int32Array(8);

/** A keyed BLAKE2s whose key block is compressed once, for many MACs of non-empty messages. */
export class Blake2sPrekeyed {
  private readonly state = new Int32Array(8);

  constructor(
    key: Uint8Array,
    readonly outLen: number,
  ) {
    prekeyState(key, outLen, this.state, 0);
  }

  /** The MAC of bytes[offset .. offset+len] (len >= 1). */
  mac(bytes: Uint8Array, offset = 0, len = bytes.length - offset): Uint8Array {
    this.macWordsInto(bytes, offset, len, scratchOut);
    return wordsToBytes(scratchOut, this.outLen);
  }

  /** Like `mac` but leaves the result as words in out[0..8]; allocates only for messages longer than
   * any seen before (over 64 bytes). */
  macWordsInto(bytes: Uint8Array, offset: number, len: number, out: Int32Array): void {
    if (len < 1) throw new RangeError("Blake2sPrekeyed needs a non-empty message");
    const words = ((len + 63) >>> 6) << 4;
    if (scratchBlocks.length < words) scratchBlocks = new Int32Array(words);
    loadBlocks(bytes, offset, len, scratchBlocks);
    prekeyedMacWords(this.state, 0, scratchBlocks, len, out);
  }
}
