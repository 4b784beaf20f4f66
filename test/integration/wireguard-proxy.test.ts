// WireGuardProxy on real loopback sockets, with a fake WireGuard (a UDP socket) and a fake path.
import { createSocket, type Socket } from "node:dgram";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { Logger } from "../../src/log.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { WireGuardProxy } from "../../src/proxy/wireguard-proxy.js";
import { encodeKey } from "../../src/wireguard/keys.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../support/noise.js";
import { startUdpSquatter } from "../support/udp-squatter.js";
import { waitFor } from "../support/wait-for.js";

class FakePath implements PeerPath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.1:1";
  readonly sent: Buffer[] = [];
  onDatagram: ((datagram: Buffer) => void) | null = null;
  closed = false;
  send(datagram: Buffer): void {
    this.sent.push(Buffer.from(datagram));
  }
  close(): void {
    this.closed = true;
  }
}

/** Like IcePath: what reached the path before anyone listened is delivered when the receiver attaches. */
class EarlyPath implements PeerPath {
  readonly kind = "direct" as const;
  readonly remote = "192.0.2.2:1";
  readonly sent: Buffer[] = [];
  private receiver: ((datagram: Buffer) => void) | null = null;
  constructor(private readonly early: Buffer) {}
  send(datagram: Buffer): void {
    this.sent.push(Buffer.from(datagram));
  }
  close(): void {}
  get onDatagram(): ((datagram: Buffer) => void) | null {
    return this.receiver;
  }
  set onDatagram(receiver: ((datagram: Buffer) => void) | null) {
    this.receiver = receiver;
    receiver?.(this.early);
  }
}

const silent = pino({ level: "silent" });
const REPLACED_GRACE_MS = 200;
const CROSSING_MS = 300;

/** A peer key pair whose public key sorts after ours (`after`) or before it. */
function peerKeyPair(after: boolean): ReturnType<typeof generateKeyPair> {
  for (;;) {
    const k = generateKeyPair();
    if (Buffer.compare(local.publicKey, k.publicKey) < 0 === after) return k;
  }
}
const local = generateKeyPair();
const peerP = generateKeyPair();
const peerQ = generateKeyPair();
let wireguard: Socket;
let received: Array<{ msg: Buffer; from: string }>;
let proxy: WireGuardProxy;

async function bound(): Promise<Socket> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  return s;
}

function sendFromWireGuard(msg: Uint8Array, port: number, address = "127.0.0.1"): Promise<void> {
  return new Promise((r) => wireguard.send(msg, port, address, () => r()));
}

beforeEach(async () => {
  wireguard = await bound();
  received = [];
  wireguard.on("message", (msg, rinfo) => received.push({ msg, from: `${rinfo.address}:${rinfo.port}` }));
  proxy = new WireGuardProxy({
    wireguardPort: wireguard.address().port,
    catchAll: { address: "127.0.0.1", port: 0 },
    loopbackPortBase: 40000 + Math.floor(Math.random() * 20000),
    localPublicKey: local.publicKey,
    replacedPathGraceMs: REPLACED_GRACE_MS,
    crossingWindowMs: CROSSING_MS,
    logger: silent,
  });
  await proxy.start();
});

afterEach(async () => {
  await proxy.close();
  wireguard.close();
});

