// A hub H with two peers at a real introduction server (in process): P1 runs Tunnelbore's peer (ICE on
// loopback), P2 logs in, declares H and ignores every signal. H's signalling to P2 stalls; that must not
// cost P1 anything: H keeps its one connection to the server (a ping says it is alive), and P1 sees H
// neither leave nor come back. Then H's connection goes silently dead (a relay between H and the server
// stops forwarding, as a NAT that forgot it): a stall finds it dead, H reconnects, and the stalled peer
// restarts ICE when it is back online.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { type IntroServer, startIntroServer } from "../../intro-server/server.js";
import { IceSession } from "../../src/ice/ice-session.js";
import { IceSessionFactory, tellPeer } from "../../src/ice/ice-session-factory.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { IntroLink, linkSignalling } from "../../src/intro-client/intro-link.js";
import type { Logger } from "../../src/log.js";
import { createLogger } from "../../src/log.js";
import { systemClock } from "../../src/peer/clock.js";
import { Peer, type PeerSignalling } from "../../src/peer/peer.js";
import { formatPeerState } from "../../src/peer/peer-state.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { loopbackOnly } from "../support/ice-loopback-pair.js";
import { waitFor } from "../support/wait-for.js";
import { newKey, sleep, type TestKey } from "./intro-support.js";

const silent = createLogger("test", "silent");

interface Line {
  level: number;
  msg: string;
  peer?: string;
}

function capture(): { lines: Line[]; logger: Logger } {
  const lines: Line[] = [];
  const logger: Logger = pino(
    { level: "debug" },
    { write: (line: string) => void lines.push(JSON.parse(line)) },
  );
  return { lines, logger };
}

/** A Tunnelbore side: its link, and a Peer (ICE on loopback, signals unanswered after 1 s) per key. */
interface Side {
  link: IntroLink;
  peers: Map<string, Peer>;
  offline: string[];
  online: string[];
  stalls: Array<{ key: string; what: string }>;
}

const unusedFactory = new IceSessionFactory({
  excludeInterfaces: [],
  excludeAddresses: [],
  stunUrls: () => [],
  turn: () => undefined,
  logger: silent,
});

/** `noPathChecks`: a suspect path does not have the connection checked (only a stall can find it dead). */
function side(
  url: string,
  key: TestKey,
  peerKeys: string[],
  { logger = silent, noPathChecks = false }: { logger?: Logger; noPathChecks?: boolean } = {},
): Side {
  const peers = new Map<string, Peer>();
  const s: Side = { peers, offline: [], online: [], stalls: [], link: undefined as unknown as IntroLink };
  s.link = new IntroLink(
    { url, keys: new LocalKeyAgreement(key.privateKey), logger },
    {
      peerOnline: (k) => {
        s.online.push(k);
        peers.get(k)?.onPeerOnline();
      },
      peerOffline: (k) => {
        s.offline.push(k);
        peers.get(k)?.onPeerOffline();
      },
      signal: (k, signal) => peers.get(k)?.onSignal(signal),
    },
  );
  const link = s.link;
  const base = linkSignalling(link, unusedFactory);
  const signalling: PeerSignalling = {
    ...base,
    pathSuspect: noPathChecks ? () => {} : base.pathSuspect,
    stalled: (k, what) => {
      s.stalls.push({ key: k, what });
      return base.stalled(k, what);
    },
    createSession: (k, controlling, handlers, log) => {
      const session = new IceSession({
        controlling,
        sendSignal: (signal) => link.send(k, signal),
        stunUrls: [],
        extraHostAddresses: ["127.0.0.1"],
        excludeAddresses: loopbackOnly,
        ipv6: false,
        signalTimeoutMs: 1000,
        logger: log,
      });
      return tellPeer(session, handlers);
    },
  };
  for (const k of peerKeys) {
    peers.set(
      k,
      new Peer(k, {
        clock: systemClock,
        logger,
        dataPlane: { setPath: () => {}, setDormant: () => {} },
        signalling,
      }),
    );
  }
  link.setPeers(peerKeys);
  link.start();
  return s;
}

