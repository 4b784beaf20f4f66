// PeerRequestVerifier: only the peer's authenticated, fresh Binding requests on a validated pair are
// evidence for pair following; forgeries, replays and requests on other pairs are not.
import { describe, expect, it } from "vitest";
import {
  type CandidatePair,
  CandidatePairState,
  type Connection,
  classes,
  Message,
  methods,
} from "werift-ice";
import { PeerRequestVerifier } from "../../src/ice/peer-requests.js";

const protocol = { type: "stun" };
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
const conn = {
  localUsername: "loc",
  remoteUsername: "rem",
  localPassword: "local-password-0123456789",
  checkList: [validated, unvalidated],
} as unknown as Connection;

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

const from = validated.remoteAddr;
const signed = (extra: Parameters<typeof request>[0] = {}) =>
  request({ key: "local-password-0123456789", ...extra });

describe("PeerRequestVerifier", () => {
  it("takes the peer's signed nomination on a validated pair, once (a replay proves nothing new)", () => {
    const verifier = new PeerRequestVerifier(conn);
    const data = signed();
    expect(verifier.verify(protocol as never, data, from, null)).toEqual({
      pair: validated,
      nominates: true,
    });
    expect(verifier.verify(protocol as never, data, from, null)).toBeNull();
    expect(verifier.verify(protocol as never, signed({ nominate: false }), from, null)).toEqual({
      pair: validated,
      nominates: false,
    });
    expect(verifier.verify(protocol as never, signed({ controlling: false }), from, null)?.nominates).toBe(
      false,
    );
  });

  it("drops forgeries: no integrity, a wrong key, another ufrag pair, a tampered byte", () => {
    const verifier = new PeerRequestVerifier(conn);
    expect(verifier.verify(protocol as never, request({}), from, null)).toBeNull();
    expect(verifier.verify(protocol as never, request({ key: "guessed" }), from, null)).toBeNull();
    expect(verifier.verify(protocol as never, signed({ username: "loc:other" }), from, null)).toBeNull();
    const tampered = Buffer.from(signed());
    tampered[30] = (tampered[30] ?? 0) ^ 1;
    expect(verifier.verify(protocol as never, tampered, from, null)).toBeNull();
    expect(verifier.verify(protocol as never, Buffer.alloc(3), from, null)).toBeNull();
  });

  it("ignores requests from an address without a pair, and on the pair to skip", () => {
    const verifier = new PeerRequestVerifier(conn);
    // A pair under check counts (following needs data on it too, which only validated pairs deliver).
    expect(verifier.verify(protocol as never, signed(), unvalidated.remoteAddr, null)?.pair).toBe(
      unvalidated,
    );
    expect(verifier.verify(protocol as never, signed(), ["192.0.2.9", 4000], null)).toBeNull();
    expect(verifier.verify({ type: "other" } as never, signed(), from, null)).toBeNull();
    expect(verifier.verify(protocol as never, signed(), from, validated)).toBeNull();
  });
});
