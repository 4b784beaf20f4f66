// WireGuardProxy's L6(P), [::1]:port, on real loopback sockets: bound when asked (the kernel fast path
// asks for a plain UDP path over IPv6), heard from by a fake WireGuard on both families, delivering to
// WireGuard from [::1] while `deliversFrom6` says the kernel does, and bound again at WireGuard's
// endpoint after a restart. None without the kernel fast path or without WireGuard's IPv6 socket.
import { createSocket, type Socket } from "node:dgram";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { FastPathProgram } from "../../ebpf/loader.js";
import { KernelForwarder } from "../../src/proxy/kernel-forwarder.js";
import {
  LOOPBACK6_PORT_LOW,
  LOOPBACK6_PORT_SPAN,
  LoopbackAllocator,
  loopbackEndpointText,
} from "../../src/proxy/loopback-address.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { WireGuardProxy } from "../../src/proxy/wireguard-proxy.js";
import { encodeKey } from "../../src/wireguard/keys.js";
import { FakeProgram } from "../support/kernel-forwarder-fakes.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../support/noise.js";
import { waitFor } from "../support/wait-for.js";

class FakePath implements PeerPath {
  readonly kind = "direct" as const;
  readonly remote = "[2001:db8::7]:51820";
  readonly sent: Buffer[] = [];
  onDatagram: ((datagram: Buffer) => void) | null = null;
  send(datagram: Buffer): void {
    this.sent.push(Buffer.from(datagram));
  }
  close(): void {}
}

const silent = pino({ level: "silent" });
const local = generateKeyPair();
const peerP = generateKeyPair();

/** A fake WireGuard: one socket per family on the same port, as wireguard-go listens. */
interface FakeWireGuard {
  port: number;
  v4: Socket;
  v6: Socket;
  received: Array<{ family: 4 | 6; from: string }>;
  close(): void;
}

async function fakeWireGuard(): Promise<FakeWireGuard> {
  for (;;) {
    const v4 = createSocket("udp4");
    await new Promise<void>((r) => v4.bind(0, "127.0.0.1", () => r()));
    const port = v4.address().port;
    const v6 = createSocket({ type: "udp6", ipv6Only: true });
    const bound = await new Promise<boolean>((r) => {
      v6.once("error", () => r(false));
      v6.bind(port, "::1", () => r(true));
    });
    if (!bound) {
      v4.close();
      continue;
    }
    const received: FakeWireGuard["received"] = [];
    v4.on("message", (_m, rinfo) => received.push({ family: 4, from: `${rinfo.address}:${rinfo.port}` }));
    v6.on("message", (_m, rinfo) => received.push({ family: 6, from: `[${rinfo.address}]:${rinfo.port}` }));
    const close = () => {
      v4.close();
      v6.close();
    };
    return { port, v4, v6, received, close };
  }
}

let wireguard: FakeWireGuard;
const proxies: WireGuardProxy[] = [];

function makeProxy(options: { kernel?: boolean; ipv6?: boolean } = {}): WireGuardProxy {
  const kernel =
    options.kernel === false
      ? null
      : new KernelForwarder(new FakeProgram() as unknown as FastPathProgram, {
          wireguardInterface: "wg0",
          logger: silent,
          resolveRoute: async () => null, // no entries: this is about the sockets
        });
  const proxy = new WireGuardProxy({
    wireguardPort: wireguard.port,
    catchAll: { address: "127.0.0.1", port: 0 },
    loopbackPortBase: 40000 + Math.floor(Math.random() * 20000),
    localPublicKey: local.publicKey,
    kernel,
    listensOnIpv6: async (port) => port === wireguard.port && options.ipv6 !== false,
    logger: silent,
  });
  proxies.push(proxy);
  return proxy;
}

/** The response of P to an initiation of ours: a handshake message a path delivers to WireGuard. */
function responseOfP(): Buffer {
  const init = buildInitiation({
    initiatorPrivateKey: local.privateKey,
    responderPublicKey: peerP.publicKey,
    senderIndex: 7,
  });
  return Buffer.from(
    buildResponse({ responderPrivateKey: peerP.privateKey, initiation: init, senderIndex: 0xabc }),
  );
}

beforeEach(async () => {
  wireguard = await fakeWireGuard();
});

