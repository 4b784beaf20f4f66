// PeerNominations and PeerChecks behind the StunGuard, wired as the agent wires them: only the peer's
// authenticated, fresh requests are evidence (nominations on a pair of the agent for following, checks
// on the path's pair for liveness); forgeries (which the guard refuses), replays, requests on other
// pairs, and for following requests that nominate nothing, are not.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import {
  type CandidatePair,
  CandidatePairState,
  type Connection,
  classes,
  Message,
  methods,
  type Protocol,
  parseMessage,
} from "werift-ice";
import { PeerChecks, PeerNominations } from "../../src/ice/peer-requests.js";
import { StunGuard } from "../../src/ice/stun-guard.js";
import type { Address } from "../../src/ice/werift-internals.js";

const protocol = { type: "stun" } as unknown as Protocol;
const validated = {
  protocol,
  state: CandidatePairState.SUCCEEDED,
  remoteAddr: ["192.0.2.7", 4000],
} as unknown as CandidatePair;
const unvalidated = {
  protocol,
  state: CandidatePairState.IN_PROGRESS,
  remoteAddr: ["192.0.2.8", 4000],
} as unknown as CandidatePair;
const PASSWORD = "local-password-0123456789";
const conn = { checkList: [validated, unvalidated] } as unknown as Connection;

function request(fields: {
  username?: string;
  key?: string;
  nominate?: boolean;
  controlling?: boolean;
}): Buffer {
  const message = new Message(methods.BINDING, classes.REQUEST);
  message.setAttribute("USERNAME", fields.username ?? "loc:rem");
  message.setAttribute("PRIORITY", 1853824767);
  if (fields.controlling ?? true) message.setAttribute("ICE-CONTROLLING", 42n);
  if (fields.nominate ?? true) message.setAttribute("USE-CANDIDATE", null);
  if (fields.key !== undefined) message.addMessageIntegrity(Buffer.from(fields.key, "utf8"));
  message.addFingerprint();
  return message.bytes;
}

const from = validated.remoteAddr as Address;
const signed = (extra: Parameters<typeof request>[0] = {}) => request({ key: PASSWORD, ...extra });

/** The StunGuard in front of a test agent (this generation's credentials; every address known). */
function testGuard(): StunGuard {
  return new StunGuard({
    credentials: () => ({ localUfrag: "loc", remoteUfrag: "rem", localPassword: PASSWORD }),
    knows: () => true,
    pairs: () => 2,
    refuses: () => false,
    log: pino({ level: "silent" }),
  });
}

/** Hands `guard` one datagram as werift would: with what werift parsed of it. */
function admit(guard: StunGuard, data: Buffer, addr: Address = from, on: Protocol = protocol): void {
  // werift parses the datagram (without checking it) and hands the gate both; what it cannot parse
  // never reaches the gate, so garbage goes with a well-formed message to show the bytes decide.
  let parsed: Message | undefined;
  try {
    parsed = parseMessage(data) as Message | undefined;
  } catch {
    parsed = undefined;
  }
  guard.admit(parsed ?? (parseMessage(signed()) as Message), data, addr, on);
}

/** The guard and the nominations as followPeer connects them; `take` feeds one datagram through. */
function gatedNominations(skip: CandidatePair | null = null) {
  const guard = testGuard();
  const nominations = new PeerNominations(conn);
  const taken: Array<CandidatePair | null> = [];
  guard.onAuthenticatedRequest((r) => taken.push(nominations.take(r, skip)));
  return (data: Buffer, addr: Address = from, on: Protocol = protocol): CandidatePair | null => {
    const before = taken.length;
    admit(guard, data, addr, on);
    return taken.length > before ? (taken.at(-1) ?? null) : null;
  };
}

describe("PeerNominations behind the StunGuard", () => {
  it("takes the peer's signed nomination on a validated pair, once (a replay proves nothing new)", () => {
    const take = gatedNominations();
    const data = signed();
    expect(take(data)).toBe(validated);
    expect(take(data)).toBeNull();
  });

  it("takes no request that nominates nothing, nor one from a controlled sender", () => {
    const guard = testGuard();
    const nominations = new PeerNominations(conn);
    const taken: Array<CandidatePair | null> = [];
    guard.onAuthenticatedRequest((r) => taken.push(nominations.take(r, null)));
    for (const data of [signed({ nominate: false }), signed({ controlling: false })]) {
      expect(guard.admit(parseMessage(data) as Message, data, from, protocol)).toBe(true);
    }
    expect(taken).toEqual([null, null]);
  });

  it("drops forgeries: no integrity, a wrong key, another ufrag pair, a tampered byte", () => {
    const take = gatedNominations();
    expect(take(request({}))).toBeNull();
    expect(take(request({ key: "guessed" }))).toBeNull();
    expect(take(signed({ username: "loc:other" }))).toBeNull();
    const tampered = Buffer.from(signed());
    tampered[30] = (tampered[30] ?? 0) ^ 1;
    expect(take(tampered)).toBeNull();
    expect(take(Buffer.alloc(3))).toBeNull();
  });

  it("ignores requests from an address without a pair, and on the pair to skip", () => {
    const take = gatedNominations();
    // A pair under check counts (following needs data on it too, which only validated pairs deliver).
    expect(take(signed(), unvalidated.remoteAddr as Address)).toBe(unvalidated);
    expect(take(signed(), ["192.0.2.9", 4000])).toBeNull();
    expect(take(signed(), from, { type: "other" } as unknown as Protocol)).toBeNull();
    expect(gatedNominations(validated)(signed())).toBeNull();
  });
});

describe("PeerChecks behind the StunGuard", () => {
  /** The guard and PeerChecks as the agent connects them for the path on `pair`. */
  function gatedChecks(pair: CandidatePair | null = validated) {
    const guard = testGuard();
    const checks = new PeerChecks();
    let counted = 0;
    guard.onAuthenticatedRequest((r) => {
      if (checks.onPair(r, pair)) counted++;
    });
    return (data: Buffer, addr: Address = from, on: Protocol = protocol): number => {
      admit(guard, data, addr, on);
      return counted;
    };
  }

  it("counts the peer's signed checks on the path's pair, nominating or not, from either role, each once", () => {
    const feed = gatedChecks();
    const nominating = signed();
    expect(feed(nominating)).toBe(1);
    expect(feed(nominating)).toBe(1); // replayed (or retransmitted): nothing new
    expect(feed(signed({ nominate: false, controlling: false }))).toBe(2);
  });

  it("counts no forgery, no check of another pair or transport, and nothing without a pair", () => {
    const feed = gatedChecks();
    expect(feed(request({}))).toBe(0);
    expect(feed(request({ key: "guessed" }))).toBe(0);
    expect(feed(signed(), unvalidated.remoteAddr as Address)).toBe(0);
    expect(feed(signed(), from, { type: "other" } as unknown as Protocol)).toBe(0);
    expect(gatedChecks(null)(signed())).toBe(0);
  });
});
