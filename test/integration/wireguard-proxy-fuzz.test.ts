// WireGuardProxy against datagrams no WireGuard would send, on real loopback sockets: random bytes,
// WireGuard's message types at every length, and real handshakes with bytes flipped, from WireGuard's
// side (to the catch-all and to L(P)) and from the peer's (the path). Every one is forwarded or counted
// as a drop, none is lost unaccounted, nothing throws, and real handshakes still pass afterwards.
// test/e2e/fuzz.test.ts sends a million random ones from WireGuard's side to a running Tunnelbore; this
// one adds the peer's side and real handshakes mutated (which reach mac1 checks, holding and crossing).
// Seeded: a failure names its seed, and TUNNELBORE_FUZZ_SEED reruns it.
import { createSocket, type Socket } from "node:dgram";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PeerPath } from "../../src/proxy/path.js";
import type { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import { WireGuardProxy } from "../../src/proxy/wireguard-proxy.js";
import { encodeKey } from "../../src/wireguard/keys.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../support/noise.js";
import { seededRandom } from "../support/seeded-random.js";
import { waitFor } from "../support/wait-for.js";

const ROUNDS = 1500;
const SEED = Number(process.env.TUNNELBORE_FUZZ_SEED ?? Date.now() % 2 ** 31);

class RecordingPath implements PeerPath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.1:1";
  sent = 0;
  onDatagram: ((datagram: Buffer) => void) | null = null;
  send(): void {
    this.sent++;
  }
  close(): void {}
}

const local = generateKeyPair();
const peerP = generateKeyPair();

/** One hostile datagram: random, a WireGuard type at a near-miss length, or a real message flipped. */
function hostile(random: () => number, real: Buffer[]): Buffer {
  const int = (n: number) => Math.floor(random() * n);
  const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
  switch (int(4)) {
    case 0:
      return bytes(random() < 0.9 ? int(200) : int(1500));
    case 1: {
      // Type 1-4 with zero reserved bytes, at a length around each message's size.
      const type = 1 + int(4);
      const sizes = [148, 92, 64, 32];
      const size = Math.max(4, (sizes[type - 1] ?? 32) + int(9) - 4 + (type === 4 ? int(64) : 0));
      const msg = bytes(size);
      msg.writeUInt32LE(type, 0);
      return msg;
    }
    case 2: {
      const msg = Buffer.from(real[int(real.length)] as Buffer);
      for (let flips = 1 + int(3); flips > 0; flips--) {
        const at = int(msg.length);
        msg[at] = (msg[at] ?? 0) ^ (1 + int(255));
      }
      return msg;
    }
    default: {
      // A real message cut short or grown.
      const msg = real[int(real.length)] as Buffer;
      return random() < 0.5 ? msg.subarray(0, int(msg.length)) : Buffer.concat([msg, bytes(1 + int(16))]);
    }
  }
}

describe(`WireGuardProxy under hostile datagrams (seed ${SEED})`, () => {
  let wireguard: Socket;
  let atWireGuard: number;
  let proxy: WireGuardProxy;
  let peer: ProxyPeer;
  let path: RecordingPath;

  const totalDrops = () => Object.values(proxy.drops).reduce((a, b) => a + b, 0);
  const send = (msg: Buffer, port: number, address: string) =>
    new Promise<void>((resolve) => wireguard.send(msg, port, address, () => resolve()));

  beforeEach(async () => {
    wireguard = createSocket("udp4");
    await new Promise<void>((resolve) => wireguard.bind(0, "127.0.0.1", () => resolve()));
    atWireGuard = 0;
    wireguard.on("message", () => atWireGuard++);
    proxy = new WireGuardProxy({
      wireguardPort: wireguard.address().port,
      catchAll: { address: "127.0.0.1", port: 0 },
      loopbackPortBase: 40000 + Math.floor(Math.random() * 20000),
      localPublicKey: local.publicKey,
      logger: pino({ level: "silent" }),
    });
    await proxy.start();
    peer = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    path = new RecordingPath();
    proxy.setPath(peer.publicKey, path);
  });

  afterEach(async () => {
    await proxy.close();
    wireguard.close();
  });

  it("forwards or counts every one, both ways, and still carries real handshakes after", async () => {
    const random = seededRandom(SEED);
    const ours = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 11,
    });
    const theirs = buildInitiation({
      initiatorPrivateKey: peerP.privateKey,
      responderPublicKey: local.publicKey,
      senderIndex: 12,
    });
    const response = buildResponse({
      responderPrivateKey: peerP.privateKey,
      initiation: ours,
      senderIndex: 13,
    });
    const real = [ours, theirs, response].map((m) => Buffer.from(m));

    // From WireGuard's side: to the catch-all and to L(P), one at a time (loopback loses nothing then).
    for (let i = 0; i < ROUNDS; i++) {
      const toCatchAll = random() < 0.5;
      const target = toCatchAll ? proxy.catchAllAddress : peer.loopback;
      await send(hostile(random, real), target.port, target.address);
    }
    await waitFor(() => path.sent + totalDrops() === ROUNDS, {
      what: `every datagram from WireGuard forwarded or dropped (seed ${SEED})`,
      timeoutMs: 10_000,
    });

    // From the peer's side: the path hands them over as werift would.
    // In slices, so that our "WireGuard" reads as they come (its socket buffer would overflow).
    const dropsBefore = totalDrops();
    for (let i = 0; i < ROUNDS; i++) {
      path.onDatagram?.(hostile(random, real));
      if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    // A crossing initiation may wait out its window (1 s) before it is delivered.
    await waitFor(() => atWireGuard + totalDrops() - dropsBefore === ROUNDS, {
      what: `every datagram from the peer delivered or dropped (seed ${SEED})`,
      timeoutMs: 10_000,
    });
    expect(proxy.drops.malformed).toBeGreaterThan(0);
    expect(proxy.drops["bad-mac1"]).toBeGreaterThan(0);

    // Real handshakes still go both ways.
    const sentBefore = path.sent;
    await send(Buffer.from(ours), proxy.catchAllAddress.port, proxy.catchAllAddress.address);
    await waitFor(() => path.sent === sentBefore + 1, { what: "a real initiation forwarded" });
    const deliveredBefore = atWireGuard;
    path.onDatagram?.(Buffer.from(response));
    await waitFor(() => atWireGuard === deliveredBefore + 1, { what: "a real response delivered" });
  }, 60_000);
});
