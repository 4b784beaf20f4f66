// Clients fail over between introduction servers (issue 15): real intro servers in process, IntroLink
// clients given every server. A server that shuts down (4011) or dies moves its clients to the next at
// once; they meet again there, and no envelope sent around the move is lost (sent continuously, every
// sequence number checked at the receiver, none delivered twice). A name with several addresses is
// several servers, the name kept as the Host header.
import { EventEmitter } from "node:events";
import { type AddressInfo, createConnection, createServer, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import type { IntroServerOptions } from "../../intro-server/server-api.js";
import type { IceSignal } from "../../src/ice/ice-signal.js";
import { IntroLink } from "../../src/intro-client/intro-link.js";
import type { IntroHostResolver } from "../../src/intro-client/server-list.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, sleep, type TestKey } from "./intro-support.js";

const silent = createLogger("test", (process.env.FAILOVER_LOG ?? "silent") as "silent");

const servers: IntroServer[] = [];
const links: IntroLink[] = [];
const proxies: Array<{ close(): void }> = [];

afterEach(async () => {
  await Promise.all(links.splice(0).map((link) => link.stop()));
  for (const proxy of proxies.splice(0)) proxy.close();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

async function server(options: IntroServerOptions = {}): Promise<IntroServer> {
  const started = await startIntroServer({
    host: "127.0.0.1",
    port: 0,
    stun: false,
    logger: silent,
    ...options,
  });
  servers.push(started);
  return started;
}

/** What a link told its owner: presence and the sequence numbers that arrived. */
class Observed extends EventEmitter {
  readonly received: number[] = [];
}

function link(key: TestKey, peer: TestKey, urls: string[], resolveHost?: IntroHostResolver) {
  const seen = new Observed();
  const intro = new IntroLink(
    {
      url: urls,
      keys: new LocalKeyAgreement(key.privateKey),
      logger: silent,
      resolveHost,
      reconnectMaxMs: 2_000,
    },
    {
      peerOnline: (k) => seen.emit("online", k),
      peerOffline: (k) => seen.emit("offline", k),
      signal: (_k, signal) => {
        if (
          typeof signal === "object" &&
          signal !== null &&
          "seq" in signal &&
          typeof signal.seq === "number"
        )
          seen.received.push(signal.seq);
      },
    },
  );
  intro.setPeers([peer.publicKey]);
  intro.start();
  links.push(intro);
  return { intro, seen };
}

async function pair(urls: string[]) {
  const aliceKey = newKey();
  const bobKey = newKey();
  const alice = link(aliceKey, bobKey, urls);
  const bob = link(bobKey, aliceKey, urls);
  await meet(alice.intro, bob.intro);
  return { alice, bob };
}

async function meet(a: IntroLink, b: IntroLink): Promise<void> {
  await waitFor(() => a.isOnline(b.publicKey) && b.isOnline(a.publicKey), { what: "both online" });
}

/**
 * Sends a numbered signal every 20 ms until stopped (far more than ICE signalling, which sends a
 * dozen per restart, but within what is held for one peer: 64); all must arrive.
 */
function sendContinuously(from: IntroLink, to: string) {
  let next = 0;
  const timer = setInterval(() => {
    from.send(to, { seq: next } as unknown as IceSignal);
    next++;
  }, 20);
  return {
    get sent() {
      return next;
    },
    stop: () => clearInterval(timer),
  };
}

async function allArrived(seen: Observed, count: number): Promise<void> {
  await waitFor(() => new Set(seen.received).size >= count, {
    what: `${count} sequence numbers`,
    timeoutMs: 15_000,
  }).catch((error: unknown) => {
    const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.received.includes(i));
    throw new Error(`${(error as Error).message}; missing: ${missing.join(" ")}`);
  });
  const missing = Array.from({ length: count }, (_, i) => i).filter((i) => !seen.received.includes(i));
  expect(missing).toEqual([]);
  // Envelopes sent again after the move are refused as replays where they had arrived.
  expect(seen.received.length).toBe(new Set(seen.received).size);
}

/** A TCP relay in front of a server: `destroy()` kills its connections, `freeze()` silences them. */
async function relayTo(target: IntroServer) {
  const sockets = new Set<Socket>();
  let frozen = false;
  const relay: Server = createServer((client) => {
    const toServer = createConnection(target.port, target.host);
    sockets.add(client).add(toServer);
    client.on("data", (data) => frozen || toServer.write(data));
    toServer.on("data", (data) => frozen || client.write(data));
    for (const socket of [client, toServer]) {
      socket.on("error", () => {});
      socket.on("close", () => {
        client.destroy();
        toServer.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve));
  const { port } = relay.address() as AddressInfo;
  const handle = {
    url: `ws://127.0.0.1:${port}`,
    destroy: () => {
      relay.close();
      for (const socket of sockets) socket.destroy();
    },
    freeze: () => {
      frozen = true;
    },
    close: () => handle.destroy(),
  };
  proxies.push(handle);
  return handle;
}

describe("failover between introduction servers", () => {
  it("a server shutting down (4011) moves both clients to the next at once, and no envelope is lost", async () => {
    const a = await server();
    const b = await server();
    const c = await server();
    const { alice, bob } = await pair([a.url, b.url, c.url]);
    expect(alice.intro.status()).toMatchObject({
      url: a.url,
      state: "connected",
      servers: [a.url, b.url, c.url],
    });

    const toBob = sendContinuously(alice.intro, bob.intro.publicKey);
    const toAlice = sendContinuously(bob.intro, alice.intro.publicKey);
    await sleep(300);
    const movedAt = Date.now();
    await a.close();
    await waitFor(
      () =>
        alice.intro.status().url === b.url &&
        bob.intro.status().url === b.url &&
        alice.intro.isOnline(bob.intro.publicKey) &&
        bob.intro.isOnline(alice.intro.publicKey),
      { what: "both online at the second server" },
    );
    const moveMs = Date.now() - movedAt;
    // At once: the first move of a streak waits for no backoff (one failure, the server that left).
    expect(alice.intro.status().failures).toBe(0);
    await sleep(300);
    toBob.stop();
    toAlice.stop();
    await allArrived(bob.seen, toBob.sent);
    await allArrived(alice.seen, toAlice.sent);
    console.log(`moved in ${moveMs} ms; sent ${toBob.sent} and ${toAlice.sent} envelopes across the move`);
  });

  it("a server that dies (its connections destroyed) moves the client at once; a silent one within the liveness timeout", async () => {
    const a = await server({ limits: { pingIntervalMs: 200 } });
    const b = await server({ limits: { pingIntervalMs: 200 } });
    const c = await server({ limits: { pingIntervalMs: 200 } });
    const front = await relayTo(a);
    const middle = await relayTo(b);
    const { alice, bob } = await pair([front.url, middle.url, c.url]);
    expect(alice.intro.status().url).toBe(front.url);

    const toBob = sendContinuously(alice.intro, bob.intro.publicKey);
    front.destroy();
    await waitFor(
      () => alice.intro.status().url === middle.url && alice.intro.isOnline(bob.intro.publicKey),
      {
        what: "both at the second server",
      },
    );
    await meet(alice.intro, bob.intro);

    // Silent: nothing comes back, not even a reset; the keepalive (2.5 x 200 ms) notices.
    const frozenAt = Date.now();
    middle.freeze();
    await waitFor(() => alice.intro.status().url === c.url && bob.intro.status().url === c.url, {
      what: "both at the third server",
    });
    const silentMs = Date.now() - frozenAt;
    await meet(alice.intro, bob.intro);
    await sleep(100);
    toBob.stop();
    await allArrived(bob.seen, toBob.sent);
    expect(silentMs).toBeGreaterThanOrEqual(500);
    console.log(`silent server left after ${silentMs} ms; ${toBob.sent} envelopes across two moves`);
  });

  it("a name with several addresses is several servers: the one that refuses is left for the next", async () => {
    const only = await server({ stun: { port: 0, host: "127.0.0.1" } });
    const resolve: IntroHostResolver = async (host) => {
      expect(host).toBe("intro.test");
      return [
        { address: "127.0.0.2", family: 4 },
        { address: "127.0.0.1", family: 4 },
      ];
    };
    const url = `ws://intro.test:${only.port}`;
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = link(aliceKey, bobKey, [url], resolve);
    const bob = link(bobKey, aliceKey, [url], resolve);
    await meet(alice.intro, bob.intro);
    expect(alice.intro.status()).toMatchObject({
      url,
      address: "127.0.0.1",
      state: "connected",
      servers: [`${url} (127.0.0.2)`, `${url} (127.0.0.1)`],
    });
    // The name went as the Host header: the server names itself by it in the STUN URLs it hands out.
    expect(alice.intro.stunUrls()[0]).toMatch(/^stun:intro\.test:\d+$/);
  });

  it("peers keep meeting when only one of them moves, and replays stay refused", async () => {
    const a = await server();
    const b = await server();
    const front = await relayTo(a);
    // Bob's list starts at B: he is at B while Alice is at A (not clustered, so they do not meet).
    const aliceKey = newKey();
    const bobKey = newKey();
    const alice = link(aliceKey, bobKey, [front.url, b.url]);
    const bob = link(bobKey, aliceKey, [b.url]);
    await waitFor(
      () => alice.intro.status().state === "connected" && bob.intro.status().state === "connected",
      {
        what: "both connected",
      },
    );
    expect(alice.intro.isOnline(bobKey.publicKey)).toBe(false);
    front.destroy();
    await meet(alice.intro, bob.intro);
    const toBob = sendContinuously(alice.intro, bobKey.publicKey);
    await sleep(50);
    toBob.stop();
    await allArrived(bob.seen, toBob.sent);
  });

  it("a server that does not serve our key (4013) is left for the next; when all refuse, no fast cycling", async () => {
    const refusing = await server({ allowedKeys: new Set() });
    const serving = await server();
    const { alice } = await pair([refusing.url, serving.url]);
    expect(alice.intro.status()).toMatchObject({ url: serving.url, state: "connected" });
    expect(refusing.stats().closes[CloseCode.notMember]).toBeGreaterThanOrEqual(1);

    // Both refuse: each is tried once, then the slow retry (once a minute) applies to the round.
    const other = await server({ allowedKeys: new Set() });
    const carol = link(newKey(), newKey(), [refusing.url, other.url]);
    await waitFor(() => other.stats().closes[CloseCode.notMember] === 1, {
      what: "the second server refused too",
    });
    const refusedBefore = refusing.stats().closes[CloseCode.notMember] ?? 0;
    await sleep(1_500);
    expect(carol.intro.status()).toMatchObject({ state: "not-member", failures: 2 });
    expect(refusing.stats().closes[CloseCode.notMember]).toBe(refusedBefore);
    expect(other.stats().closes[CloseCode.notMember]).toBe(1);
  });
});
