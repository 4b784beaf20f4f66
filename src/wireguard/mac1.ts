// mac1 and mac2 of WireGuard handshake messages (WireGuard paper, section 5.4.4):
//   mac1 = MAC(HASH("mac1----" || responder public key), msg[0 .. offset of mac1])
//   mac2 = MAC(cookie, msg[0 .. offset of mac2])
// where MAC is keyed BLAKE2s with a 16-byte output. mac1 is keyed with a public key, so it is an
// identifier, not a secret: comparing tags in variable time leaks nothing an observer lacks.
import { Blake2sPrekeyed, blake2s, hash, prekeyState, wordsToBytes } from "./blake2s.js";
import {
  InitiationOffset,
  KEY_SIZE,
  MAC_SIZE,
  MessageFormatError,
  MessageType,
  messageType,
  ResponseOffset,
} from "./messages.js";

const LABEL_MAC1 = new TextEncoder().encode("mac1----");

/** The key mac1 is computed with: HASH("mac1----" || public key). */
export function mac1KeyFor(publicKey: Uint8Array): Uint8Array {
  if (publicKey.length !== KEY_SIZE) {
    throw new MessageFormatError("a WireGuard public key must be 32 bytes", { length: publicKey.length });
  }
  return hash(LABEL_MAC1, publicKey);
}

/** Writes the pre-keyed BLAKE2s state for mac1 under `publicKey` into state[so..so+8]. */
export function prekeyMac1(publicKey: Uint8Array, state: Int32Array, so: number): void {
  prekeyState(mac1KeyFor(publicKey), MAC_SIZE, state, so);
}

/** Offset of mac1 for a well-formed initiation or response, else -1. */
export function mac1Offset(msg: Uint8Array): number {
  const type = messageType(msg);
  if (type === MessageType.Initiation) return InitiationOffset.MAC1;
  if (type === MessageType.Response) return ResponseOffset.MAC1;
  return -1;
}

/** Offset of mac2 for a well-formed initiation or response, else -1. */
export function mac2Offset(msg: Uint8Array): number {
  const type = messageType(msg);
  if (type === MessageType.Initiation) return InitiationOffset.MAC2;
  if (type === MessageType.Response) return ResponseOffset.MAC2;
  return -1;
}

function requireOffset(offset: number, msg: Uint8Array, what: string): number {
  if (offset < 0) {
    throw new MessageFormatError(`${what} exists only on well-formed initiations and responses`, {
      typeByte: msg[0],
      length: msg.length,
    });
  }
  return offset;
}

function tagMatches(words: Int32Array, msg: Uint8Array, offset: number): boolean {
  for (let i = 0; i < 4; i++) {
    const p = offset + 4 * i;
    const expected = msg[p]! | (msg[p + 1]! << 8) | (msg[p + 2]! << 16) | (msg[p + 3]! << 24);
    if (words[i] !== expected) return false;
  }
  return true;
}

/** The words of a mac1 just computed, shared by every Mac1Key (each one computed and read synchronously). */
const macWords = new Int32Array(8);

/** mac1 under one peer's public key, with the key block compressed once at construction. */
export class Mac1Key {
  private readonly mac: Blake2sPrekeyed;

  constructor(peerPublicKey: Uint8Array) {
    this.mac = new Blake2sPrekeyed(mac1KeyFor(peerPublicKey), MAC_SIZE);
  }

  /** True when `msg` is a well-formed initiation or response whose mac1 is keyed with this key. */
  verify(msg: Uint8Array): boolean {
    const offset = mac1Offset(msg);
    if (offset < 0) return false;
    this.mac.macWordsInto(msg, 0, offset, macWords);
    return tagMatches(macWords, msg, offset);
  }

  /** The mac1 `msg` must carry; throws MessageFormatError unless it is an initiation or response. */
  compute(msg: Uint8Array): Uint8Array {
    const offset = requireOffset(mac1Offset(msg), msg, "mac1");
    this.mac.macWordsInto(msg, 0, offset, macWords);
    return wordsToBytes(macWords, MAC_SIZE);
  }

  /** Writes the correct mac1 into `msg` in place and returns it. */
  sign(msg: Uint8Array): Uint8Array {
    const offset = requireOffset(mac1Offset(msg), msg, "mac1");
    msg.set(this.compute(msg), offset);
    return msg;
  }
}

function checkCookie(cookie: Uint8Array): void {
  if (cookie.length !== MAC_SIZE) {
    throw new MessageFormatError("a cookie must be 16 bytes", { length: cookie.length });
  }
}

/** The mac2 `msg` must carry under `cookie` (16 bytes); throws unless msg is an initiation or response. */
export function computeMac2(cookie: Uint8Array, msg: Uint8Array): Uint8Array {
  checkCookie(cookie);
  const offset = requireOffset(mac2Offset(msg), msg, "mac2");
  return blake2s(msg.subarray(0, offset), { key: cookie, outLen: MAC_SIZE });
}

const mac2Out = new Int32Array(8);

/** True when `msg` is a well-formed initiation or response whose mac2 is correct under `cookie`. */
export function verifyMac2(cookie: Uint8Array, msg: Uint8Array): boolean {
  checkCookie(cookie);
  const offset = mac2Offset(msg);
  if (offset < 0) return false;
  // Cookies change every two minutes, so a pre-keyed state would rarely be reused: key it each time.
  new Blake2sPrekeyed(cookie, MAC_SIZE).macWordsInto(msg, 0, offset, mac2Out);
  return tagMatches(mac2Out, msg, offset);
}
