import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { LoopbackAllocator, loopbackAddressOf } from "../../src/proxy/loopback-address.js";

describe("loopbackAddressOf", () => {
  it("is a pure function of the key", () => {
    const key = randomBytes(32);
    expect(loopbackAddressOf(key)).toBe(loopbackAddressOf(Buffer.from(key)));
  });

  it("stays in 127.0.0.0/8, outside 127.0.0.0/24, never .0 or .255", () => {
    const seen = new Set<string>();
    for (let i = 0; i < 20_000; i++) {
      const address = loopbackAddressOf(randomBytes(32));
      const octets = address.split(".").map(Number);
      expect(octets[0]).toBe(127);
      expect(octets[1] === 0 && octets[2] === 0).toBe(false);
      expect(octets[3]).not.toBe(0);
      expect(octets[3]).not.toBe(255);
      seen.add(address);
    }
    // 24 bits of hash: 20k keys collide only a handful of times.
    expect(seen.size).toBeGreaterThan(19_950);
  });

  it("differs between keys", () => {
    expect(loopbackAddressOf(Buffer.alloc(32, 1))).not.toBe(loopbackAddressOf(Buffer.alloc(32, 2)));
  });
});

describe("LoopbackAllocator", () => {
  it("gives the base port first and the next port on a collision, deterministically", () => {
    const key = randomBytes(32);
    const first = new LoopbackAllocator(40000);
    const a = first.candidates(key).next().value!;
    expect(a.port).toBe(40000);
    first.claim(a);
    // A second key that hashes to the same address (simulated with the same key) gets base + 1.
    const b = first.candidates(key).next().value!;
    expect(b).toEqual({ address: a.address, port: 40001 });

    // The same claims in the same order on a fresh allocator (a restart) give the same answers.
    const again = new LoopbackAllocator(40000);
    const a2 = again.candidates(key).next().value!;
    again.claim(a2);
    expect(a2).toEqual(a);
    expect(again.candidates(key).next().value).toEqual(b);
  });

  it("frees a released address", () => {
    const key = randomBytes(32);
    const alloc = new LoopbackAllocator(40000);
    const a = alloc.candidates(key).next().value!;
    alloc.claim(a);
    alloc.release(a);
    expect(alloc.candidates(key).next().value).toEqual(a);
  });

  it("runs out after a bounded number of ports instead of looping", () => {
    const key = randomBytes(32);
    const alloc = new LoopbackAllocator(65530);
    const all = [...alloc.candidates(key)];
    expect(all.length).toBe(6);
  });
});
