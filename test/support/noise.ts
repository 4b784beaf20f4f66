// WireGuard's Noise_IKpsk2 handshake (WireGuard paper, section 5.4.2), built on node:crypto for X25519
// and ChaCha20-Poly1305 and on @noble/hashes for HASH, HMAC and KDF. Only tests, benchmarks and the
// fixture capture use it: they build initiations and responses, decrypt an initiator's static key, and
// talk to real wireguard-go with the initiator and responder halves.

import {
  createCipheriv,
  createDecipheriv,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  type KeyObject,
} from "node:crypto";
import { blake2s } from "@noble/hashes/blake2.js";
import { hkdf } from "@noble/hashes/hkdf.js";
import { checkKey } from "../../src/wireguard/keys.js";
import { Mac1Key } from "../../src/wireguard/mac1.js";
import {
  AEAD_TAG_SIZE,
  encodeInitiation,
  encodeResponse,
  InitiationOffset,
  KEY_SIZE,
  MessageType,
  messageType,
  ResponseOffset,
  readU32LE,
  TAI64N_SIZE,
} from "../../src/wireguard/messages.js";

export { decodeKey, encodeKey } from "../../src/wireguard/keys.js";

/** WireGuard's HASH: BLAKE2s-256 of the concatenation of `parts`. */
export function hash(...parts: Uint8Array[]): Uint8Array {
  const h = blake2s.create();
  for (const part of parts) h.update(part);
  return h.digest();
}

/**
 * WireGuard's KDF_n: T0 = HMAC(C, input), T1 = HMAC(T0, 0x1), Ti = HMAC(T0, T(i-1) || i), which is
 * HKDF-BLAKE2s with C as salt and no info. Returns [T1 .. Tn].
 */
export function kdf(chainingKey: Uint8Array, input: Uint8Array, n: 1 | 2 | 3): Uint8Array[] {
  const okm = hkdf(blake2s, input, chainingKey, undefined, n * KEY_SIZE);
  return Array.from({ length: n }, (_, i) => okm.slice(i * KEY_SIZE, (i + 1) * KEY_SIZE));
}

const text = new TextEncoder();
export const CONSTRUCTION = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
export const IDENTIFIER = "WireGuard v1 zx2c4 Jason@zx2c4.com";
/** C0 = HASH(CONSTRUCTION); H0 = HASH(C0 || IDENTIFIER). */
const INITIAL_CHAINING_KEY = hash(text.encode(CONSTRUCTION));
const INITIAL_HASH = hash(INITIAL_CHAINING_KEY, text.encode(IDENTIFIER));
const ZERO_KEY = new Uint8Array(KEY_SIZE);
const EMPTY = new Uint8Array(0);

// DER wrappers around raw X25519 keys (RFC 8410), the one raw-key import node:crypto offers on Node 20.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

function privateKeyObject(raw: Uint8Array): KeyObject {
  checkKey(raw, "private key");
  return createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: "der", type: "pkcs8" });
}

function publicKeyObject(raw: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: "der", type: "spki" });
}

function rawPublicKey(key: KeyObject): Uint8Array {
  const der = createPublicKey(key).export({ format: "der", type: "spki" });
  return new Uint8Array(der.subarray(der.length - KEY_SIZE));
}

/** The X25519 public key of a WireGuard private key (what `wg pubkey` prints, as bytes). */
export function publicKeyFromPrivate(privateKey: Uint8Array): Uint8Array {
  return rawPublicKey(privateKeyObject(privateKey));
}

/** A fresh X25519 key pair as raw 32-byte keys. */
export function generateKeyPair(): { privateKey: Uint8Array; publicKey: Uint8Array } {
  const { privateKey } = generateKeyPairSync("x25519");
  const der = privateKey.export({ format: "der", type: "pkcs8" });
  return {
    privateKey: new Uint8Array(der.subarray(der.length - KEY_SIZE)),
    publicKey: rawPublicKey(privateKey),
  };
}

/** X25519, or null when the peer's point is invalid or of low order (an all-zero shared secret). */
function dh(privateKey: KeyObject, publicKey: Uint8Array): Uint8Array | null {
  try {
    const shared = new Uint8Array(diffieHellman({ privateKey, publicKey: publicKeyObject(publicKey) }));
    return shared.some((b) => b !== 0) ? shared : null;
  } catch {
    return null;
  }
}

function nonce(counter: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32LE(counter, 4);
  return n;
}

