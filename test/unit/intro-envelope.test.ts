import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EnvelopeCodec, type EnvelopeCodecOptions, ReplayWindow } from "../../src/signalling/envelope.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import type { SealedEnvelope } from "../../src/signalling/protocol.js";
import { envelopeKey, xchachaSeal } from "../../src/signalling/signalling-crypto.js";

function codec(privateKey: Uint8Array, options: Omit<EnvelopeCodecOptions, "keys"> = {}): EnvelopeCodec {
  return new EnvelopeCodec({ keys: new LocalKeyAgreement(privateKey), ...options });
}

/** Derives the keys between each two of the codecs (what the intro client does on declaring a peer). */
async function introduce(...codecs: EnvelopeCodec[]): Promise<void> {
  for (const a of codecs) for (const b of codecs) if (a !== b) await a.prepare(b.publicKey);
}

/** Each tells the other its epoch (hellos both ways), as the intro client does when the peer comes online. */
function greet(a: EnvelopeCodec, b: EnvelopeCodec): void {
  expect(b.open(a.publicKey, a.sealHello(b.publicKey))).toMatchObject({ ok: true, kind: "hello" });
  expect(a.open(b.publicKey, b.sealHello(a.publicKey))).toMatchObject({ ok: true, kind: "hello" });
}

async function pair(options: { now?: () => number } = {}) {
  const alice = codec(randomBytes(32), options);
  const bob = codec(randomBytes(32), options);
  await introduce(alice, bob);
  greet(alice, bob);
  return { alice, bob };
}

const delivered = (payload: unknown) => ({ ok: true, kind: "payload", payload });

function tamper(envelope: SealedEnvelope, field: "n" | "c", byte = 5): SealedEnvelope {
  const bytes = Buffer.from(envelope[field], "base64");
  bytes[byte]! ^= 0x40;
  return { ...envelope, [field]: bytes.toString("base64") };
}

describe("ReplayWindow", () => {
  it("accepts each sequence number once, out of order inside the window", () => {
    const window = new ReplayWindow(64);
    expect(window.accept(0)).toBe(true);
    expect(window.accept(0)).toBe(false);
    expect(window.accept(5)).toBe(true);
    expect(window.accept(3)).toBe(true);
    expect(window.accept(3)).toBe(false);
    expect(window.accept(4)).toBe(true);
    expect(window.accept(5)).toBe(false);
  });

  it("rejects numbers that fell out of the window and forgets slots it moved past", () => {
    const window = new ReplayWindow(64);
    expect(window.accept(10)).toBe(true);
    expect(window.accept(200)).toBe(true);
    expect(window.accept(10)).toBe(false); // too old now
    expect(window.accept(137)).toBe(true); // 200 - 137 = 63 < 64, never seen
    expect(window.accept(136)).toBe(false); // 64 behind
    expect(window.accept(10 + 64 * 3)).toBe(true); // same ring slot as 10, but a fresh number
    expect(window.accept(10 + 64 * 3)).toBe(false);
  });
});

