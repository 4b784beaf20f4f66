// The load of bench/forwarding.ts, in the parent process: a fake WireGuard and a fake peer (two UDP
// sockets) that shake hands through the forwarder, then send well-formed transport messages: a flow as
// fast as the sink takes them (throughput), or one at a time each way (latency).
import type { RemoteInfo, Socket } from "node:dgram";
import { bindUdpSocket } from "../src/proxy/udp-socket.js";
import { encodeKey } from "../src/wireguard/keys.js";
import { MessageType, messageType, TransportOffset, writeU32LE } from "../src/wireguard/messages.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../test/support/noise.js";

export const HOST = "127.0.0.1";
/** UDP payload size of every transport message (WireGuard's default MTU). */
export const DATAGRAM_BYTES = 1420;
/** Datagrams in flight in a throughput run: enough to keep the forwarder busy, well under its buffers. */
const WINDOW = 256;
export const WARMUP_MS = 300;
export const LATENCY_BLOCKS = 5;
const LATENCY_ROUNDS_PER_BLOCK = 4000;
/** With nothing received for this long, the datagrams in flight are counted lost and the window refilled. */
const STALL_MS = 50;
export const WG_INDEX = 0x11223344;
export const PEER_INDEX = 0x55667788;

export interface Address {
  address: string;
  port: number;
}

/** The two ends of a route through the forwarder: `out` is where WireGuard sends, `in` where the peer does. */
export interface Route {
  out: Address;
  in: Address;
}

/** A ring of well-formed type-4 messages to `receiver`, with increasing counters. */
export function transportRing(receiver: number, count: number): Buffer[] {
  const ring: Buffer[] = [];
  for (let i = 0; i < count; i++) {
    const b = Buffer.alloc(DATAGRAM_BYTES, 0xa5);
    b.fill(0, 0, TransportOffset.PAYLOAD);
    b[0] = MessageType.Transport;
    writeU32LE(b, TransportOffset.RECEIVER, receiver);
    writeU32LE(b, TransportOffset.COUNTER, i);
    ring.push(b);
  }
  return ring;
}