describe("WireGuardProxy", () => {
  it("lists the peers with a path, for liveness, as paths are set, removed and peers go", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    const q = await proxy.addPeer(encodeKey(peerQ.publicKey), peerQ.publicKey);
    expect([...proxy.peersWithPath()]).toEqual([]);
    proxy.setPath(q.publicKey, new FakePath());
    proxy.setPath(p.publicKey, new FakePath());
    expect([...proxy.peersWithPath()]).toEqual([q, p]);
    proxy.setPath(q.publicKey, new FakePath()); // replaced: still one entry
    proxy.setPath(p.publicKey, null);
    expect([...proxy.peersWithPath()]).toEqual([q]);
    proxy.removePeer(q.publicKey);
    expect([...proxy.peersWithPath()]).toEqual([]);
  });

  it("identifies an initiation at the catch-all by mac1 and holds it until a path exists", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    await proxy.addPeer(encodeKey(peerQ.publicKey), peerQ.publicKey);
    const needed: string[] = [];
    proxy.on("path-needed", (peer) => needed.push(peer.publicKey));
    const first = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 1,
    });
    const second = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 2,
    });
    await sendFromWireGuard(first, proxy.catchAllAddress.port);
    await sendFromWireGuard(second, proxy.catchAllAddress.port);
    await waitFor(() => needed.length >= 2, { what: "both initiations at the catch-all" });
    expect(needed).toEqual([p.publicKey, p.publicKey]);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    // Latest wins: only the second initiation goes out, once.
    expect(path.sent).toEqual([Buffer.from(second)]);
    expect(proxy.peer(encodeKey(peerQ.publicKey))?.heldHandshake).toBeNull();
  });

  it("holds a response WireGuard sends before the peer has a path, asks for the path, and sends it once set", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    const needed: string[] = [];
    proxy.on("path-needed", (peer) => needed.push(peer.publicKey));
    // P's initiation reached our WireGuard (on a path that is gone, or before ours was set); it answers.
    const init = buildInitiation({
      initiatorPrivateKey: peerP.privateKey,
      responderPublicKey: local.publicKey,
      senderIndex: 5,
    });
    const response = buildResponse({
      responderPrivateKey: local.privateKey,
      initiation: init,
      senderIndex: 6,
    });
    await sendFromWireGuard(response, p.loopback.port, p.loopback.address);
    await waitFor(() => needed.length >= 1, { what: "the response held" });
    expect(needed).toEqual([p.publicKey]);
    expect(proxy.drops["no-path"]).toBe(0);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    expect(path.sent).toEqual([Buffer.from(response)]);
  });

  it("holds data only for a dormant peer (not a keepalive), asks for the path, and sends it once set", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    const needed: string[] = [];
    proxy.on("path-needed", (peer) => needed.push(peer.publicKey));
    const transport = (length: number) =>
      Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(length - 4, 7)]);
    const data = transport(96);
    const keepalive = transport(32);
    // Awake without a path (e.g. failed): data is dropped as before, nothing asked.
    await sendFromWireGuard(data, p.loopback.port, p.loopback.address);
    await waitFor(() => proxy.drops["no-path"] === 1, { what: "data dropped" });
    proxy.setDormant(p.publicKey, true);
    // WireGuard's keepalive after the last data it received must not wake a peer that just went dormant.
    await sendFromWireGuard(keepalive, p.loopback.port, p.loopback.address);
    await waitFor(() => proxy.drops["no-path"] === 2, { what: "keepalive dropped" });
    expect(needed).toEqual([]);
    await sendFromWireGuard(data, p.loopback.port, p.loopback.address);
    await waitFor(() => needed.length >= 1, { what: "the data held" });
    expect(needed).toEqual([p.publicKey]);
    proxy.setDormant(p.publicKey, false); // woken: the held datagram waits for the path all the same
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    expect(path.sent).toEqual([data]);
    expect(proxy.drops["no-path"]).toBe(2);
  });

  it("holds a dormant peer's data in order (a pause often ends with several datagrams) and sends all once set", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    proxy.setDormant(p.publicKey, true);
    const data = [1, 2, 3].map((n) => Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(92, n)]));
    let needed = 0;
    proxy.on("path-needed", () => needed++);
    for (const d of data) await sendFromWireGuard(d, p.loopback.port, p.loopback.address);
    await waitFor(() => needed >= 3, { what: "all three held" });
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    expect(path.sent).toEqual(data);
    expect(proxy.drops["no-path"]).toBe(0);
  });

  it("holds only the latest handshake message, of either type", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    let held = 0;
    proxy.on("path-needed", () => held++);
    const ours = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 1,
    });
    const theirs = buildInitiation({
      initiatorPrivateKey: peerP.privateKey,
      responderPublicKey: local.publicKey,
      senderIndex: 2,
    });
    // WireGuard answered P's initiation after sending its own: its own one is useless now.
    const response = buildResponse({
      responderPrivateKey: local.privateKey,
      initiation: theirs,
      senderIndex: 3,
    });
    await sendFromWireGuard(ours, p.loopback.port, p.loopback.address);
    await sendFromWireGuard(response, p.loopback.port, p.loopback.address);
    await waitFor(() => held >= 2, { what: "both handshakes held" });
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    expect(path.sent).toEqual([Buffer.from(response)]);
    expect(proxy.drops.superseded).toBe(1); // the initiation it replaced: accounted for, not lost
  });

  it("drops a held initiation when the peer's initiation reaches WireGuard as the path comes up (no crossed handshakes)", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    let held = 0;
    proxy.on("path-needed", () => held++);
    const ours = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 1,
    });
    await sendFromWireGuard(ours, p.loopback.port, p.loopback.address);
    await waitFor(() => held >= 1, { what: "our initiation held" });
    // The peer's initiation arrived before our side had the path; it is delivered as the path attaches.
    const theirs = buildInitiation({
      initiatorPrivateKey: peerP.privateKey,
      responderPublicKey: local.publicKey,
      senderIndex: 2,
    });
    const path = new EarlyPath(Buffer.from(theirs));
    proxy.setPath(p.publicKey, path);
    await waitFor(() => received.length >= 1, { what: "the peer's initiation at WireGuard" });
    expect(received[0]?.msg).toEqual(Buffer.from(theirs));
    // WireGuard answers it; ours would make each side answer the other and wait 5 s.
    expect(path.sent).toEqual([]);
    expect(proxy.drops["no-path"]).toBe(0);
    expect(proxy.drops.superseded).toBe(1);
  });

  it("initiations that cross: the smaller key's side holds the peer's back until its own is answered, or the window ends", async () => {
    const peer = peerKeyPair(true);
    const p = await proxy.addPeer(encodeKey(peer.publicKey), peer.publicKey);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    const crossing = async (senderIndex: number) => {
      const ours = buildInitiation({
        initiatorPrivateKey: local.privateKey,
        responderPublicKey: peer.publicKey,
        senderIndex,
      });
      await sendFromWireGuard(ours, p.loopback.port, p.loopback.address);
      await waitFor(() => path.sent.length >= senderIndex, { what: "our initiation sent" });
      const theirs = buildInitiation({
        initiatorPrivateKey: peer.privateKey,
        responderPublicKey: local.publicKey,
        senderIndex: 100 + senderIndex,
      });
      path.onDatagram?.(Buffer.from(theirs));
      return { ours, theirs };
    };
    // The peer's side delivered ours, and its WireGuard answers: the crossing one never reaches ours.
    const first = await crossing(1);
    const answer = buildResponse({
      responderPrivateKey: peer.privateKey,
      initiation: first.ours,
      senderIndex: 7,
    });
    path.onDatagram?.(Buffer.from(answer));
    const transport = Buffer.alloc(48);
    transport.writeUInt32LE(4, 0);
    path.onDatagram?.(transport);
    await waitFor(() => received.length >= 2, { what: "the answer and the transport message at WireGuard" });
    expect(received.map((r) => r.msg)).toEqual([Buffer.from(answer), transport]);
    expect(proxy.drops.superseded).toBe(1); // the crossing one, made moot by the answer
    // Ours was lost on the way: theirs is delivered when the window ends.
    const second = await crossing(2);
    await waitFor(() => received.length >= 3, { what: "the held initiation delivered" });
    expect(received[2]?.msg).toEqual(Buffer.from(second.theirs));
  });

  it("initiations that cross: the larger key's side delivers the peer's at once", async () => {
    const peer = peerKeyPair(false);
    const p = await proxy.addPeer(encodeKey(peer.publicKey), peer.publicKey);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    const ours = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peer.publicKey,
      senderIndex: 1,
    });
    await sendFromWireGuard(ours, p.loopback.port, p.loopback.address);
    await waitFor(() => path.sent.length >= 1, { what: "our initiation sent" });
    const theirs = buildInitiation({
      initiatorPrivateKey: peer.privateKey,
      responderPublicKey: local.publicKey,
      senderIndex: 2,
    });
    path.onDatagram?.(Buffer.from(theirs));
    await waitFor(() => received.length >= 1, { what: "their initiation at WireGuard" });
    expect(received[0]?.msg).toEqual(Buffer.from(theirs));
  });

  it("does not send a held handshake that WireGuard's 5 s retry has superseded, and counts it as no-path", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    let held = 0;
    proxy.on("path-needed", () => held++);
    const init = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 1,
    });
    await sendFromWireGuard(init, p.loopback.port, p.loopback.address);
    await waitFor(() => held >= 1, { what: "the initiation held" });
    vi.useFakeTimers({ toFake: ["Date"] });
    try {
      vi.setSystemTime(Date.now() + 5501);
      const path = new FakePath();
      proxy.setPath(p.publicKey, path);
      expect(path.sent).toEqual([]);
      expect(proxy.drops["no-path"]).toBe(1);
    } finally {
      vi.useRealTimers();
    }
  });

  it("sends the peer's datagrams to WireGuard from L(P) and routes type 4 at the catch-all by learned index", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    // P answers an initiation of ours: its response carries its sender index 0xabcdef.
    const init = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 7,
    });
    const response = buildResponse({
      responderPrivateKey: peerP.privateKey,
      initiation: init,
      senderIndex: 0xabcdef,
    });
    path.onDatagram?.(Buffer.from(response));
    await waitFor(() => received.length >= 1, { what: "the response at WireGuard" });
    expect(received).toHaveLength(1);
    expect(received[0]?.from).toBe(`${p.loopback.address}:${p.loopback.port}`);
    // WireGuard's transport message to receiver index 0xabcdef, sent to the catch-all, goes to P.
    const transport = Buffer.alloc(48);
    transport.writeUInt32LE(4, 0);
    transport.writeUInt32LE(0xabcdef, 4);
    await sendFromWireGuard(transport, proxy.catchAllAddress.port);
    // One to an index nobody announced is dropped and counted.
    transport.writeUInt32LE(0x123, 4);
    await sendFromWireGuard(transport, proxy.catchAllAddress.port);
    // The catch-all reads in order: once the second is counted, the first was handled too.
    await waitFor(() => proxy.drops["unknown-index"] >= 1, { what: "the second transport message dropped" });
    expect(path.sent).toHaveLength(1);
    expect(path.sent[0]?.readUInt32LE(4)).toBe(0xabcdef);
    expect(proxy.drops["unknown-index"]).toBe(1);
  });

  it("drops and counts malformed datagrams and handshakes with the wrong mac1, both ways", async () => {
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);
    await sendFromWireGuard(Buffer.from("hello"), p.loopback.port, p.loopback.address);
    // An initiation meant for Q sent to P's loopback socket fails P's mac1.
    const forQ = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerQ.publicKey,
      senderIndex: 3,
    });
    await sendFromWireGuard(forQ, p.loopback.port, p.loopback.address);
    // Inbound: an initiation not made for our key, and garbage.
    path.onDatagram?.(
      Buffer.from(
        buildInitiation({
          initiatorPrivateKey: peerP.privateKey,
          responderPublicKey: peerQ.publicKey,
          senderIndex: 4,
        }),
      ),
    );
    path.onDatagram?.(Buffer.alloc(10));
    // Every one of the four is dropped and counted; none is forwarded either way.
    await waitFor(() => proxy.drops.malformed + proxy.drops["bad-mac1"] >= 4, {
      what: "all four datagrams counted",
    });
    expect(path.sent).toHaveLength(0);
    expect(received).toHaveLength(0);
    expect(proxy.drops.malformed).toBe(2);
    expect(proxy.drops["bad-mac1"]).toBe(2);
  });

  it("binds the same L(P) for the same key after a restart, and detaches a replaced path after a grace period without closing it", async () => {
    const key = encodeKey(peerP.publicKey);
    const p = await proxy.addPeer(key, peerP.publicKey);
    const first = p.loopback;
    const a = new FakePath();
    const b = new FakePath();
    proxy.setPath(key, a);
    proxy.setPath(key, b);
    // The peer may not have switched yet: what it still sends on the replaced path reaches WireGuard.
    const init = buildInitiation({
      initiatorPrivateKey: local.privateKey,
      responderPublicKey: peerP.publicKey,
      senderIndex: 8,
    });
    a.onDatagram?.(
      Buffer.from(buildResponse({ responderPrivateKey: peerP.privateKey, initiation: init, senderIndex: 9 })),
    );
    await waitFor(() => received.length >= 1, { what: "the response on the replaced path at WireGuard" });
    expect(received[0]?.from).toBe(`${first.address}:${first.port}`);
    await waitFor(() => a.onDatagram === null, { what: "the replaced path detached" });
    expect(b.onDatagram).not.toBeNull();
    expect(a.closed).toBe(false);
    // Switching back to a path within its grace period keeps it attached.
    proxy.setPath(key, a);
    proxy.setPath(key, b);
    proxy.setPath(key, a);
    await waitFor(() => b.onDatagram === null, { what: "b detached" });
    expect(a.onDatagram).not.toBeNull();
    const base = proxy.peer(key)?.loopback.port ?? 0;
    await proxy.close();
    proxy = new WireGuardProxy({
      wireguardPort: wireguard.address().port,
      catchAll: { address: "127.0.0.1", port: 0 },
      loopbackPortBase: base,
      logger: silent,
    });
    await proxy.start();
    expect((await proxy.addPeer(key, peerP.publicKey)).loopback).toEqual(first);
  });

  it("reports a busy catch-all as a configuration error", async () => {
    const other = new WireGuardProxy({
      wireguardPort: 1,
      catchAll: proxy.catchAllAddress,
      logger: silent,
    });
    await expect(other.start()).rejects.toMatchObject({ code: "port-busy", name: "ConfigError" });
  });
});

