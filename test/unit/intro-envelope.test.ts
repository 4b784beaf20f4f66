import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EnvelopeCodec, ReplayWindow } from "../../src/signalling/envelope.js";
import type { SealedEnvelope } from "../../src/signalling/protocol.js";

function pair(options: { now?: () => number } = {}) {
  const alice = new EnvelopeCodec({ privateKey: randomBytes(32), ...options });
  const bob = new EnvelopeCodec({ privateKey: randomBytes(32), ...options });
  return { alice, bob };
}

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
  it("opens what the peer sealed, any JSON payload", () => {
    const { alice, bob } = pair();
    for (const payload of [{ candidates: ["a", "b"], ufrag: "x" }, "text", 42, null, [1, { deep: true }]]) {
      const opened = bob.open(alice.publicKey, alice.seal(bob.publicKey, payload));
      expect(opened).toEqual({ ok: true, payload });
    }
  });

  it("hides the payload: the sealed form has only a nonce and ciphertext", () => {
    const { alice, bob } = pair();
    const envelope = alice.seal(bob.publicKey, { secret: "candidate 192.0.2.7 51820" });
    expect(Object.keys(envelope).sort()).toEqual(["c", "n"]);
    expect(JSON.stringify(envelope)).not.toContain("192.0.2.7");
    expect(Buffer.from(envelope.c, "base64").toString("latin1")).not.toContain("192.0.2.7");
  });

  it("drops a tampered envelope (ciphertext or nonce)", () => {
    const { alice, bob } = pair();
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
    expect(bob.open(alice.publicKey, envelope)).toEqual({ ok: true, payload: "hi" });
  });

  it("drops a replayed envelope", () => {
    const { alice, bob } = pair();
    const envelope = alice.seal(bob.publicKey, "once");
    expect(bob.open(alice.publicKey, envelope).ok).toBe(true);
    expect(bob.open(alice.publicKey, envelope)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("drops a stale envelope and one dated too far in the future", () => {
    // A fixed clock: the margins (1 s past the 60 s limits) must not depend on how fast this runs.
    const now = 1_700_000_000_000;
    const { alice, bob } = pair({ now: () => now });
    const old = alice.seal(bob.publicKey, "old", now - 61_000);
    expect(bob.open(alice.publicKey, old)).toMatchObject({ ok: false, reason: "stale" });
    const future = alice.seal(bob.publicKey, "future", now + 61_000);
    expect(bob.open(alice.publicKey, future)).toMatchObject({ ok: false, reason: "stale" });
    const recent = alice.seal(bob.publicKey, "recent", now - 30_000);
    expect(bob.open(alice.publicKey, recent).ok).toBe(true);
  });

  it("drops an envelope reflected back to its sender or opened as if from someone else", () => {
    const { alice, bob } = pair();
    const carol = new EnvelopeCodec({ privateKey: randomBytes(32) });
    const envelope = alice.seal(bob.publicKey, "for bob");
    expect(alice.open(bob.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(bob.open(carol.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(carol.open(alice.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
  });

  it("accepts a restarted sender (new epoch, sequence from 0) and still rejects replays of the old one", () => {
    const bob = new EnvelopeCodec({ privateKey: randomBytes(32) });
    const alicePrivate = randomBytes(32);
    const aliceBefore = new EnvelopeCodec({ privateKey: alicePrivate });
    const first = aliceBefore.seal(bob.publicKey, "before restart");
    expect(bob.open(aliceBefore.publicKey, first).ok).toBe(true);

    const aliceAfter = new EnvelopeCodec({ privateKey: alicePrivate });
    expect(aliceAfter.epoch).not.toBe(aliceBefore.epoch);
    expect(bob.open(aliceAfter.publicKey, aliceAfter.seal(bob.publicKey, "after restart"))).toEqual({
      ok: true,
      payload: "after restart",
    });
    expect(bob.open(aliceBefore.publicKey, first)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("rejects envelopes of an epoch it had to forget", () => {
    let now = 1_000_000;
    const bob = new EnvelopeCodec({ privateKey: randomBytes(32), now: () => now, epochsPerPeer: 2 });
    const alicePrivate = randomBytes(32);
    const incarnations = [0, 1, 2].map(
      (i) => new EnvelopeCodec({ privateKey: alicePrivate, epoch: `epoch-${i}`, now: () => now }),
    );
    const sealed = incarnations.map((codec) => {
      now += 1_000;
      return codec.seal(bob.publicKey, codec.epoch);
    });
    for (const envelope of sealed) expect(bob.open(incarnations[0]!.publicKey, envelope).ok).toBe(true);
    // epoch-0 was evicted (only 2 kept); replaying it is still recognised.
    expect(bob.open(incarnations[0]!.publicKey, sealed[0]!)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("reports a bad peer key and refuses a payload JSON cannot carry", () => {
    const { alice, bob } = pair();
    expect(bob.open("not a key", alice.seal(bob.publicKey, 1))).toMatchObject({
      ok: false,
      reason: "bad-peer-key",
    });
    expect(() => alice.seal(bob.publicKey, { big: 1n })).toThrow(/JSON-serialisable/);
  });
});
