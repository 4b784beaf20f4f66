// Who may connect as whom, who sees whom, what the server can read, and what receivers refuse.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type IntroServer, type RelayObservation, startIntroServer } from "../../intro-server/server.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { IntroOfflineError } from "../../src/intro-client/intro-errors.js";
import { createLogger } from "../../src/log.js";
import { EnvelopeCodec } from "../../src/signalling/envelope.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode, type SealedEnvelope } from "../../src/signalling/protocol.js";
import { envelopeKey, xchachaOpen } from "../../src/signalling/signalling-crypto.js";
import { newKey, RawIntroConnection, type TestKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
let server: IntroServer;
const relayed: RelayObservation[] = [];
const cleanup: Array<() => Promise<void> | void> = [];

function client(key: TestKey, peers: string[]): IntroClient {
  const intro = new IntroClient({
    url: server.url,
    keys: new LocalKeyAgreement(key.privateKey),
    logger: silent,
    reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
  });
  intro.setPeers(peers);
  cleanup.push(() => intro.stop());
  return intro;
}

async function started(intro: IntroClient): Promise<IntroClient> {
  const connected = waitForEvent(intro, "connected");
  intro.start();
  await connected;
  return intro;
}

beforeAll(async () => {
  server = await startIntroServer({
    port: 0,
    stun: false,
    logger: silent,
    onRelay: (relay) => relayed.push(relay),
  });
});

afterEach(async () => {
  for (const step of cleanup.splice(0).reverse()) await step();
  relayed.length = 0;
});

afterAll(async () => {
  await server?.close();
});

describe("authentication", () => {
  it("rejects a client that claims a key it does not hold, and leaves the holder connected", async () => {
    const aliceKey = newKey();
    const alice = await started(client(aliceKey, []));
    let aliceDisconnects = 0;
    alice.on("disconnected", () => aliceDisconnects++);

    const impostor = await RawIntroConnection.open(server.url);
    await impostor.authenticate(newKey().privateKey, aliceKey.publicKey);
    expect(await impostor.closed).toMatchObject({ code: CloseCode.authFailed });

    const garbage = await RawIntroConnection.open(server.url);
    await garbage.next("challenge");
    garbage.send({
      type: "auth",
      version: 1,
      publicKey: aliceKey.publicKey,
      proof: Buffer.alloc(32, 7).toString("base64"),
    });
    expect((await garbage.closed).code).toBe(CloseCode.authFailed);

    // A low-order key has no private key at all; the all-zero DH must not authenticate it.
    const lowOrder = await RawIntroConnection.open(server.url);
    await lowOrder.next("challenge");
    lowOrder.send({
      type: "auth",
      version: 1,
      publicKey: Buffer.alloc(32).toString("base64"),
      proof: Buffer.alloc(32).toString("base64"),
    });
    expect((await lowOrder.closed).code).toBe(CloseCode.authFailed);

    // A round trip on Alice's own connection, after all of that: Bob (by hand) declares her, she him,
    // and her presence notice for Bob comes over the same connection as any close would have before.
    const bobKey = newKey();
    const bob = await RawIntroConnection.open(server.url);
    await bob.authenticate(bobKey.privateKey);
    await bob.next("welcome");
    bob.send({ type: "peers", op: "replace", peers: [aliceKey.publicKey] });
    const aliceSeesBob = waitForEvent(alice, "peer-online");
    alice.setPeers([bobKey.publicKey]);
    expect(await aliceSeesBob).toEqual([bobKey.publicKey]);
    bob.close();
    expect(aliceDisconnects).toBe(0);
    expect(alice.connected).toBe(true);
    // Alice and Bob: none of the three impostors authenticated.
    expect(server.stats().authenticated).toBe(2);
  });

  it("replaces an older connection of the same key by a newer one", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const bob = await started(client(bobKey, [aliceKey.publicKey]));
    const first = await started(client(aliceKey, [bobKey.publicKey]));
    await waitForEvent(bob, "peer-online");

    const replaced = waitForEvent<[{ code: number }]>(first, "disconnected");
    const second = client(aliceKey, [bobKey.publicKey]);
    const secondOnline = waitForEvent(second, "peer-online");
    second.start();
    expect((await replaced)[0].code).toBe(CloseCode.replaced);
    await first.stop(); // a real deployment has one process per key; this one bows out
    await secondOnline;
    const delivered = waitForEvent<[string, unknown]>(bob, "envelope");
    second.send(bobKey.publicKey, "from the newer connection");
    expect((await delivered)[1]).toBe("from the newer connection");
    expect(server.stats().authenticated).toBe(2);
  });
});

