// Which configured peer a handshake message is for, by trying mac1 under every peer's public key.
// This runs on the catch-all socket for every initiation and response, so the loop is built for speed:
// each key's pre-keyed BLAKE2s state lives in one flat Int32Array, the message is parsed into words
// once per call and shared by all keys, the expected tag is four int32 locals, and nothing allocates.
// An initiation costs two compressions per key, a response one.
import { compress } from "./blake2s.js";
import { prekeyMac1 } from "./mac1.js";
import { InitiationOffset, KEY_SIZE, MessageFormatError, messageType, ResponseOffset } from "./messages.js";

const STATE_WORDS = 8;
const BLOCK = 64;

export class PeerKeyTable<T> {
  private states = new Int32Array(STATE_WORDS * 16);
  private values: T[] = [];
  private keys: string[] = [];
  private readonly slotOf = new Map<string, number>();
  private readonly m = new Int32Array(32);
  private readonly out = new Int32Array(STATE_WORDS);

  get size(): number {
    return this.values.length;
  }

  /** Adds a peer, or replaces the value of a key already present. */
  add(publicKey: Uint8Array, value: T): void {
    const id = keyId(publicKey);
    const existing = this.slotOf.get(id);
    if (existing !== undefined) {
      this.values[existing] = value;
      return;
    }
    const slot = this.values.length;
    if ((slot + 1) * STATE_WORDS > this.states.length) {
      const grown = new Int32Array(this.states.length * 2);
      grown.set(this.states);
      this.states = grown;
    }
    prekeyMac1(publicKey, this.states, slot * STATE_WORDS);
    this.values.push(value);
    this.keys.push(id);
    this.slotOf.set(id, slot);
  }

  /** Removes a peer; false when it was not present. Order of the rest is not kept. */
  remove(publicKey: Uint8Array): boolean {
    const id = keyId(publicKey);
    const slot = this.slotOf.get(id);
    if (slot === undefined) return false;
    const last = this.values.length - 1;
    if (slot !== last) {
      this.states.copyWithin(slot * STATE_WORDS, last * STATE_WORDS, (last + 1) * STATE_WORDS);
      this.values[slot] = this.values[last]!;
      const movedId = this.keys[last]!;
      this.keys[slot] = movedId;
      this.slotOf.set(movedId, slot);
    }
    this.values.pop();
    this.keys.pop();
    this.slotOf.delete(id);
    return true;
  }

  has(publicKey: Uint8Array): boolean {
    return this.slotOf.has(keyId(publicKey));
  }

  /**
   * The value of the peer whose public key mac1 of this initiation or response is keyed with;
   * undefined for any other message, a malformed one, or no match.
   */
  identify(msg: Uint8Array): T | undefined {
    const type = messageType(msg);
    if (type === 1) return this.scan(msg, InitiationOffset.MAC1);
    if (type === 2) return this.scan(msg, ResponseOffset.MAC1);
    return undefined;
  }

  private scan(msg: Uint8Array, macOffset: number): T | undefined {
    const m = this.m;
    const out = this.out;
    const states = this.states;
    const count = this.values.length;
    loadWords(msg, macOffset, m);
    const p = macOffset;
    const t0 = msg[p]! | (msg[p + 1]! << 8) | (msg[p + 2]! << 16) | (msg[p + 3]! << 24);
    const t1 = msg[p + 4]! | (msg[p + 5]! << 8) | (msg[p + 6]! << 16) | (msg[p + 7]! << 24);
    const t2 = msg[p + 8]! | (msg[p + 9]! << 8) | (msg[p + 10]! << 16) | (msg[p + 11]! << 24);
    const t3 = msg[p + 12]! | (msg[p + 13]! << 8) | (msg[p + 14]! << 16) | (msg[p + 15]! << 24);
    // Byte counters include the 64-byte key block that the pre-keyed states already absorbed.
    const total = BLOCK + macOffset;
    if (macOffset > BLOCK) {
      for (let slot = 0, so = 0; slot < count; slot++, so += STATE_WORDS) {
        compress(states, so, m, 0, 2 * BLOCK, 0, false, out, 0);
        compress(out, 0, m, 16, total, 0, true, out, 0);
        if (out[0] === t0 && out[1] === t1 && out[2] === t2 && out[3] === t3) return this.values[slot];
      }
    } else {
      for (let slot = 0, so = 0; slot < count; slot++, so += STATE_WORDS) {
        compress(states, so, m, 0, total, 0, true, out, 0);
        if (out[0] === t0 && out[1] === t1 && out[2] === t2 && out[3] === t3) return this.values[slot];
      }
    }
    return undefined;
  }
}

/** Loads msg[0..len] (len <= 128, a multiple of 4) as little-endian words, zero-padded to 32 words. */
function loadWords(msg: Uint8Array, len: number, m: Int32Array): void {
  let w = 0;
  for (let p = 0; p < len; p += 4, w++) {
    m[w] = msg[p]! | (msg[p + 1]! << 8) | (msg[p + 2]! << 16) | (msg[p + 3]! << 24);
  }
  for (; w < 32; w++) m[w] = 0;
}

function keyId(publicKey: Uint8Array): string {
  if (publicKey.length !== KEY_SIZE) {
    throw new MessageFormatError("a WireGuard public key must be 32 bytes", { length: publicKey.length });
  }
  return Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.length).toString("hex");
}
