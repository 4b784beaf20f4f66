// WireGuard message codec (wire format from the WireGuard paper, section 5.4). The per-packet helpers
// (messageType, senderIndex, receiverIndex) allocate nothing; the parse/build helpers are for tests
// and tools and return plain objects.
import { TunnelboreError } from "../errors.js";

export const MessageType = { Initiation: 1, Response: 2, CookieReply: 3, Transport: 4 } as const;
export type MessageTypeValue = (typeof MessageType)[keyof typeof MessageType];

export const INITIATION_SIZE = 148;
export const RESPONSE_SIZE = 92;
export const COOKIE_REPLY_SIZE = 64;
/** Header (16) plus the Poly1305 tag of an empty payload (a keepalive). */
export const TRANSPORT_MIN_SIZE = 32;

export const KEY_SIZE = 32;
export const MAC_SIZE = 16;
export const TAI64N_SIZE = 12;
export const AEAD_TAG_SIZE = 16;

/** Every message: type byte, then three reserved zero bytes. */
export const TYPE_OFFSET = 0;
export const HEADER_SIZE = 4;

export const InitiationOffset = {
  SENDER: 4,
  EPHEMERAL: 8,
  /** Encrypted initiator static key: 32 bytes plus a 16-byte tag. */
  STATIC: 40,
  STATIC_SIZE: KEY_SIZE + AEAD_TAG_SIZE,
  /** Encrypted TAI64N timestamp: 12 bytes plus a 16-byte tag. */
  TIMESTAMP: 88,
  TIMESTAMP_SIZE: TAI64N_SIZE + AEAD_TAG_SIZE,
  MAC1: 116,
  MAC2: 132,
} as const;

export const ResponseOffset = {
  SENDER: 4,
  RECEIVER: 8,
  EPHEMERAL: 12,
  /** Encrypted empty payload: just a 16-byte tag. */
  EMPTY: 44,
  EMPTY_SIZE: AEAD_TAG_SIZE,
  MAC1: 60,
  MAC2: 76,
} as const;

export const CookieReplyOffset = {
  RECEIVER: 4,
  NONCE: 8,
  NONCE_SIZE: 24,
  /** Encrypted 16-byte cookie plus a 16-byte tag. */
  COOKIE: 32,
  COOKIE_SIZE: 32,
} as const;

export const TransportOffset = {
  RECEIVER: 4,
  /** 64-bit little-endian nonce counter. */
  COUNTER: 8,
  PAYLOAD: 16,
} as const;

/** A message that is not a well-formed WireGuard message of the expected type and length. */
export class MessageFormatError extends TunnelboreError {
  constructor(message: string, context: Record<string, unknown> = {}) {
    super("bad-message", message, context);
  }
}

/**
 * The message type, or 0 when the datagram is not a well-formed WireGuard message: type 1..4, the
 * three reserved bytes zero, exact length for types 1..3, at least 32 bytes for type 4. Transport
 * length is not required to be a multiple of 16: wireguard-go does not pad beyond the MTU.
 */
export function messageType(buf: Uint8Array): 0 | 1 | 2 | 3 | 4 {
  const len = buf.length;
  if (len < TRANSPORT_MIN_SIZE) return 0;
  if ((buf[1]! | buf[2]! | buf[3]!) !== 0) return 0;
  switch (buf[0]) {
    case 1:
      return len === INITIATION_SIZE ? 1 : 0;
    case 2:
      return len === RESPONSE_SIZE ? 2 : 0;
    case 3:
      return len === COOKIE_REPLY_SIZE ? 3 : 0;
    case 4:
      return 4;
    default:
      return 0;
  }
}

export function readU32LE(buf: Uint8Array, offset: number): number {
  return (buf[offset]! | (buf[offset + 1]! << 8) | (buf[offset + 2]! << 16) | (buf[offset + 3]! << 24)) >>> 0;
}

export function writeU32LE(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = value & 0xff;
  buf[offset + 1] = (value >>> 8) & 0xff;
  buf[offset + 2] = (value >>> 16) & 0xff;
  buf[offset + 3] = (value >>> 24) & 0xff;
}

/** Sender index of an initiation or response (u32 LE at offset 4). Caller checked the type. */
export function senderIndex(buf: Uint8Array): number {
  return readU32LE(buf, 4);
}

