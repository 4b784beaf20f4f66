/**
 * End-to-end envelopes between two Tunnelbores, relayed by (and opaque to) the introduction server.
 *
 * Sealed: XChaCha20-Poly1305 under a per-direction key from X25519(own static, peer static), random
 * 24-byte nonce, plaintext `{"e": epoch, "r": echo, "q": sequence, "t": unix ms, "p": payload}`.
 *
 * Replay protection does not depend on clocks or on anything surviving a restart: per peer, each side
 * has an _epoch_, random and new whenever its state for that peer is new (a start, a (re-)declaration).
 * It is both the sender's name for its sequence numbers and a challenge: an envelope carrying a
 * payload must echo (`r`) the receiver's current epoch, which the sender learnt from an envelope of the
 * receiver (a _hello_ if nothing else). An envelope recorded before the receiver restarted or
 * re-declared the sender echoes an epoch that no longer exists and is refused; under the current
 * epoch a sliding window per sender epoch refuses repeats, and those windows are never evicted while
 * that epoch lives (too many sender epochs start a new one instead). See docs/protocol.md, section 5.
 */
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { TunnelboreError } from "../errors.js";
import type { KeyAgreement } from "./key-agreement.js";
import type { SealedEnvelope } from "./protocol.js";
import { ReplayWindow } from "./replay-window.js";
import { decodeKey32, envelopeKey, IntroKeyError, xchachaOpen, xchachaSeal } from "./signalling-crypto.js";

export { ReplayWindow } from "./replay-window.js";

const ENVELOPE_AAD = Buffer.from("tunnelbore envelope v1");

export type EnvelopeDropReason = "undecryptable" | "malformed" | "stale" | "replayed" | "bad-peer-key";

export type OpenResult =
  /** A payload for the application. */
  | { ok: true; kind: "payload"; payload: unknown }
  /**
   * A hello: it only taught us the peer's epoch. `answer`: the peer does not know our current epoch
   * (it will not be able to send us a payload until we send it an envelope).
   */
  | { ok: true; kind: "hello"; answer: boolean }
  /** repeat: a copy of one already accepted (a client resends the last envelopes after a server move). */
  | { ok: false; reason: EnvelopeDropReason; detail?: string; answer?: boolean; repeat?: boolean };

/** The payload cannot be put in an envelope (not JSON-serialisable). */
export class EnvelopePayloadError extends TunnelboreError {
  constructor(message: string, context: Record<string, unknown> = {}, options?: { cause?: unknown }) {
    super("intro-bad-payload", message, context, options);
  }
}

/** seal() for a peer whose epoch we have not learnt yet (send it a hello and wait for its answer). */
export class EnvelopeEpochUnknownError extends TunnelboreError {
  constructor(peer: string) {
    super("intro-peer-epoch-unknown", "the peer's envelope epoch is not known yet", {
      peer: peer.slice(0, 8),
    });
  }
}

const epochSchema = z.string().min(1).max(64);
const plaintextSchema = z
  .object({
    e: epochSchema,
    r: epochSchema.optional(),
    q: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
    t: z.number().int().nonnegative(),
    p: z.unknown().optional(),
  })
  .strict();

/** Bytes the plaintext adds to the payload's JSON, at most (two epochs, q, t, keys). */
const PLAINTEXT_OVERHEAD_BYTES = 200;
const TAG_BYTES = 16;

/** The payload's JSON length in bytes; throws EnvelopePayloadError for what JSON cannot carry. */
export function payloadJsonBytes(payload: unknown): number {
  let json: string | undefined;
  try {
    json = JSON.stringify(payload);
  } catch (error) {
    throw new EnvelopePayloadError("the payload is not JSON-serialisable", {}, { cause: error });
  }
  if (json === undefined) throw new EnvelopePayloadError("the payload is not JSON-serialisable");
  return Buffer.byteLength(json);
}

/** An upper bound of the `c` field's length (base64) for a payload whose JSON has `payloadBytes` bytes. */
export function sealedLengthBound(payloadBytes: number): number {
  return Math.ceil((payloadBytes + PLAINTEXT_OVERHEAD_BYTES + TAG_BYTES) / 3) * 4;
}

