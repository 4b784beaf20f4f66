/**
 * End-to-end envelopes between two Tunnelbores, relayed by (and opaque to) the introduction server.
 *
 * Sealed: XChaCha20-Poly1305 under a per-direction key from X25519(own static, peer static), random
 * 24-byte nonce, plaintext `{"e": epoch, "q": sequence, "t": unix ms, "p": payload}`.
 * The epoch is random per sender instance, so a restarted sender (new epoch, sequence from 0) is told
 * apart from a replay; within an epoch a sliding window of sequence numbers rejects repeats.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { TunnelboreError } from "../errors.js";
import type { KeyAgreement } from "./key-agreement.js";
import type { SealedEnvelope } from "./protocol.js";
import { decodeKey32, envelopeKey, IntroKeyError, xchachaOpen, xchachaSeal } from "./signalling-crypto.js";

const ENVELOPE_AAD = Buffer.from("tunnelbore envelope v1");

export type EnvelopeDropReason = "undecryptable" | "malformed" | "stale" | "replayed" | "bad-peer-key";

export type OpenResult =
  | { ok: true; payload: unknown }
  | { ok: false; reason: EnvelopeDropReason; detail?: string };

/** The payload cannot be put in an envelope (not JSON-serialisable). */
export class EnvelopePayloadError extends TunnelboreError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super("intro-bad-payload", message, context, options);
  }
}

const plaintextSchema = z.object({
  e: z.string().min(1).max(64),
  q: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  t: z.number().int().nonnegative(),
  p: z.unknown(),
});

/**
 * Sliding window of seen sequence numbers (a ring bitmap, as in RFC 6479): accepts each number
 * once, and rejects numbers that fell more than `size` behind the highest one seen.
 */
export class ReplayWindow {
  private highest = -1;
  private readonly seen: Uint32Array;

  constructor(readonly size = 1024) {
    if (size <= 0 || size % 32 !== 0)
      throw new RangeError("replay window size must be a positive multiple of 32");
    this.seen = new Uint32Array(size / 32);
  }

  /** True, and remembered, if `sequence` has not been seen and is inside the window. */
  accept(sequence: number): boolean {
    if (sequence > this.highest) {
      const advance = Math.min(sequence - this.highest, this.size);
      for (let i = 1; i <= advance; i++) this.clear(this.highest + i);
      this.highest = sequence;
      this.mark(sequence);
      return true;
    }
    if (this.highest - sequence >= this.size) return false;
    if (this.isMarked(sequence)) return false;
    this.mark(sequence);
    return true;
  }

  private slot(sequence: number): [number, number] {
    const bit = sequence % this.size;
    return [bit >>> 5, 1 << (bit & 31)];
  }
  private mark(sequence: number): void {
    const [word, mask] = this.slot(sequence);
    this.seen[word]! |= mask;
  }
  private clear(sequence: number): void {
    const [word, mask] = this.slot(sequence);
    this.seen[word]! &= ~mask;
  }
  private isMarked(sequence: number): boolean {
    const [word, mask] = this.slot(sequence);
    return (this.seen[word]! & mask) !== 0;
  }
}

interface EpochState {
  window: ReplayWindow;
  newestTimestamp: number;
}

interface PeerState {
  sendKey: Buffer;
  receiveKey: Buffer;
  nextSequence: number;
  /** Recent epochs of this peer, least recently used first. */
  epochs: Map<string, EpochState>;
  /** Envelopes of an unknown epoch at or before this time are replays of a forgotten epoch. */
  forgottenBefore: number;
}

export interface EnvelopeCodecOptions {
  /** X25519 with our WireGuard private key (which may live in another process). */
  keys: KeyAgreement;
  /** Envelopes older than this (by their timestamp) are stale. Default 60 s. */
  maxAgeMs?: number;
  /** Envelopes dated further ahead than this are stale too (clock skew allowance). Default 60 s. */
  maxFutureSkewMs?: number;
  /** Sequence numbers remembered per sender epoch. Default 1024. */
  replayWindowSize?: number;
  /** Sender epochs remembered per peer. Default 4. */
  epochsPerPeer?: number;
  /** This sender's epoch; random by default. Tests fix it. */
  epoch?: string;
  now?: () => number;
}

/**
 * Seals and opens envelopes for one local key; keeps per-peer keys and replay state.
 * A peer's keys are derived once, asynchronously, by prepare(); seal and open then stay synchronous.
 */
export class EnvelopeCodec {
  readonly publicKey: string;
  readonly epoch: string;
  private readonly keys: KeyAgreement;
  private readonly publicKeyBytes: Buffer;
  private readonly peers = new Map<string, PeerState>();
  private readonly preparing = new Map<string, Promise<void>>();
  private readonly maxAgeMs: number;
  private readonly maxFutureSkewMs: number;
  private readonly replayWindowSize: number;
  private readonly epochsPerPeer: number;
  private readonly now: () => number;

  constructor(options: EnvelopeCodecOptions) {
    this.keys = options.keys;
    this.publicKey = options.keys.publicKey;
    this.publicKeyBytes = Buffer.from(this.publicKey, "base64");
    this.epoch = options.epoch ?? randomBytes(16).toString("base64url");
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.maxFutureSkewMs = options.maxFutureSkewMs ?? 60_000;
    this.replayWindowSize = options.replayWindowSize ?? 1024;
    this.epochsPerPeer = options.epochsPerPeer ?? 4;
    this.now = options.now ?? Date.now;
  }