/** Receiver index: offset 8 for a response, offset 4 for a cookie reply or transport message. */
export function receiverIndex(buf: Uint8Array): number {
  return readU32LE(buf, buf[0] === MessageType.Response ? ResponseOffset.RECEIVER : 4);
}

export interface InitiationMessage {
  senderIndex: number;
  ephemeral: Uint8Array;
  encryptedStatic: Uint8Array;
  encryptedTimestamp: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface ResponseMessage {
  senderIndex: number;
  receiverIndex: number;
  ephemeral: Uint8Array;
  encryptedNothing: Uint8Array;
  mac1: Uint8Array;
  mac2: Uint8Array;
}

export interface CookieReplyMessage {
  receiverIndex: number;
  nonce: Uint8Array;
  encryptedCookie: Uint8Array;
}

export interface TransportHeader {
  receiverIndex: number;
  counter: bigint;
  /** Encrypted payload including its 16-byte tag. */
  payloadLength: number;
}

function expectType(buf: Uint8Array, type: MessageTypeValue, name: string): void {
  const got = messageType(buf);
  if (got !== type) {
    throw new MessageFormatError(`not a well-formed ${name} message`, {
      expectedType: type,
      typeByte: buf[0],
      length: buf.length,
    });
  }
}

// Copies, so a parsed message stays valid when the datagram buffer is reused.
function slice(buf: Uint8Array, offset: number, size: number): Uint8Array {
  return buf.slice(offset, offset + size);
}

export function parseInitiation(buf: Uint8Array): InitiationMessage {
  expectType(buf, MessageType.Initiation, "handshake initiation");
  return {
    senderIndex: readU32LE(buf, InitiationOffset.SENDER),
    ephemeral: slice(buf, InitiationOffset.EPHEMERAL, KEY_SIZE),
    encryptedStatic: slice(buf, InitiationOffset.STATIC, InitiationOffset.STATIC_SIZE),
    encryptedTimestamp: slice(buf, InitiationOffset.TIMESTAMP, InitiationOffset.TIMESTAMP_SIZE),
    mac1: slice(buf, InitiationOffset.MAC1, MAC_SIZE),
    mac2: slice(buf, InitiationOffset.MAC2, MAC_SIZE),
  };
}

export function parseResponse(buf: Uint8Array): ResponseMessage {
  expectType(buf, MessageType.Response, "handshake response");
  return {
    senderIndex: readU32LE(buf, ResponseOffset.SENDER),
    receiverIndex: readU32LE(buf, ResponseOffset.RECEIVER),
    ephemeral: slice(buf, ResponseOffset.EPHEMERAL, KEY_SIZE),
    encryptedNothing: slice(buf, ResponseOffset.EMPTY, ResponseOffset.EMPTY_SIZE),
    mac1: slice(buf, ResponseOffset.MAC1, MAC_SIZE),
    mac2: slice(buf, ResponseOffset.MAC2, MAC_SIZE),
  };
}

export function parseCookieReply(buf: Uint8Array): CookieReplyMessage {
  expectType(buf, MessageType.CookieReply, "cookie reply");
  return {
    receiverIndex: readU32LE(buf, CookieReplyOffset.RECEIVER),
    nonce: slice(buf, CookieReplyOffset.NONCE, CookieReplyOffset.NONCE_SIZE),
    encryptedCookie: slice(buf, CookieReplyOffset.COOKIE, CookieReplyOffset.COOKIE_SIZE),
  };
}

export function parseTransportHeader(buf: Uint8Array): TransportHeader {
  expectType(buf, MessageType.Transport, "transport");
  const lo = BigInt(readU32LE(buf, TransportOffset.COUNTER));
  const hi = BigInt(readU32LE(buf, TransportOffset.COUNTER + 4));
  return {
    receiverIndex: readU32LE(buf, TransportOffset.RECEIVER),
    counter: (hi << 32n) | lo,
    payloadLength: buf.length - TransportOffset.PAYLOAD,
  };
}

function put(buf: Uint8Array, offset: number, field: Uint8Array | undefined, size: number, name: string) {
  if (field === undefined) return;
  if (field.length !== size) {
    throw new MessageFormatError(`${name} must be ${size} bytes`, { field: name, length: field.length });
  }
  buf.set(field, offset);
}

function checkIndex(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new MessageFormatError(`${name} must be a u32`, { field: name, value });
  }
}

