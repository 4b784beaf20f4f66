// When a peer is idle (lazy peers, `--idle-timeout`): the facts Peer keeps to decide when to release
// its ICE session and when traffic came back, apart from what releasing and waking do (peer.ts).
import type { Clock } from "./clock.js";

export class Idleness {
  /** The ICE session is released until WireGuard or the peer wants it. */
  dormant = false;
  /**
   * When the peer was last wanted (created, woken, a handshake held) or carried traffic as the idle
   * sweep last saw (clock ms): idle once this is `timeoutMs` old. Created counts, unless WireGuard's
   * latest handshake says the peer was quiet long before (`quietSinceBefore`).
   */
  private activeAt: number;
  /** When it went dormant (clock ms): traffic after this (on a static path) wakes it. */
  private restedAt = 0;
  /**
   * Up to when (clock ms) the sweep last knew the traffic: the kernel fast path's counts come late, and
   * quiet after this is not known to be quiet. Infinity: the stamps are always current (user space).
   */
  private knownUntil = Number.POSITIVE_INFINITY;

  constructor(
    private readonly clock: Clock,
    /** 0: never idle. */
    private readonly timeoutMs: number,
  ) {
    this.activeAt = clock.now();
  }

  get enabled(): boolean {
    return this.timeoutMs > 0;
  }

  /** Wanted now (WireGuard held a datagram for it). */
  active(): void {
    this.activeAt = this.clock.now();
  }

  /** At creation: WireGuard's latest handshake with the peer was `quietMs` ago. */
  quietSinceBefore(quietMs: number): void {
    this.activeAt = this.clock.now() - quietMs;
  }

  /** The sweep: nothing either way for `quietMs`, as far as is known; the last `unknownMs` of it is not. */
  quietFor(quietMs: number, unknownMs = 0): void {
    const now = this.clock.now();
    this.activeAt = Math.max(this.activeAt, now - quietMs);
    this.knownUntil = unknownMs > 0 ? now - unknownMs : Number.POSITIVE_INFINITY;
  }

  /** Awake, and known to be neither wanted nor carrying traffic for the timeout. */
  get idle(): boolean {
    return this.enabled && !this.dormant && this.idleMs >= this.timeoutMs;
  }

  /** Awake, and idle unless traffic not read yet says otherwise: a sweep, reading it, would tell. */
  get idleUnlessTrafficUnread(): boolean {
    return this.enabled && !this.dormant && this.clock.now() - this.activeAt >= this.timeoutMs;
  }

  /** How long it is known to have been neither wanted nor carrying traffic. */
  get idleMs(): number {
    return Math.min(this.clock.now(), this.knownUntil) - this.activeAt;
  }

  /** Dormant, and the sweep saw traffic since it went so. */
  get trafficSinceRest(): boolean {
    return this.dormant && this.activeAt > this.restedAt;
  }

  rested(): void {
    this.dormant = true;
    this.restedAt = this.clock.now();
  }

  /**
   * Awake again: active now, or (`graceMs`) only for that long, when nothing of ours wants the peer
   * yet (the peer's signal): traffic that follows makes it active, and without any it rests again.
   */
  woke(graceMs?: number): void {
    this.dormant = false;
    this.activeAt = this.clock.now() - (graceMs === undefined ? 0 : Math.max(0, this.timeoutMs - graceMs));
  }
}
