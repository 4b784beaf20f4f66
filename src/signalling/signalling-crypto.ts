/**
 * Cryptography of the introduction protocol: X25519 (node:crypto), the authentication proof,
 * envelope key derivation and XChaCha20-Poly1305.
 *
 * XChaCha20-Poly1305 is HChaCha20 (from @noble/ciphers) to derive a subkey, then node's native
 * ChaCha20-Poly1305 (IETF, 12-byte nonce = 4 zero bytes || last 8 nonce bytes). That is exactly
 * draft-irtf-cfrg-xchacha; it is checked against @noble's own xchacha20poly1305 in the unit tests and
 * is 1.4x (300 B) to 6x (16 KB) faster than the pure-JS implementation.
 */

import {
  createCipheriv,
  createDecipheriv,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  type KeyObject,
  timingSafeEqual,
} from "node:crypto";
import { hchacha } from "@noble/ciphers/chacha.js";
import { TunnelboreError } from "../errors.js";

/** A key was not usable: wrong length, bad encoding, or a low-order point. */
export class IntroKeyError extends TunnelboreError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super("intro-bad-key", message, context, options);
  }
}

const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");

const AUTH_LABEL = Buffer.from("tunnelbore intro auth v1");
const ENVELOPE_LABEL = Buffer.from("tunnelbore envelope v1");

export function decodeKey32(base64: string, what: string): Buffer {
  const bytes = Buffer.from(base64, "base64");
  if (bytes.length !== 32 || bytes.toString("base64") !== base64) {
    throw new IntroKeyError(`${what} is not the base64 of 32 bytes`, { length: bytes.length });
  }
  return bytes;
}

export function x25519PrivateKeyObject(privateKey: Uint8Array): KeyObject {
  if (privateKey.length !== 32) {
    throw new IntroKeyError("an X25519 private key has 32 bytes", { length: privateKey.length });
  }
  return createPrivateKey({
    key: Buffer.concat([PKCS8_X25519_PREFIX, privateKey]),
    format: "der",
    type: "pkcs8",
  });
}

export function x25519PublicKeyObject(publicKey: Uint8Array): KeyObject {
  if (publicKey.length !== 32) {
    throw new IntroKeyError("an X25519 public key has 32 bytes", { length: publicKey.length });
  }
  // JWK import is ~8x faster than SPKI DER in OpenSSL 3 (13 us against 110 us): it is per DH.
  return createPublicKey({
    key: { kty: "OKP", crv: "X25519", x: Buffer.from(publicKey).toString("base64url") },
    format: "jwk",
  });
}

/** An X25519 SubjectPublicKeyInfo in DER: this prefix, then the 32-byte key. */
const SPKI_X25519_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

/**
 * The raw 32 bytes of an X25519 key's public half. Exported as DER, not JWK: Node 20 writes a JWK while
 * holding the key's mutex, and a garbage collection then (it allocates the JWK's strings) that finalizes
 * the generateKeyPairSync job the key came from locks the same mutex: the process hangs for good, with
 * no CPU used (issue 15: a benchmark process of 11,800 clients, and an intro-server node was as exposed,
 * once per connection; gdb: ExportJWKEdKey, GC, ~KeyGenJob, a mutex its own thread holds). A plain
 * loop of generateKeyPairSync and JWK export hung within 5,000 pairs here.
 */
export function rawPublicKey(key: KeyObject): Buffer {
  const publicKey = key.type === "public" ? key : createPublicKey(key);
  const der = publicKey.export({ format: "der", type: "spki" });
  if (
    der.length !== SPKI_X25519_PREFIX.length + 32 ||
    !der.subarray(0, SPKI_X25519_PREFIX.length).equals(SPKI_X25519_PREFIX)
  ) {
    throw new IntroKeyError("not an X25519 public key", { type: publicKey.asymmetricKeyType });
  }
  return der.subarray(SPKI_X25519_PREFIX.length);
}

/** The WireGuard public key (base64) of a raw private key. */
export function publicKeyOf(privateKey: Uint8Array): string {
  return rawPublicKey(x25519PrivateKeyObject(privateKey)).toString("base64");
}

export interface X25519KeyPair {
  privateKey: KeyObject;
  publicKey: Buffer;
}

/**
 * A fresh key pair (one per connection at the introduction server). The public key is written as a
 * JWK by the generation job itself, while that job is alive: a JWK export afterwards can hang the
 * process for good (see rawPublicKey), and a DER export costs 2-3x the generation.
 */
export function generateX25519KeyPair(): X25519KeyPair {
  // Node's typings lack the JWK form of publicKeyEncoding: the public key is a JsonWebKey.
  const pair = generateKeyPairSync("x25519", { publicKeyEncoding: { format: "jwk" } }) as unknown as {
    privateKey: KeyObject;
    publicKey: { x?: string };
  };
  return { privateKey: pair.privateKey, publicKey: Buffer.from(pair.publicKey.x ?? "", "base64url") };
}

