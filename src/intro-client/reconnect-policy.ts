/**
 * When, and how loudly, an introduction client tries again after an attempt failed or a connection
 * ended: capped exponential backoff with "equal jitter"; at the cap after a refusal (a wrong key, or
 * another process using ours: retrying fast would only fight); once a minute when the server does not
 * serve our key, which is a configuration problem to be said once, in one error line naming the key.
 */
import { Backoff } from "../backoff.js";
import type { Logger } from "../log.js";
import { CloseCode } from "../signalling/protocol.js";

/** A streak of failed attempts is logged at warn on its first failure and every this many after. */
const WARN_EVERY_FAILURES = 10;
/** The first reconnect after a connection that had been up for a while waits at most this long. */
const FIRST_RECONNECT_JITTER_MS = 100;
/** Retry interval while the server says we are not a member. */
export const NOT_MEMBER_RETRY_MS = 60_000;

export interface ReconnectPolicyOptions {
  url: string;
  /** Our public key (base64): named when the server does not serve it. */
  publicKey: string;
  log: Logger;
  initialDelayMs?: number;
  maxDelayMs?: number;
  notMemberRetryMs?: number;
}

export interface Ended {
  code: number;
  reason: string;
  /** The transport error of the attempt, if any. */
  attemptError: string | null;
  /** The connection had authenticated. */
  wasOnline: boolean;
  /** ... and stayed up long enough to reset the backoff. */
  stable: boolean;
  /** The server this was (logs); default the policy's url. */
  url?: string;
  /** Another server is tried next, not yet tried in this streak: go at once, the backoff untouched. */
  moveOn?: boolean;
}

export class ReconnectPolicy {
  /** Consecutive failed attempts (0 once connected). */
  failures = 0;
  lastError: string | null = null;
  lastErrorAt = 0;
  /** The server's last word was that it does not serve our key. */
  notMember = false;
  private readonly backoff: Backoff;

  constructor(private readonly options: ReconnectPolicyOptions) {
    this.backoff = new Backoff({
      initialMs: options.initialDelayMs ?? 500,
      maxMs: options.maxDelayMs ?? 30_000,
      jitter: [0.5, 1], // "equal jitter"
    });
  }

  get attempts(): number {
    return this.backoff.attempts;
  }

  start(): void {
    this.backoff.reset();
  }

  stop(): void {
    this.failures = 0;
  }

  /** Authenticated: returns the failures before it (for the log). */
  connected(): number {
    const after = this.failures;
    this.failures = 0;
    this.notMember = false;
    return after;
  }

  /** Records the end of an attempt or connection, logs it, and says how long to wait before the next. */
  ended(ended: Ended): number {
    const { code, reason, wasOnline } = ended;
    const notMember = code === CloseCode.notMember;
    const firstNotMember = notMember && !this.notMember;
    this.notMember = notMember;
    this.lastError = notMember
      ? `not a member: the server does not serve our key ${this.options.publicKey}`
      : (ended.attemptError ?? `closed ${code}${reason ? `: ${reason}` : ""}`);
    this.lastErrorAt = Date.now();
    this.failures++;
    const rejected = code === CloseCode.authFailed || code === CloseCode.replaced;
    const { log } = this.options;
    const url = ended.url ?? this.options.url;
    const details = { url, error: this.lastError, code, reason, failures: this.failures };
    if (firstNotMember) {
      log.error(
        { url, publicKey: this.options.publicKey, code, reason },
        `the introduction server does not serve our key ${this.options.publicKey}: add it to the server's allowed keys (--allowed-keys); retrying every ${Math.round(this.notMemberRetryMs() / 1000)} s, or at once on SIGHUP (systemctl reload)`,
      );
    } else if (notMember) log.debug(details, "still not a member of the introduction server");
    else if (rejected) log.error(details, "the introduction server refused us");
    // IntroLink warns about a lost connection (with its cause) unless it was a deliberate reconnect.
    else if (wasOnline) log.debug(details, "disconnected from the introduction server");
    else if (this.failures === 1 || this.failures % WARN_EVERY_FAILURES === 0)
      log.warn(details, `cannot connect to the introduction server ${url} (${this.lastError}); retrying`);
    else log.debug(details, "connection attempt failed");

    if (ended.stable) this.backoff.reset();
    // Several servers: one that went away or refused us is left for the next at once; the slow and
    // backed-off delays below apply once every server failed in a row (src/intro-client/server-list.ts).
    if (ended.moveOn) return Math.random() * FIRST_RECONNECT_JITTER_MS;
    if (notMember) return this.notMemberRetryMs();
    // Wrong key or another process using our key: retrying fast would only fight; retry slowly.
    if (rejected) return this.backoff.ceiling();
    // A connection that worked for a while is replaced at once (paths may wait for it); the small
    // jitter spreads the clients of a server that went away together.
    if (ended.stable) return Math.random() * FIRST_RECONNECT_JITTER_MS;
    return this.backoff.next();
  }

  private notMemberRetryMs(): number {
    return this.options.notMemberRetryMs ?? NOT_MEMBER_RETRY_MS;
  }
}
