import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { hmac as nobleHmac } from "@noble/hashes/hmac.js";
import { describe, expect, it } from "vitest";
import {
  Blake2s,
  Blake2sPrekeyed,
  blake2s,
  hash,
  hkdf,
  hmac,
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
    const ctx = new Blake2s(32);
    for (const outlen of [16, 20, 28, 32]) {
      for (const inlen of [0, 3, 64, 65, 255, 1024]) {
        const input = seq(inlen, inlen);
        ctx.update(blake2s(input, { outLen: outlen }));
        ctx.update(blake2s(input, { outLen: outlen, key: seq(outlen, outlen) }));
      }
    }
    expect(hex(ctx.digest())).toBe("6a411f08ce25adcdfb02aba641451cec53c598b24f4fc787fbdc88797f4c1dfe");
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

  it("streams in arbitrary chunks to the same digest", () => {
    const data = bytes(1000, 42);
    const key = bytes(32, 43);
    for (const chunk of [1, 7, 63, 64, 65, 200]) {
      const h = new Blake2s(16, key);
      for (let i = 0; i < data.length; i += chunk) h.update(data.subarray(i, i + chunk));
      expect(hex(h.digest()), `chunk ${chunk}`).toBe(hex(nobleBlake2s(data, { key, dkLen: 16 })));
    }
  });

  it("pre-keyed MACs equal one-shot keyed BLAKE2s for every non-empty length up to 200", () => {
    const key = bytes(32, 7);
    const mac = new Blake2sPrekeyed(key, 16);
    const state = new Int32Array(16);
    prekeyState(key, 16, state, 8);
    const m = new Int32Array(64);
    const out = new Int32Array(8);
    for (let len = 1; len <= 200; len++) {
      const data = bytes(len, len);
      const want = hex(nobleBlake2s(data, { key, dkLen: 16 }));
      expect(hex(mac.mac(data)), `len ${len}`).toBe(want);
      loadBlocks(data, 0, len, m);
      prekeyedMacWords(state, 8, m, len, out);
      expect(hex(wordsToBytes(out, 16)), `words len ${len}`).toBe(want);
    }
    expect(() => mac.mac(new Uint8Array(0))).toThrow(RangeError);
  });

  it("rejects out-of-range key and output lengths, and a second digest", () => {
    expect(() => new Blake2s(0)).toThrow(RangeError);
    expect(() => new Blake2s(33)).toThrow(RangeError);
    expect(() => new Blake2s(32, new Uint8Array(33))).toThrow(RangeError);
    const h = new Blake2s();
    h.digest();
    expect(() => h.digest()).toThrow();
    expect(() => h.update(new Uint8Array(1))).toThrow();
  });
});

describe("HMAC and HKDF as WireGuard uses them", () => {
  it("HMAC-BLAKE2s matches @noble/hashes hmac(blake2s) for short and long keys", () => {
    for (const keyLen of [0, 16, 32, 64, 65, 100]) {
      const key = bytes(keyLen, keyLen + 5);
      const data = bytes(77, keyLen + 6);
      expect(hex(hmac(key, data.subarray(0, 30), data.subarray(30))), `key ${keyLen}`).toBe(
        hex(nobleHmac(nobleBlake2s, key, data)),
      );
    }
  });

  it("HKDF chains T1 = HMAC(T0, 1), Ti = HMAC(T0, T(i-1) || i)", () => {
    const ck = bytes(32, 1);
    const input = bytes(32, 2);
    const t0 = nobleHmac(nobleBlake2s, ck, input);
    const t1 = nobleHmac(nobleBlake2s, t0, Uint8Array.of(1));
    const t2 = nobleHmac(nobleBlake2s, t0, Uint8Array.of(...t1, 2));
    const t3 = nobleHmac(nobleBlake2s, t0, Uint8Array.of(...t2, 3));
    expect(hkdf(ck, input, 3).map(hex)).toEqual([t1, t2, t3].map(hex));
    expect(hkdf(ck, input, 1).map(hex)).toEqual([hex(t1)]);
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