/** X25519; throws IntroKeyError for a low-order peer key (OpenSSL refuses the all-zero result). */
export function x25519(privateKey: KeyObject, peerPublicKey: Uint8Array): Buffer {
  try {
    return diffieHellman({ privateKey, publicKey: x25519PublicKeyObject(peerPublicKey) });
  } catch (error) {
    if (error instanceof IntroKeyError) throw error;
    throw new IntroKeyError("X25519 with this public key failed (low-order point?)", {}, { cause: error });
  }
}

/**
 * The client's proof that it holds the private key of `clientPublicKey`:
 * key = HKDF-SHA256(ikm = X25519(client static, server ephemeral), salt = nonce, info = label),
 * proof = HMAC-SHA256(key, label || serverEphemeral || nonce || clientPublicKey).
 * Both sides compute it from their own half of the DH; the nonce and ephemeral key make it
 * useless on any other connection.
 */
export function authProof(
  sharedSecret: Uint8Array,
  serverEphemeralKey: Uint8Array,
  nonce: Uint8Array,
  clientPublicKey: Uint8Array,
): Buffer {
  const macKey = Buffer.from(hkdfSync("sha256", sharedSecret, nonce, AUTH_LABEL, 32));
  return createHmac("sha256", macKey)
    .update(AUTH_LABEL)
    .update(serverEphemeralKey)
    .update(nonce)
    .update(clientPublicKey)
    .digest();
}

export function proofsEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Key for envelopes from `sender` to `recipient`: HKDF-SHA256 over X25519(own static, peer static),
 * salt = both public keys in sorted order, info = label || sender || recipient. One key per direction
 * so that an envelope cannot be reflected back to its sender.
 */
export function envelopeKey(sharedSecret: Uint8Array, sender: Uint8Array, recipient: Uint8Array): Buffer {
  const [low, high] =
    Buffer.compare(Buffer.from(sender), Buffer.from(recipient)) <= 0
      ? [sender, recipient]
      : [recipient, sender];
  const salt = Buffer.concat([low, high]);
  const info = Buffer.concat([ENVELOPE_LABEL, sender, recipient]);
  return Buffer.from(hkdfSync("sha256", sharedSecret, salt, info, 32));
}

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);
const TAG_BYTES = 16;

function littleEndianWords(bytes: Uint8Array, count: number): Uint32Array {
  const words = new Uint32Array(count);
  const view = new DataView(bytes.buffer, bytes.byteOffset, count * 4);
  for (let i = 0; i < count; i++) words[i] = view.getUint32(i * 4, true);
  return words;
}

/** HChaCha20(key, nonce[0..16]) and the 12-byte ChaCha20-Poly1305 nonce for XChaCha20-Poly1305. */
function xchachaSubkey(key: Uint8Array, nonce: Uint8Array): { subkey: Buffer; iv: Buffer } {
  if (key.length !== 32 || nonce.length !== 24) {
    throw new IntroKeyError("XChaCha20-Poly1305 takes a 32-byte key and a 24-byte nonce");
  }
  const out = new Uint32Array(8);
  hchacha(SIGMA, littleEndianWords(key, 8), littleEndianWords(nonce, 4), out);
  const subkey = Buffer.alloc(32);
  for (let i = 0; i < 8; i++) subkey.writeUInt32LE(out[i]!, i * 4);
  const iv = Buffer.alloc(12);
  iv.set(nonce.subarray(16, 24), 4);
  return { subkey, iv };
}

export function xchachaSeal(
  key: Uint8Array,
  nonce: Uint8Array,
  plaintext: Uint8Array,
  aad: Uint8Array,
): Buffer {
  const { subkey, iv } = xchachaSubkey(key, nonce);
  const cipher = createCipheriv("chacha20-poly1305", subkey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad, { plaintextLength: plaintext.length });
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/** Returns undefined when the ciphertext does not authenticate. */
export function xchachaOpen(
  key: Uint8Array,
  nonce: Uint8Array,
  sealed: Uint8Array,
  aad: Uint8Array,
): Buffer | undefined {
  if (sealed.length < TAG_BYTES) return undefined;
  const { subkey, iv } = xchachaSubkey(key, nonce);
  const decipher = createDecipheriv("chacha20-poly1305", subkey, iv, { authTagLength: TAG_BYTES });
  decipher.setAAD(aad, { plaintextLength: sealed.length - TAG_BYTES });
  decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - TAG_BYTES)), decipher.final()]);
  } catch {
    return undefined;
  }
}