  /** Whether prepare() has derived the keys for this peer. */
  hasKeys(peerPublicKey: string): boolean {
    return this.peers.has(peerPublicKey);
  }

  /**
   * Derives the keys for a peer (one X25519 per peer); concurrent calls share the work.
   * Rejects with IntroKeyError for an unusable peer key.
   */
  prepare(peerPublicKey: string): Promise<void> {
    if (this.peers.has(peerPublicKey)) return Promise.resolve();
    const pending = this.preparing.get(peerPublicKey);
    if (pending) return pending;
    const derivation = (async () => {
      const peerBytes = decodeKey32(peerPublicKey, "peer public key");
      const shared = await this.keys.x25519(peerBytes);
      if (!this.preparing.has(peerPublicKey)) return; // forgotten meanwhile
      this.peers.set(peerPublicKey, {
        sendKey: envelopeKey(shared, this.publicKeyBytes, peerBytes),
        receiveKey: envelopeKey(shared, peerBytes, this.publicKeyBytes),
        nextSequence: 0,
        epochs: new Map(),
        forgottenBefore: -1,
      });
    })().finally(() => {
      if (this.preparing.get(peerPublicKey) === derivation) this.preparing.delete(peerPublicKey);
    });
    this.preparing.set(peerPublicKey, derivation);
    return derivation;
  }

  /**
   * Throws IntroKeyError for a peer whose keys are not prepared, EnvelopePayloadError for a payload
   * JSON cannot carry.
   */
  seal(peerPublicKey: string, payload: unknown, timestamp = this.now()): SealedEnvelope {
    const peer = this.peerState(peerPublicKey);
    let plaintext: string;
    try {
      plaintext = JSON.stringify({
        e: this.epoch,
        q: peer.nextSequence,
        t: Math.floor(timestamp),
        p: payload,
      });
    } catch (error) {
      throw new EnvelopePayloadError("the payload is not JSON-serialisable", {}, { cause: error });
    }
    peer.nextSequence++;
    const nonce = randomBytes(24);
    const sealed = xchachaSeal(peer.sendKey, nonce, Buffer.from(plaintext), ENVELOPE_AAD);
    return { n: nonce.toString("base64"), c: sealed.toString("base64") };
  }

  open(peerPublicKey: string, envelope: SealedEnvelope): OpenResult {
    let peer: PeerState;
    try {
      peer = this.peerState(peerPublicKey);
    } catch {
      return { ok: false, reason: "bad-peer-key" };
    }
    const plaintext = xchachaOpen(
      peer.receiveKey,
      Buffer.from(envelope.n, "base64"),
      Buffer.from(envelope.c, "base64"),
      ENVELOPE_AAD,
    );
    if (!plaintext) return { ok: false, reason: "undecryptable" };

    let parsed: z.infer<typeof plaintextSchema>;
    try {
      parsed = plaintextSchema.parse(JSON.parse(plaintext.toString("utf8")));
    } catch {
      // Authentic but malformed: a buggy peer, not an attacker; drop it all the same.
      return { ok: false, reason: "malformed" };
    }

    const now = this.now();
    if (now - parsed.t > this.maxAgeMs) {
      return { ok: false, reason: "stale", detail: `${now - parsed.t} ms old` };
    }
    if (parsed.t - now > this.maxFutureSkewMs) {
      return { ok: false, reason: "stale", detail: `${parsed.t - now} ms in the future` };
    }

    let epoch = peer.epochs.get(parsed.e);
    if (epoch) {
      peer.epochs.delete(parsed.e);
    } else {
      if (parsed.t <= peer.forgottenBefore)
        return { ok: false, reason: "replayed", detail: "forgotten epoch" };
      epoch = { window: new ReplayWindow(this.replayWindowSize), newestTimestamp: parsed.t };
    }
    peer.epochs.set(parsed.e, epoch); // most recently used last
    if (!epoch.window.accept(parsed.q)) return { ok: false, reason: "replayed" };
    epoch.newestTimestamp = Math.max(epoch.newestTimestamp, parsed.t);
    this.forgetOldEpochs(peer);
    return { ok: true, payload: parsed.p };
  }

  /** Drop keys and replay state of a peer no longer declared. */
  forget(peerPublicKey: string): void {
    this.peers.delete(peerPublicKey);
    this.preparing.delete(peerPublicKey);
  }

  private forgetOldEpochs(peer: PeerState): void {
    while (peer.epochs.size > this.epochsPerPeer) {
      const [oldestEpoch, state] = peer.epochs.entries().next().value as [string, EpochState];
      peer.epochs.delete(oldestEpoch);
      peer.forgottenBefore = Math.max(peer.forgottenBefore, state.newestTimestamp);
    }
  }

  private peerState(peerPublicKey: string): PeerState {
    const known = this.peers.get(peerPublicKey);
    if (known) return known;
    throw new IntroKeyError("the keys for this peer are not derived yet (prepare it first)", {
      peer: peerPublicKey.slice(0, 8),
    });
  }
}
