/**
 * The one use the introduction protocol makes of the WireGuard private key: X25519 with a given
 * public key (the server's ephemeral key for authentication, a peer's static key for envelopes).
 * Behind this interface the key may live in this process (LocalKeyAgreement) or in the privileged
 * process of a privilege-separated `run` (src/privsep/), which answers over IPC: hence async.
 */
import type { KeyObject } from "node:crypto";
import { publicKeyOf, x25519, x25519PrivateKeyObject } from "./signalling-crypto.js";

export interface KeyAgreement {
  /** Our WireGuard public key (base64). */
  readonly publicKey: string;
  /** X25519(our private key, peerPublicKey); rejects with IntroKeyError for an unusable key. */
  x25519(peerPublicKey: Uint8Array): Promise<Buffer>;
}

/** A KeyAgreement whose private key is in this process. */
export class LocalKeyAgreement implements KeyAgreement {
  readonly publicKey: string;
  private readonly privateKey: KeyObject;

  constructor(privateKey: Uint8Array) {
    this.privateKey = x25519PrivateKeyObject(privateKey);
    this.publicKey = publicKeyOf(privateKey);
  }

  /** Synchronous X25519, for the privileged side that serves requests. */
  x25519Now(peerPublicKey: Uint8Array): Buffer {
    return x25519(this.privateKey, peerPublicKey);
  }

  async x25519(peerPublicKey: Uint8Array): Promise<Buffer> {
    return this.x25519Now(peerPublicKey);
  }
}
