// BLAKE2s (RFC 7693), hand-written because mac1 scanning needs what no library exposes: a keyed
// state computed once per peer key and then reused, allocation-free, for every datagram. @noble/hashes
// can clone a keyed state, but each clone allocates and runs its generic buffering path, which caps it
// near 1.4e5 checks/s; this compression function is fully unrolled with the SIGMA schedule as constant
// indices into message locals, which V8 keeps in registers.
//
// Besides the raw compression function this module provides plain BLAKE2s-256 and keyed BLAKE2s with
// any output length (one-shot and streaming), a pre-keyed state for repeated MACs under one key, and
// HMAC-BLAKE2s / HKDF exactly as WireGuard's Noise handshake uses them.

export const BLOCK_SIZE = 64;
export const HASH_SIZE = 32;

const IV0 = 0x6a09e667 | 0;
const IV1 = 0xbb67ae85 | 0;
const IV2 = 0x3c6ef372 | 0;
const IV3 = 0xa54ff53a | 0;
const IV4 = 0x510e527f | 0;
const IV5 = 0x9b05688c | 0;
const IV6 = 0x1f83d9ab | 0;
const IV7 = 0x5be0cd19 | 0;

/**
 * The BLAKE2s compression function F. Reads the chaining value h[ho..ho+8], the 16 message words
 * m[mo..mo+16] and the byte counter t (split in low and high words), and writes the new chaining value
 * to out[oo..oo+8]. `out` may be `h` (in place); writing elsewhere lets a caller keep a pre-keyed state
 * intact without copying it first.
 */