function nextMessage(socket: Socket, type: number, timeoutMs = 5000): Promise<[Buffer, RemoteInfo]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off("message", onMessage);
      reject(new Error(`no message of type ${type} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onMessage = (msg: Buffer, rinfo: RemoteInfo) => {
      if (messageType(msg) !== type) return;
      clearTimeout(timer);
      socket.off("message", onMessage);
      resolve([msg, rinfo]);
    };
    socket.on("message", onMessage);
  });
}

/**
 * A real handshake through the proxy, so it learns the indices and the fake WireGuard and peer learn
 * each other's proxy-side addresses: initiation W -> L(P) -> static path -> P, response back.
 */
export async function handshake(
  wg: Socket,
  peer: Socket,
  toWgSide: Address,
  keys: { wg: ReturnType<typeof generateKeyPair>; peer: ReturnType<typeof generateKeyPair> },
): Promise<{ peerSide: Address }> {
  const initiation = Buffer.from(
    buildInitiation({
      initiatorPrivateKey: keys.wg.privateKey,
      responderPublicKey: keys.peer.publicKey,
      senderIndex: WG_INDEX,
    }),
  );
  const gotInitiation = nextMessage(peer, MessageType.Initiation);
  wg.send(initiation, toWgSide.port, toWgSide.address);
  const [, from] = await gotInitiation;
  const response = Buffer.from(
    buildResponse({ responderPrivateKey: keys.peer.privateKey, initiation, senderIndex: PEER_INDEX }),
  );
  const gotResponse = nextMessage(wg, MessageType.Response);
  peer.send(response, from.port, from.address);
  const [, responder] = await gotResponse;
  if (responder.address !== toWgSide.address || responder.port !== toWgSide.port) {
    throw new Error(`the response came from ${responder.address}:${responder.port}, not from L(P)`);
  }
  return { peerSide: { address: from.address, port: from.port } };
}

export interface FlowResult {
  rate: number;
  sent: number;
  received: number;
  lost: number;
}

/**
 * Sends from `from` to `to` as fast as the sink takes them, keeping WINDOW datagrams in flight, for
 * WARMUP_MS + ms; the rate counts only what the sink received after the warm-up.
 */
export function flow(
  from: Socket,
  to: Address,
  sink: Socket,
  ring: Buffer[],
  ms: number,
): Promise<FlowResult> {
  return new Promise((resolve) => {
    let sent = 0;
    let received = 0;
    let presumedLost = 0;
    let running = true;
    let next = 0;
    const send = () => {
      const b = ring[next]!;
      next = next + 1 === ring.length ? 0 : next + 1;
      from.send(b, to.port, to.address);
      sent++;
    };
    const refill = () => {
      while (running && sent - received - presumedLost < WINDOW) send();
    };
    const onMessage = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      received++;
      if (running) send();
    };
    sink.on("message", onMessage);
    let lastReceived = -1;
    const watchdog = setInterval(() => {
      if (received === lastReceived && running) {
        presumedLost = sent - received;
        refill();
      }
      lastReceived = received;
    }, STALL_MS);
    let startCount = 0;
    let startTime = 0;
    setTimeout(() => {
      startCount = received;
      startTime = performance.now();
    }, WARMUP_MS);
    setTimeout(() => {
      const elapsed = performance.now() - startTime;
      const count = received - startCount;
      running = false;
      clearInterval(watchdog);
      // Drain: whatever is still on its way counts as delivered, the rest as lost.
      setTimeout(() => {
        sink.off("message", onMessage);
        resolve({ rate: (count / elapsed) * 1000, sent, received, lost: sent - received });
      }, 200);
    }, WARMUP_MS + ms);
    refill();
  });
}

export interface PingResult {
  /** One-way times a -> b and b -> a in microseconds (one datagram in flight; one clock). */
  ab: number[];
  ba: number[];
}

/** Ping-pong: a sends to aTo, b answers to bTo at once; each leg timed on this process's clock. */
function pingPong(a: Socket, aTo: Address, b: Socket, bTo: Address, rounds: number): Promise<PingResult> {
  const pingMsg = transportRing(PEER_INDEX, 1)[0]!;
  const pongMsg = transportRing(WG_INDEX, 1)[0]!;
  return new Promise((resolve) => {
    const ab: number[] = [];
    const ba: number[] = [];
    let sentAt = 0;
    let lastProgress = 0;
    const ping = () => {
      sentAt = performance.now();
      a.send(pingMsg, aTo.port, aTo.address);
    };
    const onB = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      const now = performance.now();
      ab.push((now - sentAt) * 1000);
      sentAt = now;
      b.send(pongMsg, bTo.port, bTo.address);
    };
    const onA = (msg: Buffer) => {
      if (msg.length !== DATAGRAM_BYTES) return;
      ba.push((performance.now() - sentAt) * 1000);
      lastProgress = ba.length;
      if (ba.length < rounds) ping();
      else finish();
    };
    // A lost datagram (rare on loopback) would stop the ping-pong: start a new round.
    let lastSeen = -1;
    const watchdog = setInterval(() => {
      if (lastProgress === lastSeen) {
        if (ab.length > ba.length) ab.pop();
        ping();
      }
      lastSeen = lastProgress;
    }, 200);
    const finish = () => {
      clearInterval(watchdog);
      a.off("message", onA);
      b.off("message", onB);
      resolve({ ab, ba });
    };
    a.on("message", onA);
    b.on("message", onB);
    ping();
  });
}

/** One-way latency samples of direct and of one route through the forwarder. */
export interface LatencySamples {
  direct: PingResult;
  through: PingResult;
}

/** Blocks of ping-pong alternating direct and `through`; the first rounds of a block warm up sockets and caches. */
export async function alternatingLatency(
  wg: Socket,
  peer: Socket,
  direct: Route,
  through: Route,
): Promise<LatencySamples> {
  const lat: LatencySamples = { direct: { ab: [], ba: [] }, through: { ab: [], ba: [] } };
  for (let block = 0; block < LATENCY_BLOCKS; block++) {
    for (const [key, route] of [
      ["direct", direct],
      ["through", through],
    ] as const) {
      const r = await pingPong(wg, route.out, peer, route.in, LATENCY_ROUNDS_PER_BLOCK);
      lat[key].ab.push(...r.ab.slice(100));
      lat[key].ba.push(...r.ba.slice(100));
    }
  }
  return lat;
}

/** The two ends of every run: a fake WireGuard and a fake peer on loopback, their keys, and the proxy's config. */
export async function openBenchEnds() {
  const keys = { wg: generateKeyPair(), peer: generateKeyPair() };
  const wg = await bindUdpSocket({ address: HOST, port: 0, role: "fake WireGuard" });
  const peer = await bindUdpSocket({ address: HOST, port: 0, role: "fake peer" });
  const cfg = {
    wgPort: wg.address().port,
    peerPort: peer.address().port,
    wgPublicKey: encodeKey(keys.wg.publicKey),
    peerPublicKey: encodeKey(keys.peer.publicKey),
  };
  return { keys, wg, peer, cfg };
}
