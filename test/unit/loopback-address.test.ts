import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  LoopbackAllocator,
  loopbackAddressOf,
  loopbackCandidates,
  MAX_LOOPBACK_CANDIDATES,
} from "../../src/proxy/loopback-address.js";

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

describe("loopbackCandidates", () => {
  it("starts at the key's address and the base port, then goes on with a bounded sequence of its own", () => {
    const key = randomBytes(32);
    const all = loopbackCandidates(key, 40000);
    expect(all[0]).toEqual({ address: loopbackAddressOf(key), port: 40000 });
    expect(all.length).toBe(MAX_LOOPBACK_CANDIDATES);
    expect(loopbackCandidates(Buffer.from(key), 40000)).toEqual(all);
    // Every candidate is distinct and a proper L(P): a squatter must hold each to keep the peer out.
    expect(new Set(all.map((c) => `${c.address}:${c.port}`)).size).toBe(all.length);
    for (const { address, port } of all) {
      const octets = address.split(".").map(Number);
      expect(octets[0]).toBe(127);
      expect(octets[1] === 0 && octets[2] === 0).toBe(false);
      expect([0, 255]).not.toContain(octets[3]);
      expect(port).toBeGreaterThanOrEqual(40000);
      expect(port).toBeLessThan(40000 + 4096);
    }
    // The fallbacks spread over addresses and ports: not just base+1, base+2, ... on one address.
    expect(new Set(all.slice(1).map((c) => c.address)).size).toBeGreaterThan(all.length - 3);
    expect(new Set(all.slice(1).map((c) => c.port)).size).toBeGreaterThan(all.length / 2);
  });

  it("differs between keys, and stays below port 65536 near the top", () => {
    const a = loopbackCandidates(Buffer.alloc(32, 1), 40000);
    const b = loopbackCandidates(Buffer.alloc(32, 2), 40000);
    expect(a.slice(1)).not.toEqual(b.slice(1));
    for (const { port } of loopbackCandidates(randomBytes(32), 65530)) {
      expect(port).toBeGreaterThanOrEqual(65530);
      expect(port).toBeLessThanOrEqual(65535);
    }
  });
});

describe("LoopbackAllocator", () => {
  it("gives the first candidate, and the next one when a peer of ours holds it, deterministically", () => {
    const key = randomBytes(32);
    const [first, second] = loopbackCandidates(key, 40000);
    const alloc = new LoopbackAllocator(40000);
    const a = alloc.candidates(key).next().value!;
    expect(a).toEqual(first);
    alloc.claim(a);
    // A second key that hashes to the same address (simulated with the same key) gets the next one.
    expect(alloc.candidates(key).next().value).toEqual(second);

    // The same claims in the same order on a fresh allocator (a restart) give the same answers.
    const again = new LoopbackAllocator(40000);
    const a2 = again.candidates(key).next().value!;
    again.claim(a2);
    expect(a2).toEqual(a);
    expect(again.candidates(key).next().value).toEqual(second);
  });

  it("frees a released address", () => {
    const key = randomBytes(32);
    const alloc = new LoopbackAllocator(40000);
    const a = alloc.candidates(key).next().value!;
    alloc.claim(a);
    alloc.release(a);
    expect(alloc.candidates(key).next().value).toEqual(a);
  });

  it("runs out after a bounded number of candidates instead of looping", () => {
    const key = randomBytes(32);
    const alloc = new LoopbackAllocator(40000);
    for (const c of loopbackCandidates(key, 40000)) alloc.claim(c);
    expect([...alloc.candidates(key)]).toEqual([]);
  });

  it("tries WireGuard's endpoint first when it is one of the key's candidates, and only then", () => {
    const key = randomBytes(32);
    const all = loopbackCandidates(key, 40000);
    const alloc = new LoopbackAllocator(40000);
    const third = `${all[2]!.address}:${all[2]!.port}`;
    expect([...alloc.candidates(key, third)]).toEqual([all[2], all[0], all[1], ...all.slice(3)]);
    // Anything else (another address, a real endpoint, none) leaves the order alone.
    expect([...alloc.candidates(key, "127.0.0.9:40000")]).toEqual(all);
    expect([...alloc.candidates(key, "192.0.2.1:51820")]).toEqual(all);
    expect([...alloc.candidates(key, null)]).toEqual(all);
    // Held by another peer: skipped all the same.
    alloc.claim(all[2]!);
    expect([...alloc.candidates(key, third)]).toEqual([all[0], all[1], ...all.slice(3)]);
  });
});