describe("declared peers", () => {
  it("hides presence and refuses relay until both sides declared each other", async () => {
    const aliceKey = newKey();
    const carolKey = newKey();
    const alice = await started(client(aliceKey, []));
    const aliceSaw: string[] = [];
    alice.on("peer-online", (key) => aliceSaw.push(key));
    alice.on("envelope", (key) => aliceSaw.push(`envelope from ${key}`));

    // Carol declares Alice; Alice has not declared Carol.
    const carol = await RawIntroConnection.open(server.url);
    await carol.authenticate(carolKey.privateKey);
    await carol.next("welcome");
    carol.send({ type: "peers", op: "replace", peers: [aliceKey.publicKey] });
    const codec = new EnvelopeCodec({ keys: new LocalKeyAgreement(carolKey.privateKey) });
    await codec.prepare(aliceKey.publicKey);
    carol.send({ type: "send", to: aliceKey.publicKey, envelope: codec.sealHello(aliceKey.publicKey) });
    expect((await carol.next("undeliverable")).to).toBe(aliceKey.publicKey);
    // Same answer as for a key that is not connected at all: Carol cannot tell Alice is online.
    const nobody = newKey().publicKey;
    carol.send({ type: "peers", op: "add", peers: [nobody] });
    await codec.prepare(nobody);
    carol.send({ type: "send", to: nobody, envelope: codec.sealHello(nobody) });
    expect((await carol.next("undeliverable")).to).toBe(nobody);
    // The server answers Carol's messages in order: after this pong, no presence notice is on its way.
    carol.send({ type: "ping" });
    await carol.next("pong");
    expect(carol.received.filter((message) => message.type === "presence")).toEqual([]);
    expect(aliceSaw).toEqual([]);
    expect(() => alice.send(carolKey.publicKey, "x")).toThrow(IntroOfflineError);
    expect(relayed).toEqual([]);

    // Alice declares Carol: both learn of each other.
    const aliceSeesCarol = waitForEvent(alice, "peer-online");
    alice.setPeers([carolKey.publicKey]);
    expect(await aliceSeesCarol).toEqual([carolKey.publicKey]);
    // Nothing of Carol reached Alice before her own declaration (it would have come first on her
    // connection): this notice is the first thing she saw.
    expect(aliceSaw).toEqual([carolKey.publicKey]);
    expect(await carol.next("presence")).toMatchObject({ peer: aliceKey.publicKey, online: true });

    // Alice withdraws: both see the other go offline, and relay stops.
    const aliceLosesCarol = waitForEvent(alice, "peer-offline");
    alice.setPeers([]);
    await aliceLosesCarol;
    expect(await carol.next("presence")).toMatchObject({ peer: aliceKey.publicKey, online: false });
    carol.send({
      type: "send",
      to: aliceKey.publicKey,
      envelope: codec.sealHello(aliceKey.publicKey),
    });
    await carol.next("undeliverable");
    carol.close();
  });

  it("refuses mixed-up keys and bad peer keys up front", () => {
    const key = newKey();
    expect(
      () =>
        new IntroClient({
          url: server.url,
          keys: new LocalKeyAgreement(key.privateKey),
          publicKey: newKey().publicKey,
        }),
    ).toThrow(/not the public key of the private key/);
    expect(() => new IntroClient({ url: "http://x", keys: new LocalKeyAgreement(key.privateKey) })).toThrow(
      /ws:\/\/ or wss:\/\//,
    );
    const intro = new IntroClient({
      url: server.url,
      keys: new LocalKeyAgreement(key.privateKey),
      logger: silent,
    });
    expect(() => intro.setPeers(["not-a-key"])).toThrow(/not a WireGuard public key/);
  });

  it("send() fails clearly while offline or while the peer is offline", async () => {
    const aliceKey = newKey();
    const alice = client(aliceKey, [newKey().publicKey]);
    const peer = newKey().publicKey;
    expect(() => alice.send(peer, "x")).toThrow(/not connected to the introduction server/);
    await started(alice);
    try {
      alice.send(peer, "x");
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(IntroOfflineError);
      expect(error).toMatchObject({ code: "intro-offline", reason: "peer-offline" });
    }
  });
});

