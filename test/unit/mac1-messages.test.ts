import { describe, expect, it } from "vitest";
import {
  COOKIE_REPLY_SIZE,
  encodeCookieReply,
  encodeInitiation,
  encodeResponse,
  encodeTransport,
  INITIATION_SIZE,
  InitiationOffset,
  MessageFormatError,
  MessageType,
  messageType,
  parseCookieReply,
  parseInitiation,
  parseResponse,
  parseTransportHeader,
  RESPONSE_SIZE,
  ResponseOffset,
  receiverIndex,
  senderIndex,
  TRANSPORT_MIN_SIZE,
} from "../../src/wireguard/messages.js";

function message(type: number, length: number): Uint8Array {
  const buf = new Uint8Array(length);
  if (length > 0) buf[0] = type;
  for (let i = 4; i < length; i++) buf[i] = (i * 31) & 0xff;
  return buf;
}

const EXACT: Record<number, number> = {
  [MessageType.Initiation]: INITIATION_SIZE,
  [MessageType.Response]: RESPONSE_SIZE,
  [MessageType.CookieReply]: COOKIE_REPLY_SIZE,
};

describe("messageType", () => {
  it("recognises each type at its size", () => {
    expect(messageType(message(1, 148))).toBe(1);
    expect(messageType(message(2, 92))).toBe(2);
    expect(messageType(message(3, 64))).toBe(3);
    expect(messageType(message(4, 32))).toBe(4);
    expect(messageType(message(4, 1452))).toBe(4);
  });

  it("rejects types 1..3 at every other length from 0 to 300", () => {
    for (const type of [1, 2, 3]) {
      for (let len = 0; len <= 300; len++) {
        expect(messageType(message(type, len)), `type ${type} length ${len}`).toBe(
          len === EXACT[type] ? type : 0,
        );
      }
    }
  });

  it("accepts transport from 32 bytes on, multiple of 16 or not, and rejects shorter", () => {
    for (let len = 0; len <= 200; len++) {
      expect(messageType(message(4, len)), `length ${len}`).toBe(len >= TRANSPORT_MIN_SIZE ? 4 : 0);
    }
  });

  it("rejects every type byte other than 1..4", () => {
    for (let type = 0; type < 256; type++) {
      if (type >= 1 && type <= 4) continue;
      for (const len of [32, 64, 92, 148]) expect(messageType(message(type, len))).toBe(0);
    }
  });

  it("rejects a non-zero bit in any reserved byte, for every type", () => {
    for (const type of [1, 2, 3, 4]) {
      const len = EXACT[type] ?? 48;
      for (const at of [1, 2, 3]) {
        for (let bit = 0; bit < 8; bit++) {
          const buf = message(type, len);
          buf[at] = 1 << bit;
          expect(messageType(buf), `type ${type} byte ${at} bit ${bit}`).toBe(0);
        }
      }
    }
  });

  it("reads type from the view, not the underlying buffer", () => {
    const backing = new Uint8Array(200);
    backing[10] = 2;
    expect(messageType(backing.subarray(10, 10 + RESPONSE_SIZE))).toBe(2);
    expect(messageType(backing.subarray(10, 10 + RESPONSE_SIZE + 1))).toBe(0);
  });
});

describe("indices", () => {
  it("reads sender and receiver indices as u32 little endian at their offsets", () => {
    const init = encodeInitiation({ senderIndex: 0xfedcba98 });
    expect(senderIndex(init)).toBe(0xfedcba98);
    const resp = encodeResponse({ senderIndex: 0x01020304, receiverIndex: 0xa0b0c0d0 });
    expect([...resp.subarray(4, 12)]).toEqual([4, 3, 2, 1, 0xd0, 0xc0, 0xb0, 0xa0]);
    expect(senderIndex(resp)).toBe(0x01020304);
    expect(receiverIndex(resp)).toBe(0xa0b0c0d0);
    expect(receiverIndex(encodeCookieReply({ receiverIndex: 0x80000001 }))).toBe(0x80000001);
    expect(receiverIndex(encodeTransport(7, 0n, new Uint8Array(16)))).toBe(7);
  });
});

describe("parse and encode", () => {
  const bytes = (n: number, seed: number) => new Uint8Array(n).map((_, i) => (i * 13 + seed) & 0xff);

  it("round-trips an initiation and copies its fields", () => {
    const fields = {
      senderIndex: 99,
      ephemeral: bytes(32, 1),
      encryptedStatic: bytes(48, 2),
      encryptedTimestamp: bytes(28, 3),
      mac1: bytes(16, 4),
      mac2: bytes(16, 5),
    };
    const buf = encodeInitiation(fields);
    expect(buf.length).toBe(INITIATION_SIZE);
    expect([...buf.subarray(InitiationOffset.MAC1, InitiationOffset.MAC1 + 16)]).toEqual([...fields.mac1]);
    const parsed = parseInitiation(buf);
    expect(parsed).toEqual(fields);
    buf.fill(0xff);
    expect(parsed.ephemeral).toEqual(fields.ephemeral);
  });

  it("round-trips a response, a cookie reply and a transport header", () => {
    const resp = {
      senderIndex: 1,
      receiverIndex: 2,
      ephemeral: bytes(32, 6),
      encryptedNothing: bytes(16, 7),
      mac1: bytes(16, 8),
      mac2: bytes(16, 9),
    };
    const respBuf = encodeResponse(resp);
    expect(respBuf[ResponseOffset.MAC2]).toBe(resp.mac2[0]);
    expect(parseResponse(respBuf)).toEqual(resp);
    const cookie = { receiverIndex: 3, nonce: bytes(24, 10), encryptedCookie: bytes(32, 11) };
    expect(parseCookieReply(encodeCookieReply(cookie))).toEqual(cookie);
    const counter = 0x0123456789abcdefn;
    expect(parseTransportHeader(encodeTransport(0xffffffff, counter, bytes(21, 12)))).toEqual({
      receiverIndex: 0xffffffff,
      counter,
      payloadLength: 21,
    });
  });

  it("throws MessageFormatError for the wrong type, length or reserved bytes", () => {
    const init = encodeInitiation({ senderIndex: 1 });
    expect(() => parseResponse(init)).toThrow(MessageFormatError);
    expect(() => parseInitiation(init.subarray(0, 147))).toThrow(MessageFormatError);
    const reserved = init.slice();
    reserved[2] = 1;
    expect(() => parseInitiation(reserved)).toThrow(/not a well-formed handshake initiation/);
    expect(() => parseCookieReply(new Uint8Array(64))).toThrow(MessageFormatError);
    expect(() => parseTransportHeader(message(4, 31))).toThrow(MessageFormatError);
    let caught: unknown;
    try {
      parseInitiation(new Uint8Array(3));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(MessageFormatError);
    expect((caught as MessageFormatError).code).toBe("bad-message");
  });

  it("rejects fields of the wrong size and out-of-range indices when encoding", () => {
    expect(() => encodeInitiation({ senderIndex: 1, ephemeral: new Uint8Array(31) })).toThrow(
      MessageFormatError,
    );
    expect(() => encodeInitiation({ senderIndex: -1 })).toThrow(MessageFormatError);
    expect(() => encodeResponse({ senderIndex: 1, receiverIndex: 2 ** 32 })).toThrow(MessageFormatError);
    expect(() => encodeTransport(1, 1n << 64n, new Uint8Array(16))).toThrow(MessageFormatError);
    expect(() => encodeTransport(1, 0n, new Uint8Array(15))).toThrow(MessageFormatError);
  });
});