/** Builds an initiation from its fields; missing byte fields are zero. */
export function encodeInitiation(fields: Partial<InitiationMessage> & { senderIndex: number }): Uint8Array {
  checkIndex(fields.senderIndex, "senderIndex");
  const buf = new Uint8Array(INITIATION_SIZE);
  buf[0] = MessageType.Initiation;
  writeU32LE(buf, InitiationOffset.SENDER, fields.senderIndex);
  put(buf, InitiationOffset.EPHEMERAL, fields.ephemeral, KEY_SIZE, "ephemeral");
  put(buf, InitiationOffset.STATIC, fields.encryptedStatic, InitiationOffset.STATIC_SIZE, "encryptedStatic");
  put(
    buf,
    InitiationOffset.TIMESTAMP,
    fields.encryptedTimestamp,
    InitiationOffset.TIMESTAMP_SIZE,
    "encryptedTimestamp",
  );
  put(buf, InitiationOffset.MAC1, fields.mac1, MAC_SIZE, "mac1");
  put(buf, InitiationOffset.MAC2, fields.mac2, MAC_SIZE, "mac2");
  return buf;
}

/** Builds a response from its fields; missing byte fields are zero. */
export function encodeResponse(
  fields: Partial<ResponseMessage> & { senderIndex: number; receiverIndex: number },
): Uint8Array {
  checkIndex(fields.senderIndex, "senderIndex");
  checkIndex(fields.receiverIndex, "receiverIndex");
  const buf = new Uint8Array(RESPONSE_SIZE);
  buf[0] = MessageType.Response;
  writeU32LE(buf, ResponseOffset.SENDER, fields.senderIndex);
  writeU32LE(buf, ResponseOffset.RECEIVER, fields.receiverIndex);
  put(buf, ResponseOffset.EPHEMERAL, fields.ephemeral, KEY_SIZE, "ephemeral");
  put(buf, ResponseOffset.EMPTY, fields.encryptedNothing, ResponseOffset.EMPTY_SIZE, "encryptedNothing");
  put(buf, ResponseOffset.MAC1, fields.mac1, MAC_SIZE, "mac1");
  put(buf, ResponseOffset.MAC2, fields.mac2, MAC_SIZE, "mac2");
  return buf;
}

/** Builds a cookie reply from its fields; missing byte fields are zero. */
export function encodeCookieReply(
  fields: Partial<CookieReplyMessage> & { receiverIndex: number },
): Uint8Array {
  checkIndex(fields.receiverIndex, "receiverIndex");
  const buf = new Uint8Array(COOKIE_REPLY_SIZE);
  buf[0] = MessageType.CookieReply;
  writeU32LE(buf, CookieReplyOffset.RECEIVER, fields.receiverIndex);
  put(buf, CookieReplyOffset.NONCE, fields.nonce, CookieReplyOffset.NONCE_SIZE, "nonce");
  put(
    buf,
    CookieReplyOffset.COOKIE,
    fields.encryptedCookie,
    CookieReplyOffset.COOKIE_SIZE,
    "encryptedCookie",
  );
  return buf;
}

/** Builds a transport message around an already encrypted payload (with its tag, >= 16 bytes). */
export function encodeTransport(
  receiverIndex: number,
  counter: bigint,
  encryptedPayload: Uint8Array,
): Uint8Array {
  checkIndex(receiverIndex, "receiverIndex");
  if (counter < 0n || counter >= 1n << 64n) {
    throw new MessageFormatError("counter must be a u64", { counter: String(counter) });
  }
  if (encryptedPayload.length < AEAD_TAG_SIZE) {
    throw new MessageFormatError("transport payload must hold at least the 16-byte tag", {
      length: encryptedPayload.length,
    });
  }
  const buf = new Uint8Array(TransportOffset.PAYLOAD + encryptedPayload.length);
  buf[0] = MessageType.Transport;
  writeU32LE(buf, TransportOffset.RECEIVER, receiverIndex);
  writeU32LE(buf, TransportOffset.COUNTER, Number(counter & 0xffffffffn));
  writeU32LE(buf, TransportOffset.COUNTER + 4, Number(counter >> 32n));
  buf.set(encryptedPayload, TransportOffset.PAYLOAD);
  return buf;
}
