// The STUN gate in front of werift: signature checks on raw datagrams (stun-verify.ts), the budget
// (stun-budget.ts) and the guard that joins them (stun-guard.ts). Against a real werift agent:
// test/integration/ice-stun-attack.test.ts.
import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { classes, Message, methods, type Protocol, StunProtocol } from "werift-ice";
import { type CheckSource, DEFAULT_STUN_BUDGET, StunBudget, TokenBucket } from "../../src/ice/stun-budget.js";
import { type AuthenticatedRequest, StunGuard, type StunGuardOptions } from "../../src/ice/stun-guard.js";
import { type CheckCredentials, verifyCheck } from "../../src/ice/stun-verify.js";
import type { Address } from "../../src/ice/werift-internals.js";

// RFC 5769 section 2.1: a sample ICE connectivity check (USERNAME "evtj:h6vY"), signed and fingerprinted.
const RFC5769_REQUEST = Buffer.from(
  "000100582112a442b7e7a701bc34d686fa87dfae802200105354554e20746573742063" +
    "6c69656e7400240004" +
    "6e0001ff80290008932ff9b151263b36000600096576746a3a6836765920202000080014" +
    "9aeaa70cbfd8cb56781ef2b5b2d3f249c1b571a280280004e57a3bcf",
  "hex",
);
const RFC5769_CREDENTIALS: CheckCredentials = {
  localUfrag: "evtj",
  remoteUfrag: "h6vY",
  localPassword: "VOkJxbRl1RmTxUk/WvJxBt",
};

const ours: CheckCredentials = {
  localUfrag: "a1b2c3d4",
  remoteUfrag: "e5f6a7b8",
  localPassword: "0".repeat(32),
};

/** A check as werift builds one (buildRequest, then Protocol.request signs and fingerprints it). */
function check(
  fields: { username?: string; key?: string; fingerprint?: boolean; method?: number } = {},
): Message {
  const message = new Message(fields.method ?? methods.BINDING, classes.REQUEST);
  const username = "username" in fields ? fields.username : `${ours.localUfrag}:${ours.remoteUfrag}`;
  if (username !== undefined) message.setAttribute("USERNAME", username);
  message.setAttribute("PRIORITY", 1853824767).setAttribute("ICE-CONTROLLED", 5n);
  const key = "key" in fields ? fields.key : ours.localPassword;
  if (key !== undefined) message.addMessageIntegrity(Buffer.from(key, "utf8"));
  if (fields.fingerprint ?? true) message.addFingerprint();
  return message;
}

