// Envelope replay through a man in the middle (issue item 6): an envelope recorded on the way to a
// receiver is delivered again after the receiver restarted, or after it un-declared and re-declared
// the sender. Real IntroClients, a real intro server on loopback, a recording relay in front of the
// receiver. A fresh envelope sent the moment the peer is back must still arrive, with skewed clocks too.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroClient, type IntroClientOptions } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import type { EnvelopeMessage } from "../../src/signalling/protocol.js";
import { type RecordingRelay, startRecordingRelay } from "./intro-recording-relay.js";
import { newKey, type TestKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const WAIT_MS = 20_000;

let server: IntroServer;
let relay: RecordingRelay;
const started: IntroClient[] = [];

beforeAll(async () => {
  server = await startIntroServer({ port: 0, stun: false, logger: silent });
  relay = await startRecordingRelay(server.url);
});

afterEach(async () => {
  await Promise.all(started.splice(0).map((client) => client.stop()));
});

afterAll(async () => {
  await relay?.close();
  await server?.close();
});

function client(key: TestKey, url: string, peer: TestKey, envelope?: IntroClientOptions["envelope"]) {
  const intro = new IntroClient({
    url,
    keys: new LocalKeyAgreement(key.privateKey),
    logger: silent,
    reconnect: { initialDelayMs: 50, maxDelayMs: 200 },
    envelope,
  });
  intro.setPeers([peer.publicKey]);
  started.push(intro);
  return intro;
}

/** Everything a client delivered to the application, and every drop, from now on. */
function observe(intro: IntroClient) {
  const delivered: unknown[] = [];
  const dropped: string[] = [];
  intro.on("envelope", (_from, payload) => delivered.push(payload));
  intro.on("envelope-dropped", (_from, reason) => dropped.push(reason));
  return { delivered, dropped };
}

async function bothOnline(a: IntroClient, b: IntroClient): Promise<void> {
  const online = Promise.all([
    a.isOnline(b.publicKey) ? undefined : waitForEvent(a, "peer-online", (k) => k === b.publicKey, WAIT_MS),
    b.isOnline(a.publicKey) ? undefined : waitForEvent(b, "peer-online", (k) => k === a.publicKey, WAIT_MS),
  ]);
  a.start();
  b.start();
  await online;
}

/** Alice sends `payload`; resolves with the relay's recording of its delivery to Bob. */
async function sendAndRecord(
  alice: IntroClient,
  bob: IntroClient,
  payload: unknown,
): Promise<EnvelopeMessage> {
  const received = waitForEvent(
    bob,
    "envelope",
    (_from, p) => JSON.stringify(p) === JSON.stringify(payload),
    WAIT_MS,
  );
  alice.send(bob.publicKey, payload);
  await received;
  const recorded = relay.envelopes.filter((message) => message.from === alice.publicKey).at(-1);
  if (!recorded) throw new Error("the relay recorded no envelope from alice");
  return recorded;
}

/**
 * Injects `recorded` into Bob's connection, then has Alice send a marker behind it: once the marker is
 * delivered, the replay has been processed (same connection, in order).
 */
async function replayThenMark(recorded: EnvelopeMessage, alice: IntroClient, bob: IntroClient) {
  const marker = { marker: Math.random() };
  const markerArrived = waitForEvent(
    bob,
    "envelope",
    (_from, p) => JSON.stringify(p) === JSON.stringify(marker),
    WAIT_MS,
  );
  relay.inject(recorded);
  alice.send(bob.publicKey, marker);
  await markerArrived;
}

const restartSignal = { ice: { type: "restart", generation: 7 } };

describe("envelope replay through a man in the middle", () => {
  it("drops a recorded envelope replayed to a receiver that restarted; a fresh one sent at once arrives", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = client(aliceKey, server.url, bobKey);
    const bob = client(bobKey, relay.url, aliceKey);
    await bothOnline(alice, bob);
    const recorded = await sendAndRecord(alice, bob, restartSignal);

    await bob.stop();
    const bobAgain = client(bobKey, relay.url, aliceKey);
    const seen = observe(bobAgain);
    // Alice signals the moment she sees the restarted Bob online: that first signal must not be lost.
    const first = { ice: { type: "offer", first: true } };
    alice.on("peer-online", (key) => {
      if (key === bobKey.publicKey) alice.send(key, first);
    });
    const firstArrived = waitForEvent(
      bobAgain,
      "envelope",
      (_f, p) => JSON.stringify(p) === JSON.stringify(first),
      WAIT_MS,
    );
    bobAgain.start();
    await firstArrived;

    await replayThenMark(recorded, alice, bobAgain);
    expect(seen.delivered).not.toContainEqual(restartSignal);
    expect(seen.dropped).toContain("replayed");
  });

  it("drops a recorded envelope replayed after the receiver un-declared and re-declared the sender", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = client(aliceKey, server.url, bobKey);
    const bob = client(bobKey, relay.url, aliceKey);
    await bothOnline(alice, bob);
    const recorded = await sendAndRecord(alice, bob, restartSignal);

    const offline = waitForEvent(alice, "peer-offline", (k) => k === bobKey.publicKey, WAIT_MS);
    bob.setPeers([]);
    await offline;
    const online = waitForEvent(bob, "peer-online", (k) => k === aliceKey.publicKey, WAIT_MS);
    bob.setPeers([aliceKey.publicKey]);
    await online;
    const seen = observe(bob);

    await replayThenMark(recorded, alice, bob);
    expect(seen.delivered).not.toContainEqual(restartSignal);
    expect(seen.dropped).toContain("replayed");
  });

  it("drops a replay while the receiver runs on (the window), and accepts each fresh envelope once", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = client(aliceKey, server.url, bobKey);
    const bob = client(bobKey, relay.url, aliceKey);
    await bothOnline(alice, bob);
    const recorded = await sendAndRecord(alice, bob, restartSignal);
    const seen = observe(bob);
    await replayThenMark(recorded, alice, bob);
    expect(seen.delivered).not.toContainEqual(restartSignal);
    expect(seen.dropped).toEqual(["replayed"]);
  });

  for (const skewMs of [50_000, -50_000]) {
    it(`works with the sender's clock ${skewMs > 0 ? "ahead" : "behind"} by ${Math.abs(skewMs) / 1000} s, and still drops the replay after a restart`, async () => {
      const aliceKey = newKey();
      const bobKey = newKey();
      const skewed = { now: () => Date.now() + skewMs };
      const alice = client(aliceKey, server.url, bobKey, skewed);
      const bob = client(bobKey, relay.url, aliceKey);
      await bothOnline(alice, bob);
      const recorded = await sendAndRecord(alice, bob, restartSignal);

      await bob.stop();
      const bobAgain = client(bobKey, relay.url, aliceKey);
      const seen = observe(bobAgain);
      const first = { ice: { type: "offer", skewMs } };
      alice.on("peer-online", (key) => {
        if (key === bobKey.publicKey) alice.send(key, first);
      });
      const firstArrived = waitForEvent(
        bobAgain,
        "envelope",
        (_f, p) => JSON.stringify(p) === JSON.stringify(first),
        WAIT_MS,
      );
      bobAgain.start();
      await firstArrived;

      await replayThenMark(recorded, alice, bobAgain);
      expect(seen.delivered).not.toContainEqual(restartSignal);
      expect(seen.dropped).toContain("replayed");
    });
  }
});