/** A logger whose lines the test reads. */
function capturingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const logger: Logger = pino({ level: "info" }, { write: (line: string) => void lines.push(line) });
  return { logger, lines };
}

describe("WireGuardProxy against a local squatter (another user holding our ports first)", () => {
  it("names who holds a busy catch-all and says what to do", async () => {
    const port = 20000 + Math.floor(Math.random() * 20000);
    const squatter = await startUdpSquatter("127.0.0.1", [port]);
    try {
      const other = new WireGuardProxy({
        wireguardPort: 1,
        catchAll: { address: "127.0.0.1", port },
        logger: silent,
      });
      const starting = other.start();
      await expect(starting).rejects.toMatchObject({ code: "port-busy", name: "ConfigError" });
      await expect(starting).rejects.toThrow(
        new RegExp(
          `127\\.0\\.0\\.1:${port} is already in use by uid 65534 \\(nobody\\), pid ${squatter.pid} \\(node\\).*--listen`,
        ),
      );
      await other.close();
    } finally {
      await squatter.stop();
    }
  });

  it("moves a peer whose L(P) is squatted to another address of its key, the same one every time", async () => {
    const key = encodeKey(peerP.publicKey);
    const base = 20000 + Math.floor(Math.random() * 20000);
    const home = loopbackAddressOf(peerP.publicKey);
    // Every port today's allocator would fall back to, on the address the key gives.
    const squatted = Array.from({ length: 64 }, (_, i) => base + i);
    const squatter = await startUdpSquatter(home, squatted);
    const loopbacks: string[] = [];
    try {
      for (let restart = 0; restart < 2; restart++) {
        const { logger, lines } = capturingLogger();
        const other = new WireGuardProxy({
          wireguardPort: wireguard.address().port,
          catchAll: { address: "127.0.0.1", port: 0 },
          loopbackPortBase: base,
          logger,
        });
        await other.start();
        try {
          const peer = await other.addPeer(key, peerP.publicKey);
          const at = peer.loopback;
          loopbacks.push(`${at.address}:${at.port}`);
          expect(at.address === home && squatted.includes(at.port)).toBe(false);
          expect(lines.join("")).toMatch(new RegExp(`${home.replace(/\./g, "\\.")}:${base}.*uid 65534`));
          // The socket WireGuard is to be pointed at is ours: what WireGuard sends there reaches the path.
          const path = new FakePath();
          other.setPath(key, path);
          const init = buildInitiation({
            initiatorPrivateKey: local.privateKey,
            responderPublicKey: peerP.publicKey,
            senderIndex: 9,
          });
          await sendFromWireGuard(init, at.port, at.address);
          await waitFor(() => path.sent.length === 1, { what: "the initiation forwarded from L(P)" });
        } finally {
          await other.close();
        }
      }
      expect(loopbacks[1]).toBe(loopbacks[0]);
    } finally {
      await squatter.stop();
    }
    // Nobody squats: the key's own address at the base port, as before.
    const free = new WireGuardProxy({
      wireguardPort: wireguard.address().port,
      catchAll: { address: "127.0.0.1", port: 0 },
      loopbackPortBase: base,
      logger: silent,
    });
    await free.start();
    expect((await free.addPeer(key, peerP.publicKey)).loopback).toEqual({ address: home, port: base });
    await free.close();
  });
});
