// PeerNominations behind the StunGuard, wired as pair following wires them: only the peer's
// authenticated, fresh nominations on a pair of the agent are evidence; forgeries (which the guard
// refuses), replays, requests that nominate nothing and requests on other pairs are not.
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
import { PeerNominations } from "../../src/ice/peer-requests.js";
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

/** The guard and the nominations as followPeer connects them; `take` feeds one datagram through. */
function gatedNominations(skip: CandidatePair | null = null) {
  const guard = new StunGuard({
    credentials: () => ({ localUfrag: "loc", remoteUfrag: "rem", localPassword: PASSWORD }),
    knows: () => true,
    pairs: () => 2,
    refuses: () => false,
    log: pino({ level: "silent" }),
  });
  const nominations = new PeerNominations(conn);
  const taken: Array<CandidatePair | null> = [];
  guard.onAuthenticatedRequest((r) => taken.push(nominations.take(r, skip)));
  return (data: Buffer, addr: Address = from, on: Protocol = protocol): CandidatePair | null => {
    const before = taken.length;
    // werift parses the datagram (without checking it) and hands the gate both; what it cannot parse
    // never reaches the gate, so garbage goes with a well-formed message to show the bytes decide.
    let parsed: Message | undefined;
    try {
      parsed = parseMessage(data) as Message | undefined;
    } catch {
      parsed = undefined;
    }
    guard.admit(parsed ?? (parseMessage(signed()) as Message), data, addr, on);
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
    const guard = new StunGuard({
      credentials: () => ({ localUfrag: "loc", remoteUfrag: "rem", localPassword: PASSWORD }),
      knows: () => true,
      pairs: () => 2,
      refuses: () => false,
      log: pino({ level: "silent" }),
    });
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