interface PeerState {
  sendKey: Buffer;
  receiveKey: Buffer;
  /** Our epoch for this peer: names our sequence numbers and is what the peer must echo. */
  epoch: string;
  nextSequence: number;
  /** The peer's epoch as last learnt (we echo it); undefined until the peer's first envelope. */
  peerEpoch: string | undefined;
  /** Sender epochs seen echoing our current epoch, with their windows. Cleared with a new epoch. */
  windows: Map<string, ReplayWindow>;
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
  /** Sender epochs remembered under one epoch of ours; one more starts a new epoch. Default 16. */
  epochsPerPeer?: number;
  now?: () => number;
}

/**
 * Seals and opens envelopes for one local key; keeps per-peer keys, epochs and replay state.
 * A peer's keys are derived once, asynchronously, by prepare(); seal and open then stay synchronous.
 */
export class EnvelopeCodec {
  readonly publicKey: string;
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
    this.maxAgeMs = options.maxAgeMs ?? 60_000;
    this.maxFutureSkewMs = options.maxFutureSkewMs ?? 60_000;
    this.replayWindowSize = options.replayWindowSize ?? 1024;
    this.epochsPerPeer = options.epochsPerPeer ?? 16;
    this.now = options.now ?? Date.now;
  }

  /** Whether prepare() has derived the keys for this peer. */
  hasKeys(peerPublicKey: string): boolean {
    return this.peers.has(peerPublicKey);
  }

  /**
   * Derives the keys for a peer (one X25519 per peer) and starts a new epoch for it; concurrent calls
   * share the work. Rejects with IntroKeyError for an unusable peer key.
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
        epoch: newEpoch(),
        nextSequence: 0,
        peerEpoch: undefined,
        windows: new Map(),
      });
    })().finally(() => {
      if (this.preparing.get(peerPublicKey) === derivation) this.preparing.delete(peerPublicKey);
    });
    this.preparing.set(peerPublicKey, derivation);
    return derivation;
  }

  /** Our current epoch for a prepared peer (tests, logs). */
  epochFor(peerPublicKey: string): string {
    return this.peerState(peerPublicKey).epoch;
  }

  /** Whether we know the peer's epoch, i.e. can seal a payload for it. */
  knowsPeerEpoch(peerPublicKey: string): boolean {
    return this.peers.get(peerPublicKey)?.peerEpoch !== undefined;
  }

  /**
   * Forget the peer's epoch (it may have restarted: it went offline or came online again), so that no
   * payload is sealed for an epoch that may be gone; its next envelope teaches the current one.
   */
  unlearnPeerEpoch(peerPublicKey: string): void {
    const peer = this.peers.get(peerPublicKey);
    if (peer) peer.peerEpoch = undefined;
  }

  /**
   * Seals a payload (anything JSON can carry but undefined). Throws EnvelopeEpochUnknownError before
   * the peer's epoch is known, IntroKeyError for a peer whose keys are not prepared,
   * EnvelopePayloadError for a payload JSON cannot carry.
   */
  seal(peerPublicKey: string, payload: unknown, timestamp = this.now()): SealedEnvelope {
    const peer = this.peerState(peerPublicKey);
    if (peer.peerEpoch === undefined) throw new EnvelopeEpochUnknownError(peerPublicKey);
    if (payload === undefined) throw new EnvelopePayloadError("undefined is not a payload");
    return this.sealPlaintext(peer, timestamp, payload);
  }

  /** An envelope without payload that tells the peer our epoch (and echoes its own, if known). */
  sealHello(peerPublicKey: string, timestamp = this.now()): SealedEnvelope {
    return this.sealPlaintext(this.peerState(peerPublicKey), timestamp, undefined);
  }

  open(peerPublicKey: string, envelope: SealedEnvelope): OpenResult {
    const peer = this.peers.get(peerPublicKey);
    if (!peer) return { ok: false, reason: "bad-peer-key" };
    let plaintext: Buffer | undefined;
    try {
      const nonce = Buffer.from(envelope.n, "base64");
      plaintext = xchachaOpen(peer.receiveKey, nonce, Buffer.from(envelope.c, "base64"), ENVELOPE_AAD);
    } catch {
      plaintext = undefined; // a nonce of the wrong length (the schema should have refused it)
    }
    if (!plaintext) return { ok: false, reason: "undecryptable" };

    let parsed: z.infer<typeof plaintextSchema>;
    try {
      parsed = plaintextSchema.parse(JSON.parse(plaintext.toString("utf8")));
    } catch {
      // Authentic but malformed: a buggy (or older) peer, not an attacker; drop it all the same.
      return { ok: false, reason: "malformed" };
    }
    // A payload is only ever sealed echoing our epoch.
    if (parsed.r === undefined && parsed.p !== undefined)
      return { ok: false, reason: "malformed", detail: "a payload without echo" };

    // Bounds how long an envelope can be held back; replays are refused below, whatever the clocks.
    const now = this.now();
    if (now - parsed.t > this.maxAgeMs) {
      return { ok: false, reason: "stale", detail: `${now - parsed.t} ms old` };
    }
    if (parsed.t - now > this.maxFutureSkewMs) {
      return { ok: false, reason: "stale", detail: `${parsed.t - now} ms in the future` };
    }

    if (parsed.r === undefined) {
      // The peer does not know our epoch yet. Nothing to deliver, so nothing to replay: a replayed
      // hello can at worst teach an outdated epoch, which the peer's answer to our next envelope fixes.
      peer.peerEpoch = parsed.e;
      return { ok: true, kind: "hello", answer: true };
    }
    if (parsed.r !== peer.epoch) {
      // A hello that echoes an epoch of ours that is gone: the peer needs the current one; nothing to
      // learn from it (it may be a replay) and nothing lost.
      if (parsed.p === undefined) return { ok: true, kind: "hello", answer: true };
      // Sealed for an epoch of ours that is gone: recorded before we restarted or re-declared the peer
      // (a replay), or sent before the peer learnt our new epoch. Either way the peer needs it.
      return { ok: false, reason: "replayed", detail: "sealed for an earlier epoch of ours", answer: true };
    }
    let window = peer.windows.get(parsed.e);
    if (!window) {
      if (peer.windows.size >= this.epochsPerPeer) {
        // Evicting a window would let its envelopes in again: start a new epoch of ours instead.
        this.startNewEpoch(peer);
        return { ok: false, reason: "replayed", detail: "too many sender epochs: new epoch", answer: true };
      }
      window = new ReplayWindow(this.replayWindowSize);
      peer.windows.set(parsed.e, window);
    }
    if (!window.accept(parsed.q)) return { ok: false, reason: "replayed", repeat: true };
    peer.peerEpoch = parsed.e; // arrival order: the latest envelope says the peer's current epoch
    if (parsed.p === undefined) return { ok: true, kind: "hello", answer: false };
    return { ok: true, kind: "payload", payload: parsed.p };
  }

  /** Drop keys, epochs and replay state of a peer no longer declared. */
  forget(peerPublicKey: string): void {
    this.peers.delete(peerPublicKey);
    this.preparing.delete(peerPublicKey);
  }

  private sealPlaintext(peer: PeerState, timestamp: number, payload: unknown): SealedEnvelope {
    let plaintext: string;
    try {
      plaintext = JSON.stringify({
        e: peer.epoch,
        r: peer.peerEpoch,
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

  private startNewEpoch(peer: PeerState): void {
    peer.epoch = newEpoch();
    peer.nextSequence = 0;
    peer.windows.clear();
  }

  private peerState(peerPublicKey: string): PeerState {
    const known = this.peers.get(peerPublicKey);
    if (known) return known;
    throw new IntroKeyError("the keys for this peer are not derived yet (prepare it first)", {
      peer: peerPublicKey.slice(0, 8),
    });
  }
}

function newEpoch(): string {
  return randomBytes(16).toString("base64url");
}
