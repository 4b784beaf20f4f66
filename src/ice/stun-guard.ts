// The gate in front of werift-ice for one agent's incoming STUN requests (werift-workarounds.ts
// installs it, see gateIncomingRequests): a request reaches werift only when the peer signed it for
// this generation (stun-verify.ts) and the agent's budget allows it (stun-budget.ts). Anything else is
// dropped without an answer, counted, and logged at debug at most every few seconds.
// Only STUN requests come here: werift classifies datagrams itself and data never fires the event.
import type { Connection, Message, Protocol } from "werift-ice";
import type { Logger } from "../log.js";
import { type Admission, DEFAULT_STUN_BUDGET, StunBudget, type StunBudgetLimits } from "./stun-budget.js";
import { type CheckCredentials, type CheckVerdict, verifyCheck } from "./stun-verify.js";
import type { Address } from "./werift-internals.js";

/** A check the peer signed, handed to werift. */
export interface AuthenticatedRequest {
  /** The werift transport it arrived on (a host socket, or a TURN allocation). */
  readonly protocol: Protocol;
  /** That transport's local candidate address, if it has one yet. */
  readonly local: Address | undefined;
  /** The source address: the peer's end of the pair the check is for. */
  readonly remote: Address;
  /** The controlling peer nominates this pair (USE-CANDIDATE). */
  readonly useCandidate: boolean;
  /** The sender says it is controlling (ICE-CONTROLLING). */
  readonly controlling: boolean;
  /** The STUN transaction ID (hex): a replayed check carries an old one. */
  readonly transactionId: string;
}

export type AuthenticatedRequestListener = (request: AuthenticatedRequest) => void;

/** Why a request was dropped. */
export type StunDropReason = Exclude<CheckVerdict, "ok"> | Exclude<Admission, "ok"> | "refused-address";

export interface StunGuardStats {
  /** Requests handed to werift. */
  admitted: number;
  dropped: Record<StunDropReason, number>;
}

export interface StunGuardOptions {
  /** This generation's credentials, read on every request (the peer's ufrag arrives later). */
  credentials(): CheckCredentials;
  /** werift knows this source address (it holds a remote candidate at it). */
  knows(remote: Address): boolean;
  /** Pairs werift holds. */
  pairs(): number;
  /** Addresses the agent refuses checks from whatever their credentials (excluded, relays on upgrades). */
  refuses(remote: Address): boolean;
  log: Logger;
  limits?: StunBudgetLimits;
  now?: () => number;
}

/** Least time between two debug logs of drops. */
const DROP_LOG_INTERVAL_MS = 10_000;

const guards = new WeakMap<Connection, StunGuard>();

/** The guard in front of `conn`, for code that only holds the Connection (an IcePath). */
export function stunGuardOf(conn: Connection): StunGuard | undefined {
  return guards.get(conn);
}

export class StunGuard {
  readonly stats: StunGuardStats = {
    admitted: 0,
    dropped: {
      "not-binding": 0,
      malformed: 0,
      "wrong-username": 0,
      "no-integrity": 0,
      "bad-integrity": 0,
      "bad-fingerprint": 0,
      "rate-limited": 0,
      "new-address-limited": 0,
      "candidates-capped": 0,
      "pairs-capped": 0,
      "refused-address": 0,
    },
  };
  private readonly budget: StunBudget;
  private readonly listeners = new Set<AuthenticatedRequestListener>();
  private readonly now: () => number;
  private lastDropLog = Number.NEGATIVE_INFINITY;
  private droppedSinceLog = 0;

  constructor(
    private readonly options: StunGuardOptions,
    conn?: Connection,
  ) {
    this.now = options.now ?? (() => performance.now());
    this.budget = new StunBudget(options.limits ?? DEFAULT_STUN_BUDGET, this.now);
    if (conn) guards.set(conn, this);
  }

  /**
   * Subscribes to the checks the peer signed (USERNAME and MESSAGE-INTEGRITY verified for this
   * generation) that werift is given: authenticated evidence that the peer reaches us from `remote` on
   * `protocol`. Called synchronously, before werift handles the check. Returns the unsubscribe.
   */
  onAuthenticatedRequest(listener: AuthenticatedRequestListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Whether werift may handle this request (`data` is the datagram it was parsed from). */
  admit(message: Message, data: Buffer | undefined, remote: Address, protocol: Protocol): boolean {
    const { options } = this;
    if (!data) return this.drop("not-binding", remote);
    if (options.refuses(remote)) return this.drop("refused-address", remote);
    const verdict = verifyCheck(data, options.credentials());
    if (verdict !== "ok") return this.drop(verdict, remote);
    const address = `${remote[0]}:${remote[1]}`;
    const admission = this.budget.admit({
      host: remote[0],
      address,
      known: options.knows(remote),
      pairs: options.pairs(),
    });
    if (admission !== "ok") return this.drop(admission, remote);
    this.stats.admitted++;
    const local = protocol.localCandidate;
    const request: AuthenticatedRequest = {
      protocol,
      local: local ? [local.host, local.port] : undefined,
      remote,
      useCandidate: message.attributesKeys.includes("USE-CANDIDATE"),
      controlling: message.attributesKeys.includes("ICE-CONTROLLING"),
      transactionId: message.transactionIdHex,
    };
    for (const listener of this.listeners) {
      try {
        listener(request);
      } catch (err) {
        options.log.warn({ err }, "authenticated stun request listener failed");
      }
    }
    return true;
  }

  private drop(reason: StunDropReason, remote: Address): false {
    this.stats.dropped[reason]++;
    this.droppedSinceLog++;
    const now = this.now();
    if (now - this.lastDropLog >= DROP_LOG_INTERVAL_MS) {
      this.options.log.debug(
        { reason, remote: remote[0], dropped: this.droppedSinceLog, total: this.stats.dropped },
        "stun request dropped before werift",
      );
      this.lastDropLog = now;
      this.droppedSinceLog = 0;
    }
    return false;
  }
}
