// The test Noise's HASH and KDF come from @noble/hashes; these pin them to WireGuard's definitions.
import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { hmac } from "@noble/hashes/hmac.js";
import { describe, expect, it } from "vitest";
import { hash as ourHash } from "../../src/wireguard/blake2s.js";
import { CONSTRUCTION, hash, IDENTIFIER, kdf } from "../support/noise.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 131 + seed * 17) & 0xff);
const hmacBlake2s = (key: Uint8Array, data: Uint8Array) => hmac(nobleBlake2s, key, data);

describe("Noise HASH and KDF (WireGuard paper, section 5.4)", () => {
  it("KDF_n chains T0 = HMAC(C, input), T1 = HMAC(T0, 1), Ti = HMAC(T0, T(i-1) || i)", () => {
    const ck = bytes(32, 1);
    const input = bytes(32, 2);
    const t0 = hmacBlake2s(ck, input);
    const t1 = hmacBlake2s(t0, Uint8Array.of(1));
    const t2 = hmacBlake2s(t0, Uint8Array.of(...t1, 2));
    const t3 = hmacBlake2s(t0, Uint8Array.of(...t2, 3));
    expect(kdf(ck, input, 3).map(hex)).toEqual([t1, t2, t3].map(hex));
    expect(kdf(ck, input, 2).map(hex)).toEqual([t1, t2].map(hex));
    expect(kdf(ck, input, 1).map(hex)).toEqual([hex(t1)]);
    const e0 = hmacBlake2s(ck, new Uint8Array(0));
    expect(kdf(ck, new Uint8Array(0), 1).map(hex)).toEqual([hex(hmacBlake2s(e0, Uint8Array.of(1)))]);
  });

  it("HASH concatenates its parts, and agrees with the data path's BLAKE2s", () => {
    const c0 = hash(new TextEncoder().encode(CONSTRUCTION));
    expect(hex(c0)).toBe("60e26daef327efc02ec335e2a025d2d016eb4206f87277f52d38d1988b78cd36");
    const h0 = hash(c0, new TextEncoder().encode(IDENTIFIER));
    expect(hex(h0)).toBe("2211b361081ac566691243db458ad5322d9c6c662293e8b70ee19c65ba079ef3");
    for (const n of [0, 1, 40, 64, 65, 200]) {
      const parts = [bytes(n, n), bytes(n >> 1, n + 1)];
      expect(hex(hash(...parts)), `len ${n}`).toBe(hex(ourHash(...parts)));
    }
  });
});