function aeadEncrypt(key: Uint8Array, counter: number, plaintext: Uint8Array, aad: Uint8Array): Uint8Array {
  const cipher = createCipheriv("chacha20-poly1305", key, nonce(counter), { authTagLength: AEAD_TAG_SIZE });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return new Uint8Array(Buffer.concat([body, cipher.getAuthTag()]));
}

function aeadDecrypt(
  key: Uint8Array,
  counter: number,
  sealed: Uint8Array,
  aad: Uint8Array,
): Uint8Array | null {
  const bodyLength = sealed.length - AEAD_TAG_SIZE;
  const decipher = createDecipheriv("chacha20-poly1305", key, nonce(counter), {
    authTagLength: AEAD_TAG_SIZE,
  });
  decipher.setAAD(aad, { plaintextLength: bodyLength });
  decipher.setAuthTag(sealed.subarray(bodyLength));
  try {
    const body = decipher.update(sealed.subarray(0, bodyLength));
    decipher.final();
    return new Uint8Array(body);
  } catch {
    return null;
  }
}

/** TAI64N as WireGuard sends it: 8 bytes big-endian 2^62 + 10 + seconds, 4 bytes nanoseconds. */
export function tai64n(date: Date = new Date()): Uint8Array {
  const ms = date.getTime();
  const seconds = Math.floor(ms / 1000);
  const out = Buffer.alloc(TAI64N_SIZE);
  out.writeBigUInt64BE(0x400000000000000an + BigInt(seconds), 0);
  out.writeUInt32BE((ms - seconds * 1000) * 1_000_000, 8);
  return new Uint8Array(out);
}

/** A local private key with what every initiation it receives shares, cached for repeated calls. */
interface LocalKey {
  raw: Uint8Array;
  object: KeyObject;
  publicKey: Uint8Array;
  /** H after mixing in the responder's static key. */
  hash: Uint8Array;
}

let lastLocalKey: LocalKey | null = null;

function localKey(raw: Uint8Array): LocalKey {
  if (lastLocalKey && Buffer.compare(lastLocalKey.raw, raw) === 0) return lastLocalKey;
  const object = privateKeyObject(raw);
  const publicKey = rawPublicKey(object);
  lastLocalKey = { raw: raw.slice(), object, publicKey, hash: hash(INITIAL_HASH, publicKey) };
  return lastLocalKey;
}

/** Responder state after consuming an initiation; what a response is built from. */
interface ResponderState {
  initiatorStatic: Uint8Array;
  initiatorEphemeral: Uint8Array;
  initiatorIndex: number;
  timestamp: Uint8Array;
  chainingKey: Uint8Array;
  hash: Uint8Array;
}

/** The first half of consuming an initiation: up to and including the encrypted static key. */
function openStatic(local: LocalKey, msg: Uint8Array) {
  if (messageType(msg) !== MessageType.Initiation) return null;
  const ephemeral = msg.subarray(InitiationOffset.EPHEMERAL, InitiationOffset.EPHEMERAL + KEY_SIZE);
  const sealedStatic = msg.subarray(
    InitiationOffset.STATIC,
    InitiationOffset.STATIC + InitiationOffset.STATIC_SIZE,
  );
  const [ck0] = kdf(INITIAL_CHAINING_KEY, ephemeral, 1) as [Uint8Array];
  const h = hash(local.hash, ephemeral);
  const es = dh(local.object, ephemeral);
  if (!es) return null;
  const [chainingKey, key] = kdf(ck0, es, 2) as [Uint8Array, Uint8Array];
  const initiatorStatic = aeadDecrypt(key, 0, sealedStatic, h);
  if (!initiatorStatic) return null;
  return { ephemeral, initiatorStatic, chainingKey, hash: hash(h, sealedStatic) };
}

/** The whole initiation as a responder consumes it, or null when any part fails. */
function consumeInitiation(localPrivateKey: Uint8Array, msg: Uint8Array): ResponderState | null {
  const local = localKey(localPrivateKey);
  const opened = openStatic(local, msg);
  if (!opened) return null;
  const ss = dh(local.object, opened.initiatorStatic);
  if (!ss) return null;
  const [chainingKey, key] = kdf(opened.chainingKey, ss, 2) as [Uint8Array, Uint8Array];
  const sealedTimestamp = msg.subarray(
    InitiationOffset.TIMESTAMP,
    InitiationOffset.TIMESTAMP + InitiationOffset.TIMESTAMP_SIZE,
  );
  const timestamp = aeadDecrypt(key, 0, sealedTimestamp, opened.hash);
  if (!timestamp) return null;
  return {
    initiatorStatic: opened.initiatorStatic,
    initiatorEphemeral: opened.ephemeral.slice(),
    initiatorIndex: readU32LE(msg, InitiationOffset.SENDER),
    timestamp,
    chainingKey,
    hash: hash(opened.hash, sealedTimestamp),
  };
}