export function compress(
  h: Int32Array,
  ho: number,
  m: Int32Array,
  mo: number,
  tLo: number,
  tHi: number,
  last: boolean,
  out: Int32Array,
  oo: number,
): void {
  const h0 = h[ho]!;
  const h1 = h[ho + 1]!;
  const h2 = h[ho + 2]!;
  const h3 = h[ho + 3]!;
  const h4 = h[ho + 4]!;
  const h5 = h[ho + 5]!;
  const h6 = h[ho + 6]!;
  const h7 = h[ho + 7]!;
  const m0 = m[mo]!;
  const m1 = m[mo + 1]!;
  const m2 = m[mo + 2]!;
  const m3 = m[mo + 3]!;
  const m4 = m[mo + 4]!;
  const m5 = m[mo + 5]!;
  const m6 = m[mo + 6]!;
  const m7 = m[mo + 7]!;
  const m8 = m[mo + 8]!;
  const m9 = m[mo + 9]!;
  const m10 = m[mo + 10]!;
  const m11 = m[mo + 11]!;
  const m12 = m[mo + 12]!;
  const m13 = m[mo + 13]!;
  const m14 = m[mo + 14]!;
  const m15 = m[mo + 15]!;
  let v0 = h0;
  let v1 = h1;
  let v2 = h2;
  let v3 = h3;
  let v4 = h4;
  let v5 = h5;
  let v6 = h6;
  let v7 = h7;
  let v8 = IV0;
  let v9 = IV1;
  let v10 = IV2;
  let v11 = IV3;
  let v12 = IV4 ^ tLo;
  let v13 = IV5 ^ tHi;
  let v14 = last ? ~IV6 : IV6;
  let v15 = IV7;
  // Round 0: sigma = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]
  v0 = (v0 + v4 + m0) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m1) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m2) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m3) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m4) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m5) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m6) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m7) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m8) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m9) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m10) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m11) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m12) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m13) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m14) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m15) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 1: sigma = [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3]
  v0 = (v0 + v4 + m14) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m10) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m4) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m8) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m9) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m15) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m13) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m6) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m1) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m12) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m0) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m2) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m11) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m7) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m5) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m3) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 2: sigma = [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4]
  v0 = (v0 + v4 + m11) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m8) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m12) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m0) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m5) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m2) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m15) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m13) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m10) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m14) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m3) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m6) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m7) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m1) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m9) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m4) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 3: sigma = [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8]
  v0 = (v0 + v4 + m7) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m9) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m3) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m1) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m13) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m12) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m11) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m14) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m2) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m6) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m5) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m10) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m4) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m0) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m15) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m8) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 4: sigma = [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13]
  v0 = (v0 + v4 + m9) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m0) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m5) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m7) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m2) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m4) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m10) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m15) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m14) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m1) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m11) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m12) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m6) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m8) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m3) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m13) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 5: sigma = [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9]
  v0 = (v0 + v4 + m2) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m12) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m6) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m10) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m0) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m11) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m8) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m3) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m4) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m13) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m7) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m5) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m15) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m14) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m1) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m9) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 6: sigma = [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11]
  v0 = (v0 + v4 + m12) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m5) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m1) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m15) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m14) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m13) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m4) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m10) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m0) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m7) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m6) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m3) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m9) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m2) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m8) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m11) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 7: sigma = [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10]
  v0 = (v0 + v4 + m13) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m11) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m7) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m14) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m12) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m1) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m3) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m9) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m5) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m0) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m15) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m4) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m8) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m6) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m2) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m10) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 8: sigma = [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5]
  v0 = (v0 + v4 + m6) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m15) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m14) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m9) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m11) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m3) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m0) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m8) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m12) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m2) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m13) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m7) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m1) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m4) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m10) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m5) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  // Round 9: sigma = [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0]
  v0 = (v0 + v4 + m10) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 16) | (v12 << 16);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 12) | (v4 << 20);
  v0 = (v0 + v4 + m2) | 0;
  v12 ^= v0;
  v12 = (v12 >>> 8) | (v12 << 24);
  v8 = (v8 + v12) | 0;
  v4 ^= v8;
  v4 = (v4 >>> 7) | (v4 << 25);
  v1 = (v1 + v5 + m8) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 16) | (v13 << 16);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 12) | (v5 << 20);
  v1 = (v1 + v5 + m4) | 0;
  v13 ^= v1;
  v13 = (v13 >>> 8) | (v13 << 24);
  v9 = (v9 + v13) | 0;
  v5 ^= v9;
  v5 = (v5 >>> 7) | (v5 << 25);
  v2 = (v2 + v6 + m7) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 16) | (v14 << 16);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 12) | (v6 << 20);
  v2 = (v2 + v6 + m6) | 0;
  v14 ^= v2;
  v14 = (v14 >>> 8) | (v14 << 24);
  v10 = (v10 + v14) | 0;
  v6 ^= v10;
  v6 = (v6 >>> 7) | (v6 << 25);
  v3 = (v3 + v7 + m1) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 16) | (v15 << 16);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 12) | (v7 << 20);
  v3 = (v3 + v7 + m5) | 0;
  v15 ^= v3;
  v15 = (v15 >>> 8) | (v15 << 24);
  v11 = (v11 + v15) | 0;
  v7 ^= v11;
  v7 = (v7 >>> 7) | (v7 << 25);
  v0 = (v0 + v5 + m15) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 16) | (v15 << 16);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 12) | (v5 << 20);
  v0 = (v0 + v5 + m11) | 0;
  v15 ^= v0;
  v15 = (v15 >>> 8) | (v15 << 24);
  v10 = (v10 + v15) | 0;
  v5 ^= v10;
  v5 = (v5 >>> 7) | (v5 << 25);
  v1 = (v1 + v6 + m9) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 16) | (v12 << 16);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 12) | (v6 << 20);
  v1 = (v1 + v6 + m14) | 0;
  v12 ^= v1;
  v12 = (v12 >>> 8) | (v12 << 24);
  v11 = (v11 + v12) | 0;
  v6 ^= v11;
  v6 = (v6 >>> 7) | (v6 << 25);
  v2 = (v2 + v7 + m3) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 16) | (v13 << 16);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 12) | (v7 << 20);
  v2 = (v2 + v7 + m12) | 0;
  v13 ^= v2;
  v13 = (v13 >>> 8) | (v13 << 24);
  v8 = (v8 + v13) | 0;
  v7 ^= v8;
  v7 = (v7 >>> 7) | (v7 << 25);
  v3 = (v3 + v4 + m13) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 16) | (v14 << 16);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 12) | (v4 << 20);
  v3 = (v3 + v4 + m0) | 0;
  v14 ^= v3;
  v14 = (v14 >>> 8) | (v14 << 24);
  v9 = (v9 + v14) | 0;
  v4 ^= v9;
  v4 = (v4 >>> 7) | (v4 << 25);
  out[oo] = h0 ^ v0 ^ v8;
  out[oo + 1] = h1 ^ v1 ^ v9;
  out[oo + 2] = h2 ^ v2 ^ v10;
  out[oo + 3] = h3 ^ v3 ^ v11;
  out[oo + 4] = h4 ^ v4 ^ v12;
  out[oo + 5] = h5 ^ v5 ^ v13;
  out[oo + 6] = h6 ^ v6 ^ v14;
  out[oo + 7] = h7 ^ v7 ^ v15;
}

function checkLength(value: number, min: number, max: number, what: string): void {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new RangeError(`BLAKE2s ${what} must be ${min}..${max}, got ${value}`);
  }
}

