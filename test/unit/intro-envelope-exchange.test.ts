// The epoch exchange between two intro clients, without a server: what each transmits is handed to
// the other by the test, so it decides what arrives, when, and what is replayed.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { EnvelopeExchange } from "../../src/intro-client/envelope-exchange.js";
import { createLogger } from "../../src/log.js";
import { EnvelopeCodec } from "../../src/signalling/envelope.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import type { SealedEnvelope } from "../../src/signalling/protocol.js";
import { waitFor } from "../support/wait-for.js";

const silent = createLogger("test", "silent");

interface Side {
  publicKey: string;
  exchange: EnvelopeExchange;
  /** What it transmitted and the test has not handed over yet. */
  outbox: SealedEnvelope[];
  delivered: unknown[];
  dropped: string[];
}

async function side(privateKey = randomBytes(32)): Promise<Side & { codec: EnvelopeCodec }> {
  const codec = new EnvelopeCodec({ keys: new LocalKeyAgreement(privateKey) });
  const outbox: SealedEnvelope[] = [];
  const delivered: unknown[] = [];
  const dropped: string[] = [];
  const exchange = new EnvelopeExchange({
    codec,
    log: silent,
    transmit: (_peer, envelope) => outbox.push(envelope),
    deliver: (_peer, payload) => delivered.push(payload),
    dropped: (_peer, reason) => dropped.push(reason),
  });
  return { publicKey: codec.publicKey, codec, exchange, outbox, delivered, dropped };
}

async function pair() {
  const alice = await side();
  const bob = await side();
  await alice.codec.prepare(bob.publicKey);
  await bob.codec.prepare(alice.publicKey);
  return { alice, bob };
}

/** Hands everything `from` transmitted to `to`; returns what was handed. */
function handOver(from: Side, to: Side): SealedEnvelope[] {
  const envelopes = from.outbox.splice(0);
  for (const envelope of envelopes) to.exchange.receive(from.publicKey, envelope);
  return envelopes;
}

describe("EnvelopeExchange", () => {
  it("holds payloads sent before the peer's epoch is known and sends them, in order, once its hello arrives", async () => {
    const { alice, bob } = await pair();
    alice.exchange.peerOnline(bob.publicKey);
    bob.exchange.peerOnline(alice.publicKey);
    alice.exchange.send(bob.publicKey, "first");
    alice.exchange.send(bob.publicKey, "second");
    expect(alice.outbox).toHaveLength(1); // the hello only
    handOver(bob, alice); // Bob's hello: Alice learns his epoch and sends what waited
    expect(alice.outbox).toHaveLength(3);
    handOver(alice, bob);
    expect(bob.delivered).toEqual(["first", "second"]);
    expect(bob.dropped).toEqual([]);
  });

  it("refuses up front a payload too large or not serialisable, and at most 64 waiting", async () => {
    const { alice, bob } = await pair();
    alice.exchange.peerOnline(bob.publicKey);
    expect(() => alice.exchange.send(bob.publicKey, "x".repeat(70_000))).toThrow(/exceeds/);
    expect(() => alice.exchange.send(bob.publicKey, { big: 1n })).toThrow(/JSON-serialisable/);
    expect(() => alice.exchange.send(bob.publicKey, undefined)).toThrow(/JSON-serialisable/);
    for (let i = 0; i < 64; i++) alice.exchange.send(bob.publicKey, i);
    expect(() => alice.exchange.send(bob.publicKey, 64)).toThrow(/too many messages waiting/);
  });

  it("drops what waited when the peer goes offline", async () => {
    const { alice, bob } = await pair();
    alice.exchange.peerOnline(bob.publicKey);
    alice.exchange.send(bob.publicKey, "lost with the peer");
    alice.exchange.peerOffline(bob.publicKey);
    alice.exchange.peerOnline(bob.publicKey);
    bob.exchange.peerOnline(alice.publicKey);
    handOver(bob, alice);
    handOver(alice, bob);
    expect(bob.delivered).toEqual([]);
  });

  it("after a restart of the receiver: a replay is dropped and answered, the sender's next payload arrives", async () => {
    const bobPrivate = randomBytes(32);
    const alice = await side();
    const bob = await side(bobPrivate);
    await alice.codec.prepare(bob.publicKey);
    await bob.codec.prepare(alice.publicKey);
    alice.exchange.peerOnline(bob.publicKey);
    bob.exchange.peerOnline(alice.publicKey);
    handOver(bob, alice);
    alice.exchange.send(bob.publicKey, "recorded");
    const recorded = handOver(alice, bob).at(-1)!;
    expect(bob.delivered).toEqual(["recorded"]);

    const bobAgain = await side(bobPrivate);
    await bobAgain.codec.prepare(alice.publicKey);
    bobAgain.exchange.receive(alice.publicKey, recorded);
    expect(bobAgain.delivered).toEqual([]);
    expect(bobAgain.dropped).toEqual(["replayed"]);
    expect(bobAgain.outbox).toHaveLength(1); // the answer: a hello with the new epoch

    // Alice had not noticed the restart: the answer teaches her the new epoch.
    handOver(bobAgain, alice);
    alice.exchange.send(bob.publicKey, "fresh");
    handOver(alice, bobAgain);
    expect(bobAgain.delivered).toEqual(["fresh"]);
  });

  it("answers at most once a second, and a request within that second is answered late, not dropped", async () => {
    const { alice, bob } = await pair();
    // Two hellos from Alice that do not know Bob's epoch (two restarts of hers, say).
    alice.exchange.peerOnline(bob.publicKey);
    const first = alice.outbox.splice(0);
    alice.codec.forget(bob.publicKey);
    await alice.codec.prepare(bob.publicKey);
    alice.exchange.peerOnline(bob.publicKey);
    const second = alice.outbox.splice(0);
    bob.exchange.receive(alice.publicKey, first[0]!);
    expect(bob.outbox).toHaveLength(1);
    bob.exchange.receive(alice.publicKey, second[0]!);
    expect(bob.outbox).toHaveLength(1);
    await waitFor(() => bob.outbox.length === 2, { what: "the late answer", timeoutMs: 5_000 });
    // The late answer echoes Alice's latest epoch: she can open it and it asks for nothing more.
    alice.exchange.receive(bob.publicKey, bob.outbox[1]!);
    expect(alice.dropped).toEqual([]);
    expect(alice.outbox).toHaveLength(0);
    alice.exchange.close();
    bob.exchange.close();
  });
});