describe("verifyCheck", () => {
  it("accepts RFC 5769's sample request and refuses it under another password or ufrag", () => {
    expect(verifyCheck(RFC5769_REQUEST, RFC5769_CREDENTIALS)).toBe("ok");
    expect(
      verifyCheck(RFC5769_REQUEST, { ...RFC5769_CREDENTIALS, localPassword: "VOkJxbRl1RmTxUk/WvJxBu" }),
    ).toBe("bad-integrity");
    expect(verifyCheck(RFC5769_REQUEST, { ...RFC5769_CREDENTIALS, remoteUfrag: "h6vZ" })).toBe(
      "wrong-username",
    );
    expect(verifyCheck(RFC5769_REQUEST, { ...RFC5769_CREDENTIALS, localUfrag: "evtk" })).toBe(
      "wrong-username",
    );
  });

  it("accepts checks werift signs, with or without FINGERPRINT", () => {
    expect(verifyCheck(check().bytes, ours)).toBe("ok");
    expect(verifyCheck(check({ fingerprint: false }).bytes, ours)).toBe("ok");
  });

  it("before the peer's ufrag is known, accepts any '<ours>:x' that our password signs", () => {
    const unknownPeer = { ...ours, remoteUfrag: undefined };
    expect(verifyCheck(check({ username: `${ours.localUfrag}:whoever` }).bytes, unknownPeer)).toBe("ok");
    expect(verifyCheck(check({ username: `${ours.localUfrag}:` }).bytes, unknownPeer)).toBe("wrong-username");
    expect(verifyCheck(check({ username: `x${ours.localUfrag}:peer` }).bytes, unknownPeer)).toBe(
      "wrong-username",
    );
  });

  it("refuses checks without USERNAME, for another generation's ufrags, unsigned or signed with another key", () => {
    expect(verifyCheck(check({ username: undefined }).bytes, ours)).toBe("wrong-username");
    expect(verifyCheck(check({ username: `${ours.localUfrag}:00000000` }).bytes, ours)).toBe(
      "wrong-username",
    );
    expect(verifyCheck(check({ username: `deadbeef:${ours.remoteUfrag}` }).bytes, ours)).toBe(
      "wrong-username",
    );
    expect(verifyCheck(check({ key: undefined }).bytes, ours)).toBe("no-integrity");
    expect(verifyCheck(check({ key: randomBytes(16).toString("hex") }).bytes, ours)).toBe("bad-integrity");
  });

  it("refuses a signed check altered afterwards (FINGERPRINT recomputed or not)", () => {
    const bytes = check({ fingerprint: false }).bytes;
    const priorityAt = bytes.indexOf(Buffer.from([0x00, 0x24, 0x00, 0x04]));
    bytes[priorityAt + 7]! ^= 1;
    expect(verifyCheck(bytes, ours)).toBe("bad-integrity");
    const fingerprinted = check().bytes;
    fingerprinted[priorityAt + 7]! ^= 1;
    expect(verifyCheck(fingerprinted, ours)).toBe("bad-fingerprint");
  });

  it("refuses attributes after MESSAGE-INTEGRITY (an ICE-CONTROLLING appended to a sniffed check)", () => {
    const signed = check({ fingerprint: false }).bytes;
    const appended = Buffer.concat([signed, Buffer.from("802a0008ffffffffffffffff", "hex")]);
    appended.writeUInt16BE(appended.length - 20, 2);
    expect(verifyCheck(appended, ours)).toBe("malformed");
  });

  it("refuses other methods and classes, broken framing, and never throws on garbage", () => {
    expect(verifyCheck(check({ method: methods.ALLOCATE }).bytes, ours)).toBe("not-binding");
    const response = new Message(methods.BINDING, classes.RESPONSE).bytes;
    expect(verifyCheck(response, ours)).toBe("not-binding");
    const truncated = check().bytes.subarray(0, 40);
    expect(verifyCheck(truncated, ours)).toBe("not-binding");
    const overrun = check().bytes;
    overrun.writeUInt16BE(0xfff0, 22); // USERNAME claims more bytes than the message has
    expect(verifyCheck(overrun, ours)).toBe("malformed");
    for (let i = 0; i < 2000; i++) {
      const garbage = randomBytes(20 + (i % 120));
      garbage.writeUInt16BE(0x0001, 0);
      garbage.writeUInt16BE(garbage.length - 20, 2);
      garbage.writeUInt32BE(0x2112a442, 4);
      expect(verifyCheck(garbage, ours)).not.toBe("ok");
    }
  });
});

describe("StunBudget", () => {
  const source = (n: number, extra: Partial<CheckSource> = {}): CheckSource => ({
    host: "192.0.2.9",
    address: `192.0.2.9:${1000 + n}`,
    known: false,
    pairs: 1,
    ...extra,
  });

  it("a token bucket allows its burst, then refills at its rate up to the burst", () => {
    const bucket = new TokenBucket({ burst: 3, perSecond: 2 }, 0);
    expect([0, 0, 0, 0].map((t) => bucket.take(t))).toEqual([true, true, true, false]);
    expect(bucket.take(400)).toBe(false);
    expect(bucket.take(500)).toBe(true);
    expect([10_000, 10_000, 10_000, 10_000].map((t) => bucket.take(t))).toEqual([true, true, true, false]);
  });

  it("admits new source addresses from a slow bucket and at most maxPeerReflexive ever", () => {
    let now = 0;
    const budget = new StunBudget(DEFAULT_STUN_BUDGET, () => now);
    const burst = Array.from({ length: 100 }, (_, n) => budget.admit(source(n)));
    expect(burst.filter((a) => a === "ok")).toHaveLength(DEFAULT_STUN_BUDGET.newAddress.burst);
    expect(new Set(burst.slice(DEFAULT_STUN_BUDGET.newAddress.burst))).toEqual(
      new Set(["new-address-limited"]),
    );
    // An address admitted once is no longer new.
    expect(budget.admit(source(0))).toBe("ok");
    let admitted = DEFAULT_STUN_BUDGET.newAddress.burst;
    for (let n = 100; n < 10_000; n++) {
      now += 100;
      if (budget.admit(source(n, { host: `198.51.100.${n % 200}` })) === "ok") admitted++;
    }
    expect(admitted).toBe(DEFAULT_STUN_BUDGET.maxPeerReflexive);
    expect(budget.admit(source(20_000, { host: "203.0.113.1" }))).toBe("candidates-capped");
    // Addresses werift knows (signalled candidates) are not new, whatever the cap.
    expect(budget.admit(source(20_001, { host: "203.0.113.1", known: true }))).toBe("ok");
  });

  it("admits no new address once the pair cap is reached", () => {
    const budget = new StunBudget(DEFAULT_STUN_BUDGET, () => 0);
    expect(budget.admit(source(1, { pairs: DEFAULT_STUN_BUDGET.maxPairs }))).toBe("pairs-capped");
    expect(budget.admit(source(2, { known: true, pairs: DEFAULT_STUN_BUDGET.maxPairs }))).toBe("ok");
  });

  it("rate-limits each source host, and the agent over all hosts", () => {
    let now = 0;
    const budget = new StunBudget(DEFAULT_STUN_BUDGET, () => now);
    const { perHost, perAgent } = DEFAULT_STUN_BUDGET;
    const fromHost = Array.from({ length: perHost.burst + 10 }, () =>
      budget.admit(source(1, { known: true })),
    );
    expect(fromHost.filter((a) => a === "ok")).toHaveLength(perHost.burst);
    now += 1000;
    expect(budget.admit(source(1, { known: true }))).toBe("ok");
    let agentWide = 0;
    for (let n = 0; n < 1000; n++) {
      if (budget.admit(source(n, { known: true, host: `198.51.100.${n % 100}` })) === "ok") agentWide++;
    }
    expect(agentWide).toBeLessThanOrEqual(perAgent.burst);
    expect(agentWide).toBeGreaterThan(perAgent.burst - 25);
  });
});

