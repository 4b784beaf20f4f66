import { describe, expect, it } from "vitest";
import { Mac1Key } from "../../src/wireguard/mac1.js";
import {
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  encodeTransport,
  MessageFormatError,
} from "../../src/wireguard/messages.js";
import { PeerKeyTable } from "../../src/wireguard/peer-key-table.js";

function key(i: number): Uint8Array {
  const k = new Uint8Array(32);
  new DataView(k.buffer).setUint32(0, i * 2654435761);
  k[31] = i & 0xff;
  k[30] = (i >> 8) & 0xff;
  return k;
}

function signedInitiation(pub: Uint8Array, sender: number): Uint8Array {
  const msg = encodeInitiation({ senderIndex: sender, ephemeral: key(sender + 100000) });
  return new Mac1Key(pub).sign(msg);
}

function signedResponse(pub: Uint8Array, sender: number): Uint8Array {
  return new Mac1Key(pub).sign(
    encodeResponse({ senderIndex: sender, receiverIndex: 5, ephemeral: key(sender) }),
  );
}

describe("PeerKeyTable", () => {
  it("identifies initiations and responses among 1000 keys", () => {
    const table = new PeerKeyTable<string>();
    for (let i = 0; i < 1000; i++) table.add(key(i), `peer${i}`);
    expect(table.size).toBe(1000);
    for (const i of [0, 1, 499, 998, 999]) {
      expect(table.identify(signedInitiation(key(i), i))).toBe(`peer${i}`);
      expect(table.identify(signedResponse(key(i), i))).toBe(`peer${i}`);
    }
    expect(table.identify(signedInitiation(key(1000), 1))).toBeUndefined();
    expect(table.identify(signedResponse(key(5000), 1))).toBeUndefined();
  });

  it("returns undefined for other types, malformed messages and broken macs", () => {
    const table = new PeerKeyTable<number>();
    table.add(key(1), 1);
    const good = signedInitiation(key(1), 7);
    expect(table.identify(good)).toBe(1);
    const broken = good.slice();
    broken[20]! ^= 1;
    expect(table.identify(broken)).toBeUndefined();
    const reserved = good.slice();
    reserved[3] = 1;
    expect(table.identify(reserved)).toBeUndefined();
    expect(table.identify(good.subarray(0, 147))).toBeUndefined();
    expect(table.identify(encodeCookieReply({ receiverIndex: 1 }))).toBeUndefined();
    expect(table.identify(encodeTransport(1, 0n, new Uint8Array(100)))).toBeUndefined();
    expect(new PeerKeyTable<number>().identify(good)).toBeUndefined();
  });

  it("replaces a value on re-add, and keeps every other key findable across removals", () => {
    const table = new PeerKeyTable<number>();
    for (let i = 0; i < 40; i++) table.add(key(i), i);
    table.add(key(3), 333);
    expect(table.size).toBe(40);
    expect(table.identify(signedInitiation(key(3), 1))).toBe(333);
    for (const i of [0, 39, 17, 5]) expect(table.remove(key(i))).toBe(true);
    expect(table.remove(key(17))).toBe(false);
    expect(table.size).toBe(36);
    for (let i = 0; i < 40; i++) {
      const want = [0, 39, 17, 5].includes(i) ? undefined : i === 3 ? 333 : i;
      expect(table.identify(signedResponse(key(i), i)), `key ${i}`).toBe(want);
      expect(table.has(key(i))).toBe(want !== undefined);
    }
    for (let i = 0; i < 40; i++) table.remove(key(i));
    expect(table.size).toBe(0);
    table.add(key(17), 17);
    expect(table.identify(signedInitiation(key(17), 2))).toBe(17);
  });

  it("rejects keys that are not 32 bytes", () => {
    const table = new PeerKeyTable<number>();
    expect(() => table.add(new Uint8Array(33), 1)).toThrow(MessageFormatError);
  });
});
