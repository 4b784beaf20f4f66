import { createHash } from "node:crypto";

/** Where a peer's loopback socket L(P) lives. */
export interface LoopbackAddress {
  readonly address: string;
  readonly port: number;
}

export const DEFAULT_LOOPBACK_PORT_BASE = 51822;
/** How many candidates a peer tries before giving up: collisions are ~1 in 16M, squatters are rarer. */
export const MAX_LOOPBACK_CANDIDATES = 32;
/**
 * Ports above the base the fallback candidates spread over: a local user who binds ports first
 * (wildcard or not) must hold this many to keep a peer out, not just the base.
 */
const FALLBACK_PORT_SPREAD = 4096;

/**
 * The 127.x.y.z address of a peer: a hash of its public key into 127.0.0.0/8, skipping 127.0.0.0/24
 * (where 127.0.0.1 and the catch-all live) and the .0/.255 host octets. Stable across restarts, so
 * WireGuard's learned endpoint stays valid when Tunnelbore comes back.
 */
export function loopbackAddressOf(publicKey: Uint8Array): string {
  for (let counter = 0; ; counter++) {
    const digest = createHash("sha256")
      .update("tunnelbore loopback v1")
      .update(publicKey)
      .update(Uint8Array.of(counter))
      .digest();
    const address = loopbackFromDigest(digest);
    if (address) return address;
  }
}

/** The `sequence`-th fallback of a key: an address as loopbackAddressOf's, and a port offset. */
function fallbackOf(
  publicKey: Uint8Array,
  sequence: number,
  spread: number,
): { address: string; offset: number } {
  for (let counter = 0; ; counter++) {
    const digest = createHash("sha256")
      .update("tunnelbore loopback fallback v1")
      .update(publicKey)
      .update(Uint8Array.of(sequence, counter))
      .digest();
    const address = loopbackFromDigest(digest);
    if (address) return { address, offset: digest.readUInt16BE(3) % spread };
  }
}

/** 127.a.b.c from the digest's first bytes; null in 127.0.0.0/24 or for a .0/.255 host octet. */
function loopbackFromDigest(digest: Buffer): string | null {
  const [a = 0, b = 0, c = 0] = digest;
  if ((a === 0 && b === 0) || c === 0 || c === 255) return null;
  return `127.${a}.${b}.${c}`;
}

/**
 * The addresses a peer's L(P) may take, in the order they are tried: first the key's address at the
 * base port (nothing squats: the same L(P) every time), then MAX_LOOPBACK_CANDIDATES - 1 further
 * address:port pairs, each derived from the key (another 127.x.y.z, a port among the
 * FALLBACK_PORT_SPREAD above the base). A port someone else holds (another peer of ours with a colliding
 * address, or a local user who bound it first) costs one step; the order never depends on who holds
 * what, so the same peer lands on the same L(P) across restarts while the same ports are held.
 */
export function loopbackCandidates(publicKey: Uint8Array, portBase: number): LoopbackAddress[] {
  return [...loopbackCandidateSequence(publicKey, portBase)];
}

/**
 * loopbackCandidates one at a time: each costs a hash or two, and the first is nearly always the one
 * bound (issue 16: all 32 for each of 10,000 peers took a second of the start).
 */
function* loopbackCandidateSequence(publicKey: Uint8Array, portBase: number): Generator<LoopbackAddress> {
  yield { address: loopbackAddressOf(publicKey), port: portBase };
  const spread = Math.min(FALLBACK_PORT_SPREAD, 65536 - portBase);
  for (let i = 1; i < MAX_LOOPBACK_CANDIDATES; i++) {
    const { address, offset } = fallbackOf(publicKey, i, spread);
    yield { address, port: portBase + offset };
  }
}

/** L6(P)'s address: lo's only IPv6 address without configuration, so peers differ by port alone. */
export const LOOPBACK6_ADDRESS = "::1";
/**
 * The ports L6(P) takes: below Linux's ephemeral range (32768-60999), where other programs' sockets
 * rarely sit. On ports alone collisions between peers are common; the fallbacks take them.
 */
export const LOOPBACK6_PORT_LOW = 20480;
export const LOOPBACK6_PORT_SPAN = 12288;

/**
 * The ports a peer's L6(P) may take on [::1], in the order they are tried: MAX_LOOPBACK_CANDIDATES,
 * each derived from the key, as stable across restarts as L(P)'s.
 */
function* loopback6CandidateSequence(publicKey: Uint8Array): Generator<LoopbackAddress> {
  for (let i = 0; i < MAX_LOOPBACK_CANDIDATES; i++) {
    const digest = createHash("sha256")
      .update("tunnelbore loopback6 v1")
      .update(publicKey)
      .update(Uint8Array.of(i))
      .digest();
    yield {
      address: LOOPBACK6_ADDRESS,
      port: LOOPBACK6_PORT_LOW + (digest.readUInt16BE(0) % LOOPBACK6_PORT_SPAN),
    };
  }
}

/** The endpoint WireGuard shows for a loopback address: "127.a.b.c:port", or "[::1]:port". */
export function loopbackEndpointText(where: LoopbackAddress): string {
  return where.address.includes(":") ? `[${where.address}]:${where.port}` : `${where.address}:${where.port}`;
}

/**
 * Assigns L(P) (or, made with `family` 6, L6(P)) to peers deterministically, from their candidates,
 * skipping what our peers hold.
 */
export class LoopbackAllocator {
  private readonly taken = new Set<string>();
  private readonly sequence: (publicKey: Uint8Array) => Generator<LoopbackAddress>;
  /** What every candidate's endpoint text starts with: a `preferred` without it is not one of them. */
  private readonly ownPrefix: string;

  constructor(
    readonly portBase = DEFAULT_LOOPBACK_PORT_BASE,
    family: 4 | 6 = 4,
  ) {
    this.sequence =
      family === 4 ? (key) => loopbackCandidateSequence(key, portBase) : loopback6CandidateSequence;
    this.ownPrefix = family === 4 ? "127." : `[${LOOPBACK6_ADDRESS}]:`;
  }

  /**
   * Candidates in the order they should be tried; the caller binds and `claim`s the first that works.
   * `preferred` (WireGuard's endpoint for the peer, "a.b.c.d:port" or "[::1]:port") goes first when it
   * is one of them: the L(P) a previous run held, whatever order peers are set up in now.
   */
  *candidates(publicKey: Uint8Array, preferred?: string | null): Generator<LoopbackAddress> {
    const sequence = this.sequence(publicKey);
    // Derived only as far as needed: up to `preferred` when it may be one of them (every candidate is a
    // 127.a.b.c, or on [::1]; a real endpoint is not), else up to a free one.
    const before: LoopbackAddress[] = [];
    if (preferred?.startsWith(this.ownPrefix)) {
      // next() rather than for-of: leaving a for-of would close the sequence.
      for (let next = sequence.next(); !next.done; next = sequence.next()) {
        const where = next.value;
        if (loopbackEndpointText(where) === preferred) {
          if (!this.taken.has(preferred)) yield where;
          break;
        }
        before.push(where);
      }
    }
    for (const where of before) if (!this.taken.has(loopbackEndpointText(where))) yield where;
    for (const where of sequence) if (!this.taken.has(loopbackEndpointText(where))) yield where;
  }

  claim(where: LoopbackAddress): void {
    this.taken.add(loopbackEndpointText(where));
  }

  release(where: LoopbackAddress): void {
    this.taken.delete(loopbackEndpointText(where));
  }
}
