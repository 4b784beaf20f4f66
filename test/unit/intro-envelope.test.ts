import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EnvelopeCodec, type EnvelopeCodecOptions, ReplayWindow } from "../../src/signalling/envelope.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import type { SealedEnvelope } from "../../src/signalling/protocol.js";

function codec(privateKey: Uint8Array, options: Omit<EnvelopeCodecOptions, "keys"> = {}): EnvelopeCodec {
  return new EnvelopeCodec({ keys: new LocalKeyAgreement(privateKey), ...options });
}

/** Derives the keys between each two of the codecs (what the intro client does on declaring a peer). */
async function introduce(...codecs: EnvelopeCodec[]): Promise<void> {
  for (const a of codecs) for (const b of codecs) if (a !== b) await a.prepare(b.publicKey);
}

async function pair(options: { now?: () => number } = {}) {
  const alice = codec(randomBytes(32), options);
  const bob = codec(randomBytes(32), options);
  await introduce(alice, bob);
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
  it("opens what the peer sealed, any JSON payload", async () => {
    const { alice, bob } = await pair();
    for (const payload of [{ candidates: ["a", "b"], ufrag: "x" }, "text", 42, null, [1, { deep: true }]]) {
      const opened = bob.open(alice.publicKey, alice.seal(bob.publicKey, payload));
      expect(opened).toEqual({ ok: true, payload });
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
    expect(bob.open(alice.publicKey, envelope)).toEqual({ ok: true, payload: "hi" });
  });

  it("drops a replayed envelope", async () => {
    const { alice, bob } = await pair();
    const envelope = alice.seal(bob.publicKey, "once");
    expect(bob.open(alice.publicKey, envelope).ok).toBe(true);
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
    expect(bob.open(alice.publicKey, recent).ok).toBe(true);
  });

  it("drops an envelope reflected back to its sender or opened as if from someone else", async () => {
    const { alice, bob } = await pair();
    const carol = codec(randomBytes(32));
    await introduce(alice, bob, carol);
    const envelope = alice.seal(bob.publicKey, "for bob");
    expect(alice.open(bob.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(bob.open(carol.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
    expect(carol.open(alice.publicKey, envelope)).toMatchObject({ ok: false, reason: "undecryptable" });
  });

  it("accepts a restarted sender (new epoch, sequence from 0) and still rejects replays of the old one", async () => {
    const bob = codec(randomBytes(32));
    const alicePrivate = randomBytes(32);
    const aliceBefore = codec(alicePrivate);
    await introduce(aliceBefore, bob);
    const first = aliceBefore.seal(bob.publicKey, "before restart");
    expect(bob.open(aliceBefore.publicKey, first).ok).toBe(true);

    const aliceAfter = codec(alicePrivate);
    await aliceAfter.prepare(bob.publicKey);
    expect(aliceAfter.epoch).not.toBe(aliceBefore.epoch);
    expect(bob.open(aliceAfter.publicKey, aliceAfter.seal(bob.publicKey, "after restart"))).toEqual({
      ok: true,
      payload: "after restart",
    });
    expect(bob.open(aliceBefore.publicKey, first)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("rejects envelopes of an epoch it had to forget", async () => {
    let now = 1_000_000;
    const bob = codec(randomBytes(32), { now: () => now, epochsPerPeer: 2 });
    const alicePrivate = randomBytes(32);
    const incarnations = [0, 1, 2].map((i) => codec(alicePrivate, { epoch: `epoch-${i}`, now: () => now }));
    await introduce(bob, ...incarnations);
    const sealed = incarnations.map((codec) => {
      now += 1_000;
      return codec.seal(bob.publicKey, codec.epoch);
    });
    for (const envelope of sealed) expect(bob.open(incarnations[0]!.publicKey, envelope).ok).toBe(true);
    // epoch-0 was evicted (only 2 kept); replaying it is still recognised.
    expect(bob.open(incarnations[0]!.publicKey, sealed[0]!)).toMatchObject({ ok: false, reason: "replayed" });
  });

  it("reports a bad peer key and refuses a payload JSON cannot carry", async () => {
    const { alice, bob } = await pair();
    expect(bob.open("not a key", alice.seal(bob.publicKey, 1))).toMatchObject({
      ok: false,
      reason: "bad-peer-key",
    });
    expect(() => alice.seal(bob.publicKey, { big: 1n })).toThrow(/JSON-serialisable/);
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
    expect(() => alice.seal(bob.publicKey, "early")).toThrow(/not derived yet/);
    expect(alice.open(bob.publicKey, bob.seal(alice.publicKey, "early"))).toMatchObject({
      ok: false,
      reason: "bad-peer-key",
    });
    await Promise.all([alice.prepare(bob.publicKey), alice.prepare(bob.publicKey)]);
    await alice.prepare(bob.publicKey);
    expect(agreements).toBe(1);
    expect(bob.open(alice.publicKey, alice.seal(bob.publicKey, "now"))).toEqual({ ok: true, payload: "now" });
  });
});