/**
 * The initiator's static public key from a handshake initiation sent to the holder of
 * `localPrivateKey`, or null when it is not an initiation or does not decrypt with that key. This does
 * not check mac1, the timestamp, or whether the key is an authorised peer: the caller must.
 */
export function decryptInitiatorStatic(
  localPrivateKey: Uint8Array,
  initiation: Uint8Array,
): Uint8Array | null {
  return openStatic(localKey(localPrivateKey), initiation)?.initiatorStatic ?? null;
}

/** Like decryptInitiatorStatic, and also decrypts the TAI64N timestamp (which proves the static key). */
export function decryptInitiation(
  localPrivateKey: Uint8Array,
  initiation: Uint8Array,
): { initiatorStatic: Uint8Array; timestamp: Uint8Array; senderIndex: number } | null {
  const state = consumeInitiation(localPrivateKey, initiation);
  if (!state) return null;
  return {
    initiatorStatic: state.initiatorStatic,
    timestamp: state.timestamp,
    senderIndex: state.initiatorIndex,
  };
}

export interface InitiationOptions {
  initiatorPrivateKey: Uint8Array;
  responderPublicKey: Uint8Array;
  senderIndex: number;
  /** TAI64N (12 bytes) or a time; default now. WireGuard drops initiations not newer than the last. */
  timestamp?: Uint8Array | Date;
  /** For reproducible tests; default a fresh random key. */
  ephemeralPrivateKey?: Uint8Array;
}

/** What an initiator keeps to check the response. */
export interface InitiatorState {
  readonly initiatorPrivateKey: Uint8Array;
  readonly initiatorPublicKey: Uint8Array;
  readonly ephemeralPrivateKey: Uint8Array;
  readonly senderIndex: number;
  readonly chainingKey: Uint8Array;
  readonly hash: Uint8Array;
}

/** Builds a valid initiation (mac1 set, mac2 zero) and returns it with the initiator's state. */
export function initiateHandshake(opts: InitiationOptions): { message: Uint8Array; state: InitiatorState } {
  checkKey(opts.responderPublicKey, "public key");
  const staticKey = privateKeyObject(opts.initiatorPrivateKey);
  const initiatorPublicKey = rawPublicKey(staticKey);
  const ephemeralPrivateKey = opts.ephemeralPrivateKey ?? generateKeyPair().privateKey;
  const ephemeralKey = privateKeyObject(ephemeralPrivateKey);
  const ephemeral = rawPublicKey(ephemeralKey);
  const timestamp = opts.timestamp instanceof Uint8Array ? opts.timestamp : tai64n(opts.timestamp);
  if (timestamp.length !== TAI64N_SIZE) throw new RangeError("a TAI64N timestamp is 12 bytes");

  // Names follow the paper: C (chaining key), H (hash), k (AEAD key); the responder mirrors this.
  let ck: Uint8Array;
  let key: Uint8Array;
  let h = hash(INITIAL_HASH, opts.responderPublicKey);
  [ck] = kdf(INITIAL_CHAINING_KEY, ephemeral, 1) as [Uint8Array];
  h = hash(h, ephemeral);
  const es = dh(ephemeralKey, opts.responderPublicKey);
  if (!es) throw new RangeError("responder public key is not a usable X25519 point");
  [ck, key] = kdf(ck, es, 2) as [Uint8Array, Uint8Array];
  const encryptedStatic = aeadEncrypt(key, 0, initiatorPublicKey, h);
  h = hash(h, encryptedStatic);
  const ss = dh(staticKey, opts.responderPublicKey);
  if (!ss) throw new RangeError("responder public key is not a usable X25519 point");
  [ck, key] = kdf(ck, ss, 2) as [Uint8Array, Uint8Array];
  const encryptedTimestamp = aeadEncrypt(key, 0, timestamp, h);
  h = hash(h, encryptedTimestamp);

  const message = encodeInitiation({
    senderIndex: opts.senderIndex,
    ephemeral,
    encryptedStatic,
    encryptedTimestamp,
  });
  new Mac1Key(opts.responderPublicKey).sign(message);
  return {
    message,
    state: {
      initiatorPrivateKey: opts.initiatorPrivateKey.slice(),
      initiatorPublicKey,
      ephemeralPrivateKey: ephemeralPrivateKey.slice(),
      senderIndex: opts.senderIndex,
      chainingKey: ck,
      hash: h,
    },
  };
}

