import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { describe, expect, it } from "vitest";
import {
  Blake2sPrekeyed,
  blake2s,
  compress,
  hash,
  loadBlocks,
  prekeyedMacWords,
  prekeyState,
  wordsToBytes,
} from "../../src/wireguard/blake2s.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const text = (s: string) => new TextEncoder().encode(s);

/** Deterministic pseudo-random bytes (xorshift32). */
function bytes(n: number, seed: number): Uint8Array {
  let x = seed >>> 0 || 1;
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const words = (n: number, seed: number) => new Int32Array(bytes(4 * n, seed).buffer);

describe("BLAKE2s against RFC 7693", () => {
  it('hashes "abc" as in Appendix B', () => {
    expect(hex(blake2s(text("abc")))).toBe(
      "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
    );
  });

  it("passes the Appendix E self-test (all output lengths, keyed and unkeyed)", () => {
    // selftest_seq from RFC 7693 Appendix E: a Fibonacci-like generator in 32-bit arithmetic.
    const seq = (len: number, seed: number) => {
      const out = new Uint8Array(len);
      let a = Math.imul(0xdead4bad, seed) >>> 0;
      let b = 1;
      for (let i = 0; i < len; i++) {
        const t = (a + b) >>> 0;
        a = b;
        b = t;
        out[i] = (t >>> 24) & 0xff;
      }
      return out;
    };
    // The self-test hashes the concatenation of all these digests.
    const digests: Uint8Array[] = [];
    for (const outlen of [16, 20, 28, 32]) {
      for (const inlen of [0, 3, 64, 65, 255, 1024]) {
        const input = seq(inlen, inlen);
        digests.push(blake2s(input, { outLen: outlen }));
        digests.push(blake2s(input, { outLen: outlen, key: seq(outlen, outlen) }));
      }
    }
    expect(hex(hash(...digests))).toBe("6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe");
  });

  it("hash() concatenates its parts (WireGuard's initial chaining key and hash)", () => {
    const ck = hash(text("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"));
    // Published constants, as in boringtun's INITIAL_CHAIN_KEY and INITIAL_CHAIN_HASH.
    expect([...ck]).toEqual([
      96, 226, 109, 174, 243, 39, 239, 192, 46, 195, 53, 226, 160, 37, 210, 208, 22, 235, 66, 6, 248, 114,
      119, 245, 45, 56, 209, 152, 139, 120, 205, 54,
    ]);
    expect([...hash(ck, text("WireGuard v1 zx2c4 Jason@zx2c4.com"))]).toEqual([
      34, 17, 179, 97, 8, 26, 197, 102, 105, 18, 67, 219, 69, 138, 213, 50, 45, 156, 108, 102, 34, 147, 232,
      183, 14, 225, 156, 101, 186, 7, 158, 243,
    ]);
  });
});

describe("BLAKE2s against @noble/hashes", () => {
  it("matches for every length 0..300 with and without keys and output lengths 1..32", () => {
    for (let len = 0; len <= 300; len++) {
      const data = bytes(len, len + 1);
      expect(hex(blake2s(data)), `len ${len}`).toBe(hex(nobleBlake2s(data)));
      const keyLen = (len % 32) + 1;
      const outLen = ((len * 7) % 32) + 1;
      const key = bytes(keyLen, len + 1000);
      expect(hex(blake2s(data, { key, outLen })), `len ${len} key ${keyLen} out ${outLen}`).toBe(
        hex(nobleBlake2s(data, { key, dkLen: outLen })),
      );
    }
  });

  it("matches keyed, for every key length 1..32 at block edges, mac1 and mac2 lengths and long inputs", () => {
    const lengths = [0, 1, 63, 64, 65, 116, 127, 128, 129, 132, 148, 191, 192, 193, 1000, 4096];
    for (let keyLen = 1; keyLen <= 32; keyLen++) {
      const key = bytes(keyLen, keyLen + 77);
      for (const len of lengths) {
        const data = bytes(len, len + keyLen);
        for (const outLen of [16, 32]) {
          expect(hex(blake2s(data, { key, outLen })), `key ${keyLen} len ${len} out ${outLen}`).toBe(
            hex(nobleBlake2s(data, { key, dkLen: outLen })),
          );
        }
      }
    }
  });

  it("pre-keyed MACs equal keyed BLAKE2s for every non-empty length up to 300, any key length", () => {
    for (const [keyLen, outLen] of [
      [32, 16],
      [16, 16],
      [1, 32],
      [20, 7],
    ] as const) {
      const key = bytes(keyLen, keyLen);
      const mac = new Blake2sPrekeyed(key, outLen);
      const state = new Int32Array(16);
      prekeyState(key, outLen, state, 8);
      const m = new Int32Array(80);
      const out = new Int32Array(8);
      for (let len = 1; len <= 300; len++) {
        const data = bytes(len, len);
        const want = hex(nobleBlake2s(data, { key, dkLen: outLen }));
        const what = `key ${keyLen} out ${outLen} len ${len}`;
        expect(hex(mac.mac(data)), what).toBe(want);
        // At an offset into a larger buffer, as mac1 reads a datagram's prefix.
        const padded = Uint8Array.of(9, 9, 9, ...data, 9);
        expect(hex(mac.mac(padded, 3, len)), `${what} at offset 3`).toBe(want);
        loadBlocks(data, 0, len, m);
        prekeyedMacWords(state, 8, m, len, out);
        expect(hex(wordsToBytes(out, outLen)), `words ${what}`).toBe(want);
      }
    }
    expect(() => new Blake2sPrekeyed(bytes(32, 1), 16).mac(new Uint8Array(0))).toThrow(RangeError);
  });

  it("pre-keyed MACs of many keys in turn, short and long messages interleaved, stay each key's own", () => {
    // They share their scratch space: nothing of one MAC may leak into the next.
    const keys = [bytes(32, 3), bytes(16, 5), bytes(32, 7)];
    const macs = keys.map((key) => new Blake2sPrekeyed(key, 16));
    for (const len of [300, 1, 65, 64, 200, 2, 129]) {
      keys.forEach((key, i) => {
        const data = bytes(len, len + i);
        expect(hex(macs[i]!.mac(data)), `key ${i} len ${len}`).toBe(
          hex(nobleBlake2s(data, { key, dkLen: 16 })),
        );
      });
    }
  });

  it("rejects out-of-range key and output lengths", () => {
    const data = new Uint8Array(1);
    expect(() => blake2s(data, { outLen: 0 })).toThrow(RangeError);
    expect(() => blake2s(data, { outLen: 33 })).toThrow(RangeError);
    expect(() => blake2s(data, { key: new Uint8Array(33) })).toThrow(RangeError);
    expect(() => new Blake2sPrekeyed(new Uint8Array(0), 16)).toThrow(RangeError);
    expect(() => new Blake2sPrekeyed(new Uint8Array(1), 33)).toThrow(RangeError);
  });
});

/** RFC 7693, section 2.7. */
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];
const IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/** F of RFC 7693 section 3.2 as written there: rolled loops, unsigned arithmetic. */
function referenceCompress(h: number[], m: number[], tLo: number, tHi: number, last: boolean): number[] {
  const v = [...h, ...IV].map((x) => x >>> 0);
  v[12] = (v[12]! ^ tLo) >>> 0;
  v[13] = (v[13]! ^ tHi) >>> 0;
  if (last) v[14] = ~v[14]! >>> 0;
  const rotr = (x: number, r: number) => ((x >>> r) | (x << (32 - r))) >>> 0;
  const g = (a: number, b: number, c: number, d: number, x: number, y: number) => {
    v[a] = (v[a]! + v[b]! + x) >>> 0;
    v[d] = rotr(v[d]! ^ v[a]!, 16);
    v[c] = (v[c]! + v[d]!) >>> 0;
    v[b] = rotr(v[b]! ^ v[c]!, 12);
    v[a] = (v[a]! + v[b]! + y) >>> 0;
    v[d] = rotr(v[d]! ^ v[a]!, 8);
    v[c] = (v[c]! + v[d]!) >>> 0;
    v[b] = rotr(v[b]! ^ v[c]!, 7);
  };
  for (const s of SIGMA) {
    const x = (i: number) => m[s[i]!]! >>> 0;
    g(0, 4, 8, 12, x(0), x(1));
    g(1, 5, 9, 13, x(2), x(3));
    g(2, 6, 10, 14, x(4), x(5));
    g(3, 7, 11, 15, x(6), x(7));
    g(0, 5, 10, 15, x(8), x(9));
    g(1, 6, 11, 12, x(10), x(11));
    g(2, 7, 8, 13, x(12), x(13));
    g(3, 4, 9, 14, x(14), x(15));
  }
  return h.map((x, i) => (x ^ v[i]! ^ v[i + 8]!) | 0);
}

describe("generated compression function", () => {
  it("equals the rolled definition for random states, counters (high word too), flags and offsets", () => {
    for (let i = 0; i < 200; i++) {
      const h = words(11, 3 * i + 1);
      const m = words(21, 3 * i + 2);
      const [tLo, tHi] = words(2, 3 * i + 3);
      const last = i % 2 === 1;
      const out = new Int32Array(12);
      compress(h, 3, m, 5, tLo!, tHi!, last, out, 4);
      const want = referenceCompress([...h.subarray(3, 11)], [...m.subarray(5, 21)], tLo!, tHi!, last);
      expect([...out.subarray(4)], `case ${i}`).toEqual(want);
      expect([...out.subarray(0, 4)]).toEqual([0, 0, 0, 0]);
      // In place, as the one-shot hash and the second block of mac1 use it.
      compress(h, 3, m, 5, tLo!, tHi!, last, h, 3);
      expect([...h.subarray(3)], `case ${i} in place`).toEqual(want);
    }
  });
});