describe("end-to-end envelopes", () => {
  it("are opaque to the server that relays them", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = await started(client(aliceKey, [bobKey.publicKey]));
    const aliceSeesBob = waitForEvent(alice, "peer-online");
    const bob = await started(client(bobKey, [aliceKey.publicKey]));
    await aliceSeesBob;

    const secret = "candidate:1 1 udp 2130706431 198.51.100.77 51820 typ host";
    const delivered = waitForEvent<[string, unknown]>(bob, "envelope");
    alice.send(bobKey.publicKey, { secret });
    expect(await delivered).toEqual([aliceKey.publicKey, { secret }]);

    // Besides the hellos that exchange envelope epochs (section 5), the one with the payload: the longest.
    const fromAlice = relayed.filter((relay) => relay.from === aliceKey.publicKey);
    const seen = fromAlice.reduce((a, b) => (b.frame.length > a.frame.length ? b : a));
    expect(seen).toMatchObject({ from: aliceKey.publicKey, to: bobKey.publicKey });
    expect(seen.frame).not.toContain("198.51.100.77");
    expect(seen.frame).not.toContain("candidate");
    const frame = JSON.parse(seen.frame) as { envelope: SealedEnvelope };
    expect(Object.keys(frame).sort()).toEqual(["envelope", "to", "type"]);
    expect(Object.keys(frame.envelope).sort()).toEqual(["c", "n"]);
    const ciphertext = Buffer.from(frame.envelope.c, "base64");
    expect(ciphertext.toString("latin1")).not.toContain("198.51.100.77");

    // Everything the server knows (both public keys) does not open it; only Bob's private key does.
    const outsider = new EnvelopeCodec({ keys: new LocalKeyAgreement(newKey().privateKey) });
    await outsider.prepare(aliceKey.publicKey);
    expect(outsider.open(aliceKey.publicKey, frame.envelope)).toMatchObject({
      ok: false,
      reason: "undecryptable",
    });
    const bobKeys = new LocalKeyAgreement(bobKey.privateKey);
    const shared = bobKeys.x25519Now(Buffer.from(aliceKey.publicKey, "base64"));
    const key = envelopeKey(
      shared,
      Buffer.from(aliceKey.publicKey, "base64"),
      Buffer.from(bobKey.publicKey, "base64"),
    );
    const plaintext = xchachaOpen(
      key,
      Buffer.from(frame.envelope.n, "base64"),
      ciphertext,
      Buffer.from("tunnelbore envelope v1"),
    );
    expect(JSON.parse(plaintext!.toString()).p).toEqual({ secret });
  });

  it("a replayed, a stale and a tampered envelope are each dropped by the receiver", async () => {
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = await started(client(aliceKey, [bobKey.publicKey]));
    const received: unknown[] = [];
    const dropped: string[] = [];
    alice.on("envelope", (_from, payload) => received.push(payload));
    alice.on("envelope-dropped", (_from, reason) => dropped.push(reason));

    // Bob is played by hand, so he can send what a real client never would.
    const bob = await RawIntroConnection.open(server.url);
    await bob.authenticate(bobKey.privateKey);
    await bob.next("welcome");
    const online = waitForEvent(alice, "peer-online");
    bob.send({ type: "peers", op: "replace", peers: [aliceKey.publicKey] });
    await online;
    const bobCodec = new EnvelopeCodec({ keys: new LocalKeyAgreement(bobKey.privateKey) });
    await bobCodec.prepare(aliceKey.publicKey);
    // Alice's hello tells Bob her envelope epoch, which his payloads must echo.
    expect(bobCodec.open(aliceKey.publicKey, (await bob.next("envelope")).envelope)).toMatchObject({
      ok: true,
      kind: "hello",
    });
    const sendEnvelope = (envelope: SealedEnvelope) =>
      bob.send({ type: "send", to: aliceKey.publicKey, envelope });

    const first = bobCodec.seal(aliceKey.publicKey, "first");
    sendEnvelope(first);
    sendEnvelope(first); // replayed
    sendEnvelope(bobCodec.seal(aliceKey.publicKey, "stale", Date.now() - 5 * 60_000));
    const tampered = bobCodec.seal(aliceKey.publicKey, "tampered");
    const bytes = Buffer.from(tampered.c, "base64");
    bytes[3]! ^= 0x01;
    sendEnvelope({ ...tampered, c: bytes.toString("base64") });
    sendEnvelope(bobCodec.seal(aliceKey.publicKey, "last"));

    await waitForEvent(alice, "envelope", (_from, payload) => payload === "last");
    expect(received).toEqual(["first", "last"]);
    expect(dropped).toEqual(["replayed", "stale", "undecryptable"]);
    bob.close();
  });
});