afterEach(async () => {
  for (const p of proxies.splice(0)) await p.close();
  wireguard.close();
});

describe("WireGuardProxy's L6(P)", () => {
  it("binds [::1]:port when asked, forwards what WireGuard sends there, and delivers from it while the kernel does", async () => {
    const proxy = makeProxy();
    await proxy.start();
    const p = await proxy.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    expect(p.loopback6).toBeNull();
    const l6 = await proxy.loopback6(p);
    expect(l6?.address).toBe("::1");
    expect(l6?.port).toBeGreaterThanOrEqual(LOOPBACK6_PORT_LOW);
    expect(l6?.port).toBeLessThan(LOOPBACK6_PORT_LOW + LOOPBACK6_PORT_SPAN);
    // Asked again (the forwarder asks at every update of the path): the same one, no second socket.
    expect(await proxy.loopback6(p)).toBe(l6);
    const path = new FakePath();
    proxy.setPath(p.publicKey, path);

    // WireGuard's datagram to L6(P) goes on the peer's path, as one to L(P) does.
    const transport = Buffer.alloc(48);
    transport.writeUInt32LE(4, 0);
    await new Promise<void>((r) => wireguard.v6.send(transport, l6?.port ?? 0, "::1", () => r()));
    await new Promise<void>((r) =>
      wireguard.v4.send(transport, p.loopback.port, p.loopback.address, () => r()),
    );
    await waitFor(() => path.sent.length === 2, { what: "both forwarded on the path" });

    // The peer's handshake reaches WireGuard from L(P) until the kernel delivers from L6(P), then from it.
    path.onDatagram?.(responseOfP());
    await waitFor(() => wireguard.received.length === 1, { what: "the response at WireGuard" });
    expect(wireguard.received[0]).toEqual({ family: 4, from: loopbackEndpointText(p.loopback) });
    p.deliversFrom6 = true;
    path.onDatagram?.(responseOfP());
    await waitFor(() => wireguard.received.length === 2, { what: "the second response at WireGuard" });
    expect(wireguard.received[1]).toEqual({ family: 6, from: `[::1]:${l6?.port}` });
    expect(proxy.drops["foreign-source"]).toBe(0);

    // Removed, the peer's [::1] port is free again.
    proxy.removePeer(p.publicKey);
    const again = createSocket({ type: "udp6", ipv6Only: true });
    await new Promise<void>((r, j) => {
      again.once("error", j);
      again.bind({ port: l6?.port ?? 0, address: "::1", exclusive: true }, () => r());
    });
    again.close();
  });

  it("none without the kernel fast path, or where WireGuard has no IPv6 socket hearing [::1]", async () => {
    const user = makeProxy({ kernel: false });
    const a = await user.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    expect(await user.loopback6(a)).toBeNull();
    const v4only = makeProxy({ ipv6: false });
    const b = await v4only.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    expect(await v4only.loopback6(b)).toBeNull();
    expect(b.socket6).toBeNull();
  });

  it("after a restart, binds the [::1] port WireGuard points at first, not the key's first free one", async () => {
    // The key's first candidate held (by an earlier peer's run, say): the first run takes the second.
    const [first, second] = [...new LoopbackAllocator(undefined, 6).candidates(peerP.publicKey)];
    const holder = createSocket({ type: "udp6", ipv6Only: true });
    await new Promise<void>((r) =>
      holder.bind({ port: first?.port ?? 0, address: "::1", exclusive: true }, r),
    );
    const run1 = makeProxy();
    const p1 = await run1.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    expect((await run1.loopback6(p1))?.port).toBe(second?.port);
    await run1.close();
    holder.close();
    // The next run, told WireGuard's endpoint, binds it again at once, though the first is free now.
    const run2 = makeProxy();
    const p2 = await run2.addPeer(encodeKey(peerP.publicKey), peerP.publicKey, `[::1]:${second?.port}`);
    expect(p2.loopback6).toEqual(second);
    expect(p2.socket6).not.toBeNull();
    await run2.close();
    // Without it, nothing is bound up front, and the key's first candidate when asked.
    const run3 = makeProxy();
    const p3 = await run3.addPeer(encodeKey(peerP.publicKey), peerP.publicKey);
    expect(p3.loopback6).toBeNull();
    expect(await run3.loopback6(p3)).toEqual(first);
  });
});
