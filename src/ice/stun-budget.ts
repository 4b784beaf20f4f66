// How much an agent does for checks that passed verification. A valid signature proves the sender
// knows our password (the peer, or someone replaying a request the peer sent), not that the source
// address is the sender's: werift learns a peer-reflexive candidate and a pair for every new source
// address and sends a triggered check (up to 5 transmissions) to it. Unbounded, N replays from N
// spoofed ports cost N candidates and 6N packets towards a victim. So, per agent:
// - new source addresses: at most MAX_PEER_REFLEXIVE ever, admitted from a slowly refilled bucket,
//   and none once MAX_PAIRS pairs exist;
// - every check: a bucket per source host and one for the agent (the responses are 1:1 with checks,
//   so what these bound is the work and the packets a replay can make us send).
//
// Why these numbers: a peer signals at most MAX_REMOTE_CANDIDATES (32) candidates and has a
// peer-reflexive address per socket behind a NAT that maps each socket anew (a handful); 32 new
// addresses is 8x that. Pairs are our sockets (typically 1-4) times the peer's candidates (10 or so):
// 100 leaves room. A peer's checks arrive paced by its agent (one new check per 20 ms, retransmissions
// at 50 ms doubling; a check that is answered is not retransmitted) and later as liveness probes (4/s
// at most): 40 at once and 20/s per source host, 200 at once and 100/s per agent, stay well above that.
// Those two bound the rate of answers; an answer is no larger than the check, so they amplify nothing.

/** The most peer-reflexive candidates checks may create in one agent. */
export const MAX_PEER_REFLEXIVE = 32;
/** No check from a new source address is admitted once werift holds this many pairs. */
export const MAX_PAIRS = 100;

export interface BucketLimit {
  /** Tokens when full: the burst allowed. */
  readonly burst: number;
  readonly perSecond: number;
}

export interface StunBudgetLimits {
  readonly perHost: BucketLimit;
  readonly perAgent: BucketLimit;
  /** Checks from source addresses werift does not know yet (each makes a candidate and a triggered check). */
  readonly newAddress: BucketLimit;
  readonly maxPeerReflexive: number;
  readonly maxPairs: number;
}

export const DEFAULT_STUN_BUDGET: StunBudgetLimits = {
  perHost: { burst: 40, perSecond: 20 },
  perAgent: { burst: 200, perSecond: 100 },
  newAddress: { burst: 8, perSecond: 2 },
  maxPeerReflexive: MAX_PEER_REFLEXIVE,
  maxPairs: MAX_PAIRS,
};

/** A token bucket on a millisecond clock. */
export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly limit: BucketLimit,
    now: number,
  ) {
    this.tokens = limit.burst;
    this.updatedAt = now;
  }

  /** Takes a token if there is one. */
  take(now: number): boolean {
    const refill = ((now - this.updatedAt) / 1000) * this.limit.perSecond;
    this.tokens = Math.min(this.limit.burst, this.tokens + Math.max(0, refill));
    this.updatedAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** Where an authenticated check comes from, as far as the budget is concerned. */
export interface CheckSource {
  /** Source IP address. */
  readonly host: string;
  /** Source "ip:port". */
  readonly address: string;
  /** werift already knows this address (a signalled candidate, or one admitted before). */
  readonly known: boolean;
  /** Pairs werift holds now. */
  readonly pairs: number;
}

/** Why an authenticated check is not handed to werift; "ok" when it is. */
export type Admission = "ok" | "rate-limited" | "new-address-limited" | "candidates-capped" | "pairs-capped";

export class StunBudget {
  private readonly agent: TokenBucket;
  private readonly newAddresses: TokenBucket;
  /** Buckets of the hosts admitted so far: at most the peer's candidates plus MAX_PEER_REFLEXIVE. */
  private readonly hosts = new Map<string, TokenBucket>();
  /** New source addresses admitted (werift made a peer-reflexive candidate of each). */
  private readonly learnt = new Set<string>();

  constructor(
    private readonly limits: StunBudgetLimits = DEFAULT_STUN_BUDGET,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.agent = new TokenBucket(limits.perAgent, now());
    this.newAddresses = new TokenBucket(limits.newAddress, now());
  }

  /** Whether werift may see this check; counts it against the buckets when it may. */
  admit(source: CheckSource): Admission {
    const now = this.now();
    const fresh = !source.known && !this.learnt.has(source.address);
    if (fresh) {
      if (this.learnt.size >= this.limits.maxPeerReflexive) return "candidates-capped";
      if (source.pairs >= this.limits.maxPairs) return "pairs-capped";
    }
    let host = this.hosts.get(source.host);
    // A host is tracked only once admitted, and only fresh or known addresses are: the map stays small.
    if (!host && this.hosts.size >= this.limits.maxPeerReflexive + this.limits.maxPairs) {
      return "rate-limited";
    }
    host ??= new TokenBucket(this.limits.perHost, now);
    if (fresh && !this.newAddresses.take(now)) return "new-address-limited";
    if (!host.take(now) || !this.agent.take(now)) return "rate-limited";
    this.hosts.set(source.host, host);
    if (fresh) this.learnt.add(source.address);
    return "ok";
  }
}