/** The initial chaining value for a (key length, output length) parameter block, into h[0..8]. */
function initState(h: Int32Array, keyLen: number, outLen: number): void {
  h[0] = IV0 ^ 0x01010000 ^ (keyLen << 8) ^ outLen;
  h[1] = IV1;
  h[2] = IV2;
  h[3] = IV3;
  h[4] = IV4;
  h[5] = IV5;
  h[6] = IV6;
  h[7] = IV7;
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

/** Streaming BLAKE2s: plain (no key) or keyed, with an output length of 1..32 bytes. */
export class Blake2s {
  private readonly h = new Int32Array(8);
  private readonly buffer = new Uint8Array(BLOCK_SIZE);
  private readonly words = new Int32Array(16);
  /** Bytes already compressed. */
  private total = 0;
  /** Bytes waiting in `buffer`; a full block is held back until more data shows it is not the last. */
  private pos = 0;
  private finished = false;

  constructor(
    readonly outLen = HASH_SIZE,
    key?: Uint8Array,
  ) {
    checkLength(outLen, 1, 32, "output length");
    const keyLen = key?.length ?? 0;
    checkLength(keyLen, 0, 32, "key length");
    initState(this.h, keyLen, outLen);
    if (key && keyLen > 0) {
      this.buffer.set(key);
      this.pos = BLOCK_SIZE;
    }
  }

  update(data: Uint8Array): this {
    if (this.finished) throw new Error("BLAKE2s digest already taken");
    let offset = 0;
    const len = data.length;
    while (offset < len) {
      if (this.pos === BLOCK_SIZE) this.flushBlock(false);
      const take = Math.min(BLOCK_SIZE - this.pos, len - offset);
      this.buffer.set(data.subarray(offset, offset + take), this.pos);
      this.pos += take;
      offset += take;
    }
    return this;
  }

  digest(): Uint8Array {
    if (this.finished) throw new Error("BLAKE2s digest already taken");
    this.finished = true;
    this.buffer.fill(0, this.pos);
    this.flushBlock(true);
    return wordsToBytes(this.h, this.outLen);
  }

  private flushBlock(last: boolean): void {
    this.total += this.pos;
    loadBlocks(this.buffer, 0, BLOCK_SIZE, this.words);
    const t = this.total;
    compress(this.h, 0, this.words, 0, t >>> 0, Math.floor(t / 0x100000000), last, this.h, 0);
    this.pos = 0;
  }
}

/** One-shot BLAKE2s; BLAKE2s-256 without options. */
export function blake2s(data: Uint8Array, opts: { key?: Uint8Array; outLen?: number } = {}): Uint8Array {
  return new Blake2s(opts.outLen ?? HASH_SIZE, opts.key).update(data).digest();
}

/** WireGuard's HASH: BLAKE2s-256 of the concatenation of `parts`. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = new Blake2s(HASH_SIZE);
  for (const part of parts) h.update(part);
  return h.digest();
}

const IPAD = 0x36;
const OPAD = 0x5c;

/** HMAC-BLAKE2s-256 (RFC 2104 with a 64-byte block), WireGuard's HMAC; `parts` are concatenated. */
export function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const k = key.length > BLOCK_SIZE ? hash(key) : key;
  const pad = new Uint8Array(BLOCK_SIZE);
  pad.set(k);
  for (let i = 0; i < BLOCK_SIZE; i++) pad[i]! ^= IPAD;
  const inner = new Blake2s(HASH_SIZE).update(pad);
  for (const part of parts) inner.update(part);
  const innerDigest = inner.digest();
  for (let i = 0; i < BLOCK_SIZE; i++) pad[i]! ^= IPAD ^ OPAD;
  return new Blake2s(HASH_SIZE).update(pad).update(innerDigest).digest();
}

/**
 * WireGuard's KDF_n (HKDF with HMAC-BLAKE2s): T0 = HMAC(C, input), T1 = HMAC(T0, 0x1),
 * Ti = HMAC(T0, T(i-1) || i). Returns [T1 .. Tn].
 */
export function hkdf(chainingKey: Uint8Array, input: Uint8Array, n: 1 | 2 | 3): Uint8Array[] {
  const prk = hmac(chainingKey, input);
  const out: Uint8Array[] = [];
  let previous: Uint8Array = new Uint8Array(0);
  for (let i = 1; i <= n; i++) {
    previous = hmac(prk, previous, Uint8Array.of(i));
    out.push(previous);
  }
  return out;
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

/** A keyed BLAKE2s whose key block is compressed once, for many MACs of non-empty messages. */
export class Blake2sPrekeyed {
  private readonly state = new Int32Array(8);
  private readonly out = new Int32Array(8);
  private m = new Int32Array(16);

  constructor(
    key: Uint8Array,
    readonly outLen: number,
  ) {
    prekeyState(key, outLen, this.state, 0);
  }

  /** The MAC of bytes[offset .. offset+len] (len >= 1). */
  mac(bytes: Uint8Array, offset = 0, len = bytes.length - offset): Uint8Array {
    this.macWordsInto(bytes, offset, len, this.out);
    return wordsToBytes(this.out, this.outLen);
  }

  /** Like `mac` but leaves the result as words in out[0..8]; allocates only for messages over 64 bytes
   * the first time it sees them. */
  macWordsInto(bytes: Uint8Array, offset: number, len: number, out: Int32Array): void {
    if (len < 1) throw new RangeError("Blake2sPrekeyed needs a non-empty message");
    const words = ((len + 63) >>> 6) << 4;
    if (this.m.length < words) this.m = new Int32Array(words);
    loadBlocks(bytes, offset, len, this.m);
    prekeyedMacWords(this.state, 0, this.m, len, out);
  }
}