/** Forwards TCP to `port` until `freeze()`: then the connections open so far go silent both ways. */
async function startRelay(port: number): Promise<{ port: number; freeze(): void; close(): Promise<void> }> {
  let frozen: Socket[] = [];
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(port, "127.0.0.1");
    for (const socket of [client, upstream]) {
      open.add(socket);
      socket.on("error", () => {});
      socket.on("close", () => open.delete(socket));
    }
    const pipe = (from: Socket, to: Socket) => {
      from.on("data", (data) => {
        if (!frozen.includes(from)) to.write(data);
      });
      from.on("end", () => to.end());
    };
    pipe(client, upstream);
    pipe(upstream, client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    freeze: () => {
      frozen = [...open];
    },
    close: async () => {
      for (const socket of open) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let server: IntroServer | undefined;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await server?.close();
  server = undefined;
});

function closeSide(s: Side): () => Promise<void> {
  return async () => {
    for (const peer of s.peers.values()) await peer.close();
    await s.link.stop();
  };
}

const connected = (peer: Peer | undefined) =>
  peer !== undefined && formatPeerState(peer.state).startsWith("connected");

describe("a hub whose peer ignores its signalling", () => {
  it("keeps its connection to the introduction server, and its other peers see no flap", async () => {
    server = await startIntroServer({ port: 0, stun: false, logger: silent });
    const [h, p1, p2] = [newKey(), newKey(), newKey()];
    const { lines, logger } = capture();
    const hub = side(server.url, h, [p1.publicKey, p2.publicKey], { logger });
    cleanups.push(closeSide(hub));
    const one = side(server.url, p1, [h.publicKey]);
    cleanups.push(closeSide(one));
    await waitFor(() => connected(hub.peers.get(p1.publicKey)) && connected(one.peers.get(h.publicKey)), {
      what: "H and P1 connected",
    });
    const hubSince = hub.link.status().since;

    // P2: logged in, declares H, answers nothing.
    const deaf = new IntroClient({
      url: server.url,
      keys: new LocalKeyAgreement(p2.privateKey),
      logger: silent,
    });
    cleanups.push(() => deaf.stop());
    deaf.setPeers([h.publicKey]);
    deaf.start();

    await waitFor(() => hub.stalls.some((s) => s.key === p2.publicKey), {
      what: "H's signalling to P2 stalled",
    });
    await sleep(2_000); // past the check of H's connection (a ping, 1 s)

    expect(lines.filter((l) => /reconnecting|connection lost/.test(l.msg))).toEqual([]);
    expect(hub.link.status()).toMatchObject({ state: "connected", since: hubSince });
    expect(server.stats().closes).toEqual({});
    expect(one.offline).toEqual([]);
    expect(one.online).toEqual([h.publicKey]);
    expect(hub.offline).toEqual([]);
    const hubP1 = hub.peers.get(p1.publicKey)!;
    expect(connected(hubP1)).toBe(true);
    expect(hubP1.iceRestarts["signalling-stalled"] + hubP1.iceRestarts["signalling-reconnected"]).toBe(0);
    // The check found the connection alive: the peer is the one not answering.
    expect(lines.filter((l) => l.level === 20 && /the peer is not answering/.test(l.msg))[0]?.peer).toBe(
      p2.publicKey,
    );
  }, 30_000);

  it("a stall that finds the connection silently dead reconnects, and the stalled peer restarts ICE", async () => {
    server = await startIntroServer({ port: 0, stun: false, logger: silent });
    const relay = await startRelay(server.port);
    cleanups.push(() => relay.close());
    const [h, p1] = [newKey(), newKey()];
    const hub = side(`ws://127.0.0.1:${relay.port}`, h, [p1.publicKey], { noPathChecks: true });
    cleanups.push(closeSide(hub));
    const one = side(server.url, p1, [h.publicKey]);
    cleanups.push(closeSide(one));
    const hubP1 = () => hub.peers.get(p1.publicKey)!;
    await waitFor(() => connected(hubP1()) && connected(one.peers.get(h.publicKey)), {
      what: "H and P1 connected",
    });

    // H's connection goes silent; a restart it asks for now goes nowhere and stalls.
    relay.freeze();
    hubP1().onSuspect("test: path suspect", false);
    await waitFor(() => hub.stalls.length > 0, { what: "H's signalling to P1 stalled" });
    await waitFor(() => hubP1().iceRestarts["signalling-stalled"] > 0, {
      what: "the stalled peer's ICE restart after the reconnect",
    });
    expect(hub.offline).toContain(p1.publicKey);
    expect(hub.link.status().state).toBe("connected");
  }, 30_000);
});
