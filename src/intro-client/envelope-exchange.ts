/**
 * The envelopes of an introduction client with its peers, over EnvelopeCodec: the epoch exchange that
 * replay protection rests on (docs/protocol.md, section 5), and delivery.
 *
 * A payload can only be sealed once the peer's current epoch is known. So when a peer comes online we
 * forget its epoch (it may have restarted) and send it a hello; payloads sent meanwhile wait here and
 * go out as soon as the peer's first envelope (its own hello, usually) tells its epoch. A peer that
 * shows it does not know ours (a hello without echo, an envelope for an earlier epoch of ours) gets a
 * hello back, at most one a second (one late rather than none).
 */
import type { Logger } from "../log.js";
import {
  type EnvelopeCodec,
  type EnvelopeDropReason,
  payloadJsonBytes,
  sealedLengthBound,
} from "../signalling/envelope.js";
import { keyFingerprint, MAX_MESSAGE_BYTES, type SealedEnvelope } from "../signalling/protocol.js";
import { IntroSendError } from "./intro-errors.js";

/** Payloads held per peer while its epoch is unknown. */
const MAX_PENDING_PER_PEER = 64;
/** Answers (hellos a peer asked for) per peer at most this often. */
const ANSWER_INTERVAL_MS = 1_000;
/** Bytes of a `send` frame besides the envelope's `c` (type, recipient key, nonce, JSON syntax). */
const SEND_FRAME_OVERHEAD_BYTES = 160;

export interface EnvelopeExchangeOptions {
  codec: EnvelopeCodec;
  log: Logger;
  /** Hands a sealed envelope to the connection; throws IntroSendError when it cannot take it. */
  transmit(peer: string, envelope: SealedEnvelope): void;
  deliver(peer: string, payload: unknown): void;
  dropped(peer: string, reason: EnvelopeDropReason): void;
}

interface Answering {
  /** When we last sent the peer a hello (performance.now()). */
  lastAt: number;
  timer: NodeJS.Timeout | undefined;
  /** The peer showed it lacks our epoch (else the timer's hello is only for our held payloads). */
  needed: boolean;
}

export class EnvelopeExchange {
  private readonly codec: EnvelopeCodec;
  private readonly log: Logger;
  private readonly pending = new Map<string, unknown[]>();
  private readonly answering = new Map<string, Answering>();

  constructor(private readonly options: EnvelopeExchangeOptions) {
    this.codec = options.codec;
    this.log = options.log;
  }

  /** The peer came online: it may be a new instance, so learn its epoch afresh and tell it ours. */
  peerOnline(peer: string): void {
    this.codec.unlearnPeerEpoch(peer);
    this.pending.delete(peer);
    this.stopAnswering(peer);
    this.answering.set(peer, { lastAt: performance.now(), timer: undefined, needed: false });
    this.sendHello(peer);
  }

  /** The peer (or we) went offline: what waited for it is dropped, like anything sent now would be. */
  peerOffline(peer: string): void {
    this.codec.unlearnPeerEpoch(peer);
    this.pending.delete(peer);
    this.stopAnswering(peer);
  }

  /** The peer is no longer declared: its keys, epochs and replay state go. */
  forget(peer: string): void {
    this.peerOffline(peer);
    this.codec.forget(peer);
  }

  /**
   * Seals and transmits `payload`, or holds it until the peer's epoch is known. Throws IntroSendError
   * when it is too large or too much waits, EnvelopePayloadError when JSON cannot carry it.
   */
  send(peer: string, payload: unknown): void {
    if (this.codec.knowsPeerEpoch(peer)) {
      this.options.transmit(peer, this.codec.seal(peer, payload));
      return;
    }
    const bound = sealedLengthBound(payloadJsonBytes(payload)) + SEND_FRAME_OVERHEAD_BYTES;
    if (bound > MAX_MESSAGE_BYTES) {
      throw new IntroSendError("intro-payload-too-large", `the envelope exceeds ${MAX_MESSAGE_BYTES} bytes`, {
        peer,
        bytes: bound,
      });
    }
    const waiting = this.pending.get(peer) ?? [];
    if (waiting.length >= MAX_PENDING_PER_PEER) {
      throw new IntroSendError("intro-queue-full", "too many messages waiting for the peer's epoch", {
        peer,
        waiting: waiting.length,
      });
    }
    waiting.push(payload);
    this.pending.set(peer, waiting);
    // Our hello may have been lost: another one makes the peer answer with its epoch.
    if (waiting.length === 1) this.requestHello(peer, false);
  }

  /** An envelope from a declared peer whose keys are ready. */
  receive(peer: string, envelope: SealedEnvelope): void {
    const opened = this.codec.open(peer, envelope);
    if (!opened.ok) {
      // A copy of an envelope we already have is expected after the peer moved servers (it resends
      // its latest ones): not worth a warning. Anything else may be an attack or a bug.
      const level = opened.repeat ? "debug" : "warn";
      this.log[level](
        { peer: keyFingerprint(peer), reason: opened.reason, detail: opened.detail },
        "dropped an envelope",
      );
      this.options.dropped(peer, opened.reason);
      if (opened.answer) this.requestHello(peer, true);
      return;
    }
    if (opened.kind === "hello" && opened.answer) this.requestHello(peer, true);
    this.flush(peer);
    if (opened.kind === "payload") this.options.deliver(peer, opened.payload);
  }

  /** Stops all timers (the client stops). */
  close(): void {
    for (const peer of [...this.answering.keys()]) this.stopAnswering(peer);
    this.pending.clear();
  }

  private flush(peer: string): void {
    const waiting = this.pending.get(peer);
    if (!waiting || !this.codec.knowsPeerEpoch(peer)) return;
    this.pending.delete(peer);
    for (const payload of waiting) {
      try {
        this.options.transmit(peer, this.codec.seal(peer, payload));
      } catch (error) {
        this.log.warn(
          { peer: keyFingerprint(peer), err: (error as Error).message },
          "a held envelope not sent",
        );
      }
    }
  }

  /**
   * A hello now, or at the end of the current interval (at most one per interval). `needed`: the peer
   * lacks our epoch; else it is for our held payloads, and not sent if they went out meanwhile.
   */
  private requestHello(peer: string, needed: boolean): void {
    const state = this.answering.get(peer) ?? {
      lastAt: Number.NEGATIVE_INFINITY,
      timer: undefined,
      needed: false,
    };
    this.answering.set(peer, state);
    state.needed ||= needed;
    if (state.timer) return;
    const send = () => {
      state.timer = undefined;
      if (!state.needed && !this.pending.has(peer)) return;
      state.needed = false;
      state.lastAt = performance.now();
      this.sendHello(peer);
    };
    const wait = state.lastAt + ANSWER_INTERVAL_MS - performance.now();
    if (wait <= 0) {
      send();
      return;
    }
    state.timer = setTimeout(send, wait);
    state.timer.unref();
  }

  private stopAnswering(peer: string): void {
    clearTimeout(this.answering.get(peer)?.timer);
    this.answering.delete(peer);
  }

  private sendHello(peer: string): void {
    try {
      this.options.transmit(peer, this.codec.sealHello(peer));
    } catch (error) {
      this.log.warn({ peer: keyFingerprint(peer), err: (error as Error).message }, "hello not sent");
    }
  }
}
