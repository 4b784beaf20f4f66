import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  LOOPBACK6_ADDRESS,
  LOOPBACK6_PORT_LOW,
  LOOPBACK6_PORT_SPAN,
  type LoopbackAddress,
  LoopbackAllocator,
  loopbackAddressOf,
  loopbackCandidates,
  loopbackEndpointText,
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

describe("LoopbackAllocator for L6(P) (family 6)", () => {
  /** Every candidate of a key on a fresh allocator, in order. */
  const all6 = (key: Uint8Array): LoopbackAddress[] => [
    ...new LoopbackAllocator(undefined, 6).candidates(key),
  ];
  const text6 = (port: number): string => `[::1]:${port}`;
  /** The order when `preferred` matches all[i] first: it, then the others in their order. */
  const preferredFirst = (all: LoopbackAddress[], port: number): LoopbackAddress[] => {
    const i = all.findIndex((c) => c.port === port);
    return [all[i]!, ...all.slice(0, i), ...all.slice(i + 1)];
  };

  it("gives MAX_LOOPBACK_CANDIDATES candidates, each ::1 at a port in the L6(P) range", () => {
    expect(LOOPBACK6_ADDRESS).toBe("::1");
    // Below Linux's ephemeral range (32768-60999).
    expect(LOOPBACK6_PORT_LOW + LOOPBACK6_PORT_SPAN).toBeLessThanOrEqual(32768);
    for (let k = 0; k < 50; k++) {
      const all = all6(randomBytes(32));
      expect(all.length).toBe(MAX_LOOPBACK_CANDIDATES);
      for (const { address, port } of all) {
        expect(address).toBe("::1");
        expect(Number.isInteger(port)).toBe(true);
        expect(port).toBeGreaterThanOrEqual(LOOPBACK6_PORT_LOW);
        expect(port).toBeLessThan(LOOPBACK6_PORT_LOW + LOOPBACK6_PORT_SPAN);
      }
      // Ports alone, derived from the key: a few may repeat, most do not.
      expect(new Set(all.map((c) => c.port)).size).toBeGreaterThan(MAX_LOOPBACK_CANDIDATES - 4);
    }
  });

  it("is deterministic for a key (a restart offers the same order) and differs between keys", () => {
    const key = randomBytes(32);
    expect(all6(Buffer.from(key))).toEqual(all6(key));
    expect(all6(Buffer.alloc(32, 1))).not.toEqual(all6(Buffer.alloc(32, 2)));
    // First choices of different keys spread over the range (200 keys in 12,288 ports).
    const firsts = new Set(Array.from({ length: 200 }, (_, i) => all6(Buffer.alloc(32, i))[0]!.port));
    expect(firsts.size).toBeGreaterThan(190);
  });

  it("does not depend on the port base (that is L(P)'s)", () => {
    const key = randomBytes(32);
    expect([...new LoopbackAllocator(40000, 6).candidates(key)]).toEqual(all6(key));
  });

  it("tries WireGuard's endpoint first when it is [::1] at one of the key's ports", () => {
    const key = randomBytes(32);
    const all = all6(key);
    const alloc = new LoopbackAllocator(undefined, 6);
    for (const pick of [all[0]!, all[5]!, all[MAX_LOOPBACK_CANDIDATES - 1]!]) {
      const order = [...alloc.candidates(key, text6(pick.port))];
      expect(order[0]).toEqual(pick);
      expect(order).toEqual(preferredFirst(all, pick.port));
    }
  });

  it("ignores an endpoint that is not one of the key's candidates", () => {
    const key = randomBytes(32);
    const all = all6(key);
    const ports = new Set(all.map((c) => c.port));
    let outside = LOOPBACK6_PORT_LOW;
    while (ports.has(outside)) outside++;
    const alloc = new LoopbackAllocator(undefined, 6);
    for (const preferred of [
      text6(outside), // in the range, not the key's
      text6(51820), // out of the range
      `127.12.34.56:${all[3]!.port}`, // an L(P) at one of its ports
      `::1:${all[3]!.port}`, // not in WireGuard's format
      `[2001:db8::1]:${all[3]!.port}`, // a real endpoint
      null,
      undefined,
    ]) {
      expect([...alloc.candidates(key, preferred)], String(preferred)).toEqual(all);
    }
  });

  it("skips ports our peers hold, also a preferred one, and offers released ones again", () => {
    const key = randomBytes(32);
    const all = all6(key);
    const alloc = new LoopbackAllocator(undefined, 6);
    const first = alloc.candidates(key).next().value!;
    expect(first).toEqual(all[0]);
    alloc.claim(first);
    const held = (c: LoopbackAddress) => c.port === first.port;
    expect([...alloc.candidates(key)]).toEqual(all.filter((c) => !held(c)));
    expect(alloc.candidates(key).next().value).toEqual(all.find((c) => !held(c)));
    // Held by another peer (simulated with the same key): WireGuard's endpoint is skipped as well.
    expect([...alloc.candidates(key, text6(first.port))]).toEqual(all.filter((c) => !held(c)));
    alloc.release(first);
    expect([...alloc.candidates(key)]).toEqual(all);
    expect(alloc.candidates(key).next().value).toEqual(first);
  });

  it("runs out after its candidates are all held", () => {
    const key = randomBytes(32);
    const alloc = new LoopbackAllocator(undefined, 6);
    for (const c of all6(key)) alloc.claim(c);
    expect([...alloc.candidates(key)]).toEqual([]);
  });

  it("does not share claims with an L(P) allocator, which ignores [::1] endpoints", () => {
    const key = randomBytes(32);
    const four = new LoopbackAllocator(40000);
    const six = new LoopbackAllocator(40000, 6);
    const l6 = six.candidates(key).next().value!;
    six.claim(l6);
    expect([...four.candidates(key)]).toEqual(loopbackCandidates(key, 40000));
    expect([...four.candidates(key, loopbackEndpointText(l6))]).toEqual(loopbackCandidates(key, 40000));
  });
});

describe("loopbackEndpointText", () => {
  it("is WireGuard's endpoint text: a.b.c.d:port for L(P), [::1]:port for L6(P)", () => {
    expect(loopbackEndpointText({ address: "127.12.34.56", port: 51822 })).toBe("127.12.34.56:51822");
    expect(loopbackEndpointText({ address: "::1", port: 20500 })).toBe("[::1]:20500");
  });

  it("matches what a candidate is preferred by", () => {
    const key = randomBytes(32);
    for (const family of [4, 6] as const) {
      const alloc = new LoopbackAllocator(40000, family);
      const all = [...alloc.candidates(key)];
      const last = all.at(-1)!;
      expect([...alloc.candidates(key, loopbackEndpointText(last))][0]).toEqual(last);
    }
  });
});
