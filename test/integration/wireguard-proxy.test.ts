// WireGuardProxy on real loopback sockets, with a fake WireGuard (a UDP socket) and a fake path.
import { createSocket, type Socket } from "node:dgram";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { PeerPath } from "../../src/proxy/path.js";
import { WireGuardProxy } from "../../src/proxy/wireguard-proxy.js";
import { encodeKey } from "../../src/wireguard/keys.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../support/noise.js";
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

const silent = pino({ level: "silent" });
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
    logger: silent,
  });
  await proxy.start();
});

afterEach(async () => {
  await proxy.close();
  wireguard.close();
});

describe("WireGuardProxy", () => {
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
    expect(proxy.peer(encodeKey(peerQ.publicKey))?.heldInitiation).toBeNull();
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

  it("binds the same L(P) for the same key after a restart, and detaches a replaced path without closing it", async () => {
    const key = encodeKey(peerP.publicKey);
    const first = (await proxy.addPeer(key, peerP.publicKey)).loopback;
    const a = new FakePath();
    const b = new FakePath();
    proxy.setPath(key, a);
    proxy.setPath(key, b);
    expect(a.onDatagram).toBeNull();
    expect(a.closed).toBe(false);
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