describe("StunGuard", () => {
  const protocol = new StunProtocol() as Protocol;
  const remote: Address = ["192.0.2.9", 4000];

  function guard(extra: Partial<StunGuardOptions> = {}, debug: unknown[] = []): StunGuard {
    const log = pino({ level: "debug" }, { write: (line: string) => debug.push(JSON.parse(line)) });
    return new StunGuard({
      credentials: () => ours,
      knows: () => true,
      pairs: () => 1,
      refuses: ([host]) => host.startsWith("10.7."),
      log,
      ...extra,
    });
  }

  it("hands signed checks to werift and tells subscribers; drops and counts the rest", () => {
    const g = guard();
    const seen: AuthenticatedRequest[] = [];
    const unsubscribe = g.onAuthenticatedRequest((r) => seen.push(r));
    const signed = check();
    expect(g.admit(signed, signed.bytes, remote, protocol)).toBe(true);
    const nominating = check().setAttribute("USE-CANDIDATE", null);
    const nominatingSigned = check();
    // USE-CANDIDATE as werift's parser reports it: the listener reads the parsed message.
    expect(g.admit(nominating, nominatingSigned.bytes, remote, protocol)).toBe(true);
    expect(seen).toEqual([
      {
        protocol,
        local: undefined,
        remote,
        useCandidate: false,
        controlling: false,
        transactionId: signed.transactionIdHex,
      },
      {
        protocol,
        local: undefined,
        remote,
        useCandidate: true,
        controlling: false,
        transactionId: nominating.transactionIdHex,
      },
    ]);
    const forged = check({ key: "guess" });
    expect(g.admit(forged, forged.bytes, remote, protocol)).toBe(false);
    expect(g.admit(signed, signed.bytes, ["10.7.0.1", 4000], protocol)).toBe(false);
    expect(g.admit(signed, undefined, remote, protocol)).toBe(false);
    unsubscribe();
    expect(g.admit(signed, signed.bytes, remote, protocol)).toBe(true);
    expect(seen).toHaveLength(2);
    expect(g.stats.admitted).toBe(3);
    expect(g.stats.dropped).toMatchObject({ "bad-integrity": 1, "refused-address": 1, "not-binding": 1 });
  });

  it("a throwing subscriber neither stops the check nor the other subscribers", () => {
    const g = guard();
    let called = 0;
    g.onAuthenticatedRequest(() => {
      throw new Error("subscriber bug");
    });
    g.onAuthenticatedRequest(() => called++);
    const signed = check();
    expect(g.admit(signed, signed.bytes, remote, protocol)).toBe(true);
    expect(called).toBe(1);
  });

  it("logs drops at debug at most every 10 s, with the count since the last log and no credentials", () => {
    let now = 0;
    const logged: unknown[] = [];
    const g = guard({ now: () => now }, logged);
    const forged = check({ key: "guess" });
    for (let i = 0; i < 500; i++) {
      now += 50; // 25 s in all
      g.admit(forged, forged.bytes, remote, protocol);
    }
    expect(logged).toHaveLength(3);
    expect(logged[1]).toMatchObject({
      level: 20,
      reason: "bad-integrity",
      dropped: 200,
      remote: "192.0.2.9",
    });
    expect(JSON.stringify(logged)).not.toContain(ours.localPassword);
    expect(JSON.stringify(logged)).not.toContain(ours.localUfrag);
  });
});
