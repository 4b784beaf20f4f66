import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { describe, expect, it } from "vitest";
import { computeMac2, Mac1Key, mac1KeyFor, verifyMac2 } from "../../src/wireguard/mac1.js";
import {
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  encodeTransport,
  InitiationOffset,
  MessageFormatError,
  ResponseOffset,
} from "../../src/wireguard/messages.js";

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");
const key = (seed: number) => new Uint8Array(32).map((_, i) => (i * 29 + seed * 101) & 0xff);
const filler = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 7 + seed) & 0xff);

/** mac1 straight from the definition, with @noble/hashes. */
function referenceMac1(publicKey: Uint8Array, msg: Uint8Array, offset: number): Uint8Array {
  const k = nobleBlake2s(Uint8Array.of(...new TextEncoder().encode("mac1----"), ...publicKey));
  return nobleBlake2s(msg.subarray(0, offset), { key: k, dkLen: 16 });
}

function initiation(seed: number): Uint8Array {
  return encodeInitiation({
    senderIndex: seed,
    ephemeral: filler(32, seed),
    encryptedStatic: filler(48, seed + 1),
    encryptedTimestamp: filler(28, seed + 2),
  });
}

function response(seed: number): Uint8Array {
  return encodeResponse({
    senderIndex: seed,
    receiverIndex: seed + 1,
    ephemeral: filler(32, seed),
    encryptedNothing: filler(16, seed + 3),
  });
}

describe("Mac1Key", () => {
  const pub = key(1);
  const mac1 = new Mac1Key(pub);

  it("computes mac1 over msg[0..116] of an initiation and msg[0..60] of a response", () => {
    const init = initiation(5);
    expect(hex(mac1.compute(init))).toBe(hex(referenceMac1(pub, init, InitiationOffset.MAC1)));
    const resp = response(6);
    expect(hex(mac1.compute(resp))).toBe(hex(referenceMac1(pub, resp, ResponseOffset.MAC1)));
    expect(hex(mac1KeyFor(pub))).toBe(
      hex(nobleBlake2s(Uint8Array.of(...new TextEncoder().encode("mac1----"), ...pub))),
    );
  });

  it("verifies a signed message and rejects any flipped bit before mac2", () => {
    for (const msg of [initiation(9), response(10)]) {
      const macEnd = msg.length - 16;
      mac1.sign(msg);
      expect(mac1.verify(msg)).toBe(true);
      for (let i = 0; i < macEnd; i++) {
        const bad = msg.slice();
        bad[i]! ^= 0x80;
        expect(mac1.verify(bad), `byte ${i}`).toBe(false);
      }
      // mac2 is not covered by mac1.
      const mac2Changed = msg.slice();
      mac2Changed[msg.length - 1]! ^= 1;
      expect(mac1.verify(mac2Changed)).toBe(true);
    }
  });

  it("rejects a mac1 made with another key, and messages that carry no mac1", () => {
    const msg = new Mac1Key(key(2)).sign(initiation(3));
    expect(mac1.verify(msg)).toBe(false);
    expect(mac1.verify(encodeCookieReply({ receiverIndex: 1 }))).toBe(false);
    expect(mac1.verify(encodeTransport(1, 0n, new Uint8Array(16)))).toBe(false);
    expect(mac1.verify(mac1.sign(initiation(3)).subarray(0, 147))).toBe(false);
    expect(() => mac1.compute(encodeCookieReply({ receiverIndex: 1 }))).toThrow(MessageFormatError);
  });

  it("only accepts 32-byte public keys", () => {
    expect(() => new Mac1Key(new Uint8Array(31))).toThrow(MessageFormatError);
  });
});

describe("mac2", () => {
  const cookie = filler(16, 77);

  it("is keyed BLAKE2s-128 with the cookie over msg[0..offset of mac2]", () => {
    for (const [msg, offset] of [
      [initiation(1), InitiationOffset.MAC2],
      [response(2), ResponseOffset.MAC2],
    ] as const) {
      const want = nobleBlake2s(msg.subarray(0, offset), { key: cookie, dkLen: 16 });
      expect(hex(computeMac2(cookie, msg))).toBe(hex(want));
      expect(verifyMac2(cookie, msg)).toBe(false);
      msg.set(want, offset);
      expect(verifyMac2(cookie, msg)).toBe(true);
      expect(verifyMac2(filler(16, 78), msg)).toBe(false);
      msg[offset - 1]! ^= 1; // mac1 is covered by mac2
      expect(verifyMac2(cookie, msg)).toBe(false);
    }
  });

  it("needs a 16-byte cookie and a handshake message", () => {
    expect(() => computeMac2(new Uint8Array(15), initiation(1))).toThrow(MessageFormatError);
    expect(() => computeMac2(cookie, encodeCookieReply({ receiverIndex: 1 }))).toThrow(MessageFormatError);
    expect(verifyMac2(cookie, encodeTransport(1, 0n, new Uint8Array(16)))).toBe(false);
  });
});