describe("EnvelopeCodec", () => {
  it("opens what the peer sealed, any JSON payload", async () => {
    const { alice, bob } = await pair();
    for (const payload of [{ candidates: ["a", "b"], ufrag: "x" }, "text", 42, null, [1, { deep: true }]]) {
      expect(bob.open(alice.publicKey, alice.seal(bob.publicKey, payload))).toEqual(delivered(payload));
    }
  });

  it("hides the payload: the sealed form has only a nonce and ciphertext", async () => {
    const { alice, bob } = await pair();
    const envelope = alice.seal(bob.publicKey, { secret: "candidate 192.0.2.7 51820" });
    expect(Object.keys(envelope).sort()).toEqual(["c", "n"]);
    expect(JSON.stringify(envelope)).not.toContain("192.0.2.7");
    expect(Buffer.from(envelope.c, "base64").toString("latin1")).not.toContain("192.0.2.7");
  });

  it("drops a tampered envelope (ciphertext or nonce)", async () => {
    const { alice, bob } = await pair();
    const envelope = alice.seal(bob.publicKey, "hi");
    expect(bob.open(alice.publicKey, tamper(envelope, "c"))).toMatchObject({
      ok: false,
      reason: "undecryptable",
    });
    expect(bob.open(alice.publicKey, tamper(envelope, "n"))).toMatchObject({
      ok: false,
      reason: "undecryptable",
    });
    // The untouched original still opens: a forgery does not burn the sequence number.
    expect(bob.open(alice.publicKey, envelope)).toEqual(delivered("hi"));
  });

  it("drops a replayed envelope", async () => {
    const { alice, bob } = await pair();
    const envelope = alice.seal(bob.publicKey, "once");
    expect(bob.open(alice.publicKey, envelope)).toEqual(delivered("once"));
    expect(bob.open(alice.publicKey, envelope)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("drops a stale envelope and one dated too far in the future", async () => {
    // A fixed clock: the margins (1 s past the 60 s limits) must not depend on how fast this runs.
    const now = 1_700_000_000_000;
    const { alice, bob } = await pair({ now: () => now });
    const old = alice.seal(bob.publicKey, "old", now - 61_000);
    expect(bob.open(alice.publicKey, old)).toMatchObject({ ok: false, reason: "stale" });
    const future = alice.seal(bob.publicKey, "future", now + 61_000);
    expect(bob.open(alice.publicKey, future)).toMatchObject({ ok: false, reason: "stale" });
    const recent = alice.seal(bob.publicKey, "recent", now - 30_000);
    expect(bob.open(alice.publicKey, recent)).toEqual(delivered("recent"));
  });

  it("drops an envelope reflected back to its sender or opened as if from someone else", async () => {
    const { alice, bob } = await pair();
    const carol = codec(randomBytes(32));
    await introduce(alice, bob, carol);
    greet(alice, carol);
    greet(bob, carol);
    const envelope = alice.seal(bob.publicKey, "for bob");
    expect(alice.open(bob.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(bob.open(carol.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(carol.open(alice.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
  });

  it("seals a payload only once the peer's epoch is known: a hello teaches it and asks for an answer", async () => {
    const alice = codec(randomBytes(32));
    const bob = codec(randomBytes(32));
    await introduce(alice, bob);
    expect(alice.knowsPeerEpoch(bob.publicKey)).toBe(false);
    expect(() => alice.seal(bob.publicKey, "early")).toThrow(/epoch is not known/);
    // Bob's hello does not know Alice's epoch: Alice must answer it.
    expect(alice.open(bob.publicKey, bob.sealHello(alice.publicKey))).toEqual({
      ok: true,
      kind: "hello",
      answer: true,
    });
    expect(alice.knowsPeerEpoch(bob.publicKey)).toBe(true);
    // Alice's answer echoes Bob's epoch: nothing more to answer.
    expect(bob.open(alice.publicKey, alice.sealHello(bob.publicKey))).toEqual({
      ok: true,
      kind: "hello",
      answer: false,
    });
    expect(alice.open(bob.publicKey, bob.seal(alice.publicKey, "now"))).toEqual(delivered("now"));
    expect(bob.open(alice.publicKey, alice.seal(bob.publicKey, "and back"))).toEqual(delivered("and back"));
    alice.unlearnPeerEpoch(bob.publicKey);
    expect(() => alice.seal(bob.publicKey, "after unlearning")).toThrow(/epoch is not known/);
  });

  it("drops a replay after the receiver restarted, and accepts the sender's fresh envelope at once", async () => {
    const alice = codec(randomBytes(32));
    const bobPrivate = randomBytes(32);
    const bob = codec(bobPrivate);
    await introduce(alice, bob);
    greet(alice, bob);
    const recorded = alice.seal(bob.publicKey, { ice: "restart" });
    expect(bob.open(alice.publicKey, recorded)).toEqual(delivered({ ice: "restart" }));

    const bobAgain = codec(bobPrivate);
    await introduce(alice, bobAgain);
    expect(bobAgain.epochFor(alice.publicKey)).not.toBe(bob.epochFor(alice.publicKey));
    // Before any hello: the recorded envelope echoes an epoch the new Bob never had.
    expect(bobAgain.open(alice.publicKey, recorded)).toMatchObject({
      ok: false,
      reason: "replayed",
      answer: true,
    });
    alice.unlearnPeerEpoch(bobAgain.publicKey); // Bob went offline and came back
    greet(alice, bobAgain);
    expect(bobAgain.open(alice.publicKey, recorded)).toMatchObject({ ok: false, reason: "replayed" });
    expect(bobAgain.open(alice.publicKey, alice.seal(bobAgain.publicKey, "fresh"))).toEqual(
      delivered("fresh"),
    );
  });

  it("drops a replay after the receiver un-declared and re-declared the sender", async () => {
    const { alice, bob } = await pair();
    const recorded = alice.seal(bob.publicKey, { ice: "restart" });
    expect(bob.open(alice.publicKey, recorded).ok).toBe(true);
    bob.forget(alice.publicKey);
    await bob.prepare(alice.publicKey);
    alice.unlearnPeerEpoch(bob.publicKey);
    greet(alice, bob);
    expect(bob.open(alice.publicKey, recorded)).toMatchObject({ ok: false, reason: "replayed" });
    expect(bob.open(alice.publicKey, alice.seal(bob.publicKey, "fresh"))).toEqual(delivered("fresh"));
  });

  it("accepts a restarted sender (new epoch, sequence from 0) and still rejects replays of the old one", async () => {
    const bob = codec(randomBytes(32));
    const alicePrivate = randomBytes(32);
    const aliceBefore = codec(alicePrivate);
    await introduce(aliceBefore, bob);
    greet(aliceBefore, bob);
    const first = aliceBefore.seal(bob.publicKey, "before restart");
    expect(bob.open(aliceBefore.publicKey, first).ok).toBe(true);

    const aliceAfter = codec(alicePrivate);
    await introduce(aliceAfter, bob);
    expect(aliceAfter.epochFor(bob.publicKey)).not.toBe(aliceBefore.epochFor(bob.publicKey));
    greet(aliceAfter, bob);
    expect(bob.open(aliceAfter.publicKey, aliceAfter.seal(bob.publicKey, "after restart"))).toEqual(
      delivered("after restart"),
    );
    expect(bob.open(aliceBefore.publicKey, first)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("never forgets a sender epoch's window: one too many starts a new epoch of its own, refusing all older envelopes", async () => {
    const bob = codec(randomBytes(32), { epochsPerPeer: 2 });
    const alicePrivate = randomBytes(32);
    const incarnations = [0, 1, 2].map(() => codec(alicePrivate));
    await introduce(bob, ...incarnations);
    const sealed = incarnations.slice(0, 2).map((alice, i) => {
      greet(alice, bob);
      const envelope = alice.seal(bob.publicKey, i);
      expect(bob.open(alice.publicKey, envelope)).toEqual(delivered(i));
      return envelope;
    });
    const bobEpoch = bob.epochFor(incarnations[0]!.publicKey);
    const third = incarnations[2]!;
    greet(third, bob);
    expect(bob.open(third.publicKey, third.seal(bob.publicKey, 2))).toMatchObject({
      ok: false,
      reason: "replayed",
      answer: true,
    });
    expect(bob.epochFor(third.publicKey)).not.toBe(bobEpoch);
    for (const envelope of sealed)
      expect(bob.open(third.publicKey, envelope)).toMatchObject({ ok: false, reason: "replayed" });
    // Bob's answer (a hello) teaches the new epoch; then the third incarnation gets through.
    expect(third.open(bob.publicKey, bob.sealHello(third.publicKey))).toMatchObject({
      ok: true,
      kind: "hello",
    });
    expect(bob.open(third.publicKey, third.seal(bob.publicKey, "again"))).toEqual(delivered("again"));
  });

  it("does not depend on the clocks agreeing, within the 60 s allowance either way", async () => {
    for (const skewMs of [59_000, -59_000]) {
      const alice = codec(randomBytes(32), { now: () => Date.now() + skewMs });
      const bobPrivate = randomBytes(32);
      const bob = codec(bobPrivate);
      await introduce(alice, bob);
      greet(alice, bob);
      const recorded = alice.seal(bob.publicKey, "recorded");
      expect(bob.open(alice.publicKey, recorded)).toEqual(delivered("recorded"));
      const bobAgain = codec(bobPrivate);
      await introduce(alice, bobAgain);
      alice.unlearnPeerEpoch(bobAgain.publicKey);
      greet(alice, bobAgain);
      expect(bobAgain.open(alice.publicKey, alice.seal(bobAgain.publicKey, "fresh"))).toEqual(
        delivered("fresh"),
      );
      expect(bobAgain.open(alice.publicKey, recorded)).toMatchObject({ ok: false, reason: "replayed" });
    }
  });

  it("treats a payload that echoes nothing, and an envelope of the older format, as malformed", async () => {
    const alicePrivate = randomBytes(32);
    const alice = new LocalKeyAgreement(alicePrivate);
    const bob = codec(randomBytes(32));
    await bob.prepare(alice.publicKey);
    const shared = alice.x25519Now(Buffer.from(bob.publicKey, "base64"));
    const key = envelopeKey(
      shared,
      Buffer.from(alice.publicKey, "base64"),
      Buffer.from(bob.publicKey, "base64"),
    );
    const sealRaw = (plaintext: object): SealedEnvelope => {
      const nonce = randomBytes(24);
      const aad = Buffer.from("tunnelbore envelope v1");
      const sealed = xchachaSeal(key, nonce, Buffer.from(JSON.stringify(plaintext)), aad);
      return { n: nonce.toString("base64"), c: sealed.toString("base64") };
    };
    const t = Date.now();
    expect(bob.open(alice.publicKey, sealRaw({ e: "x", q: 0, t, p: "no echo" }))).toMatchObject({
      ok: false,
      reason: "malformed",
    });
    expect(bob.open(alice.publicKey, sealRaw({ e: "x", q: 1, t, p: 1, extra: true }))).toMatchObject({
      ok: false,
      reason: "malformed",
    });
    // The same shape echoing Bob's epoch is delivered: only the echo was missing.
    const r = bob.epochFor(alice.publicKey);
    expect(bob.open(alice.publicKey, sealRaw({ e: "x", r, q: 2, t, p: "echo" }))).toEqual(delivered("echo"));
  });

  it("reports a bad peer key and refuses a payload JSON cannot carry", async () => {
    const { alice, bob } = await pair();
    expect(bob.open("not a key", alice.seal(bob.publicKey, 1))).toMatchObject({
      ok: false,
      reason: "bad-peer-key",
    });
    expect(() => alice.seal(bob.publicKey, { big: 1n })).toThrow(/JSON-serialisable/);
    expect(() => alice.seal(bob.publicKey, undefined)).toThrow(/not a payload/);
    await expect(bob.prepare("not a key")).rejects.toThrow(/32 bytes/);
  });

  it("seals and opens only for a peer whose keys were derived, with one X25519 per peer", async () => {
    const alicePrivate = randomBytes(32);
    const local = new LocalKeyAgreement(alicePrivate);
    let agreements = 0;
    const counting = {
      publicKey: local.publicKey,
      x25519: (peer: Uint8Array) => {
        agreements++;
        return local.x25519(peer);
      },
    };
    const alice = new EnvelopeCodec({ keys: counting });
    const bob = codec(randomBytes(32));
    await bob.prepare(alice.publicKey);
    expect(() => alice.sealHello(bob.publicKey)).toThrow(/not derived yet/);
    expect(alice.open(bob.publicKey, bob.sealHello(alice.publicKey))).toMatchObject({
      ok: false,
      reason: "bad-peer-key",
    });
    await Promise.all([alice.prepare(bob.publicKey), alice.prepare(bob.publicKey)]);
    await alice.prepare(bob.publicKey);
    expect(agreements).toBe(1);
    greet(alice, bob);
    expect(bob.open(alice.publicKey, alice.seal(bob.publicKey, "now"))).toEqual(delivered("now"));
  });
});
