// A hub declares thousands of peers whose owners are mostly offline (issue 15): a peer's envelope keys
// (an X25519 each, asked of the privileged parent under privilege separation) are derived when the
// peer is first needed, not when it is declared; an absent peer costs none.
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { type KeyAgreement, LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, type TestKey, waitForEvent } from "./intro-support.js";

const silent = createLogger("test", "silent");
const ABSENT = 200;
let server: IntroServer | undefined;
const clients: IntroClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.stop()));
  await server?.close();
  server = undefined;
});

/** A KeyAgreement that records the public keys it was asked about (base64). */
class CountingKeyAgreement implements KeyAgreement {
  readonly asked: string[] = [];
  private readonly inner: LocalKeyAgreement;

  constructor(privateKey: Buffer) {
    this.inner = new LocalKeyAgreement(privateKey);
  }

  get publicKey(): string {
    return this.inner.publicKey;
  }

  x25519(peerPublicKey: Uint8Array): Promise<Buffer> {
    this.asked.push(Buffer.from(peerPublicKey).toString("base64"));
    return this.inner.x25519(peerPublicKey);
  }
}

function client(key: TestKey | CountingKeyAgreement, peers: string[]): IntroClient {
  const keys = key instanceof CountingKeyAgreement ? key : new LocalKeyAgreement(key.privateKey);
  const c = new IntroClient({ url: server!.url, keys, logger: silent });
  c.setPeers(peers);
  clients.push(c);
  return c;
}

describe("envelope keys of declared peers", () => {
  it("are derived when a peer comes online, not when it is declared", async () => {
    server = await startIntroServer({ port: 0, stun: false, logger: silent });
    const hubKey = newKey();
    const hubKeys = new CountingKeyAgreement(hubKey.privateKey);
    const present = newKey();
    const absent = Array.from({ length: ABSENT }, () => newKey().publicKey);
    const hub = client(hubKeys, [present.publicKey, ...absent]);
    hub.start();
    await waitFor(() => hub.connected, { what: "the hub connected", timeoutMs: 10_000 });
    // Only the server's challenge: no peer is online yet.
    const peerKeys = new Set([present.publicKey, ...absent]);
    expect(hubKeys.asked.filter((key) => peerKeys.has(key))).toEqual([]);

    const peer = client(present, [hubKey.publicKey]);
    const online = waitForEvent<[string]>(hub, "peer-online", (key) => key === present.publicKey, 10_000);
    peer.start();
    await online;
    expect(hubKeys.asked.filter((key) => peerKeys.has(key))).toEqual([present.publicKey]);

    // The keys derived on demand carry envelopes both ways.
    await waitFor(() => peer.isOnline(hubKey.publicKey), { what: "the hub online at the peer" });
    const atPeer = waitForEvent<[string, unknown]>(peer, "envelope");
    hub.send(present.publicKey, { n: 1 });
    expect(await atPeer).toEqual([hubKey.publicKey, { n: 1 }]);
    const atHub = waitForEvent<[string, unknown]>(hub, "envelope");
    peer.send(hubKey.publicKey, { n: 2 });
    expect(await atHub).toEqual([present.publicKey, { n: 2 }]);
    // Derived once: no second X25519 for the same peer.
    expect(hubKeys.asked.filter((key) => key === present.publicKey)).toHaveLength(1);
  });
});

describe("the same list of peers given again", () => {
  it("changes nothing at the server; a shorter one is applied", async () => {
    server = await startIntroServer({ port: 0, stun: false, logger: silent });
    const hubKey = newKey();
    const peers = [newKey(), newKey()];
    const keys = peers.map((p) => p.publicKey);
    const hub = client(hubKey, keys);
    const offline: string[] = [];
    hub.on("peer-offline", (key) => offline.push(key));
    hub.start();
    for (const p of peers) client(p, [hubKey.publicKey]).start();
    await waitFor(() => keys.every((key) => hub.isOnline(key)), { what: "both peers online at the hub" });

    hub.setPeers([...keys]); // a read of the interface with nothing new
    await waitFor(() => clients.slice(1).every((c) => c.isOnline(hubKey.publicKey)), {
      what: "the hub still online at both",
    });
    expect(offline).toEqual([]);

    hub.setPeers(keys.slice(1));
    await waitFor(() => !clients[1]!.isOnline(hubKey.publicKey), {
      what: "the first peer no longer introduced",
    });
    expect(offline).toEqual([keys[0]]);
    expect(hub.isOnline(keys[1]!)).toBe(true);
  });
});