/** A valid handshake initiation that real WireGuard accepts (mac1 set, mac2 zero). */
export function buildInitiation(opts: InitiationOptions): Uint8Array {
  return initiateHandshake(opts).message;
}

/** The response part shared by both sides: C and H after the responder ephemeral, ee, se and psk. */
function responseKeys(
  chainingKey: Uint8Array,
  h: Uint8Array,
  responderEphemeral: Uint8Array,
  ee: Uint8Array,
  se: Uint8Array,
  presharedKey: Uint8Array,
): { key: Uint8Array; hash: Uint8Array } {
  let [ck] = kdf(chainingKey, responderEphemeral, 1) as [Uint8Array];
  h = hash(h, responderEphemeral);
  [ck] = kdf(ck, ee, 1) as [Uint8Array];
  [ck] = kdf(ck, se, 1) as [Uint8Array];
  const [, tau, key] = kdf(ck, presharedKey, 3) as [Uint8Array, Uint8Array, Uint8Array];
  return { key, hash: hash(h, tau) };
}

export interface ResponseOptions {
  responderPrivateKey: Uint8Array;
  /** The initiation being answered; it must decrypt with responderPrivateKey. */
  initiation: Uint8Array;
  senderIndex: number;
  presharedKey?: Uint8Array;
  ephemeralPrivateKey?: Uint8Array;
}

/**
 * A valid handshake response to `initiation` (mac1 keyed with the initiator's key, mac2 zero), which
 * the initiator accepts. Throws RangeError when the initiation does not decrypt with the key.
 */
export function buildResponse(opts: ResponseOptions): Uint8Array {
  const state = consumeInitiation(opts.responderPrivateKey, opts.initiation);
  if (!state) throw new RangeError("initiation does not decrypt with this key");
  const psk = opts.presharedKey ?? ZERO_KEY;
  checkKey(psk, "preshared key");
  const ephemeralPrivateKey = opts.ephemeralPrivateKey ?? generateKeyPair().privateKey;
  const ephemeralKey = privateKeyObject(ephemeralPrivateKey);
  const ephemeral = rawPublicKey(ephemeralKey);
  const ee = dh(ephemeralKey, state.initiatorEphemeral);
  const se = dh(ephemeralKey, state.initiatorStatic);
  if (!ee || !se) throw new RangeError("initiator keys are not usable X25519 points");
  const { key, hash: h } = responseKeys(state.chainingKey, state.hash, ephemeral, ee, se, psk);
  const encryptedNothing = aeadEncrypt(key, 0, EMPTY, h);
  const message = encodeResponse({
    senderIndex: opts.senderIndex,
    receiverIndex: state.initiatorIndex,
    ephemeral,
    encryptedNothing,
  });
  new Mac1Key(state.initiatorStatic).sign(message);
  return message;
}

/**
 * True when `response` answers the initiation `state` was made with: right receiver index, mac1 keyed
 * with the initiator's key, and an empty payload that authenticates (so the responder held its key).
 */
export function openResponse(state: InitiatorState, response: Uint8Array, presharedKey = ZERO_KEY): boolean {
  if (messageType(response) !== MessageType.Response) return false;
  if (readU32LE(response, ResponseOffset.RECEIVER) !== state.senderIndex) return false;
  if (!new Mac1Key(state.initiatorPublicKey).verify(response)) return false;
  const ephemeral = response.subarray(ResponseOffset.EPHEMERAL, ResponseOffset.EPHEMERAL + KEY_SIZE);
  const ee = dh(privateKeyObject(state.ephemeralPrivateKey), ephemeral);
  const se = dh(privateKeyObject(state.initiatorPrivateKey), ephemeral);
  if (!ee || !se) return false;
  const { key, hash: h } = responseKeys(state.chainingKey, state.hash, ephemeral, ee, se, presharedKey);
  const sealed = response.subarray(ResponseOffset.EMPTY, ResponseOffset.EMPTY + ResponseOffset.EMPTY_SIZE);
  return aeadDecrypt(key, 0, sealed, h) !== null;
}
