// The privileged parent's request validation: the worker may ask only what it legitimately needs, and
// nothing it sends (malformed or hostile) crashes the parent or reaches WireGuard, the state file or
// the kernel.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { InboundEntry, OutboundEntry } from "../../ebpf/loader.js";
import { createLogger } from "../../src/log.js";
import type { FastPathControl, LocalPrivilegedOps } from "../../src/privsep/privileged-ops.js";
import { loopbackEndpoint, PrivilegedServer, PrivsepRefusal } from "../../src/privsep/privileged-server.js";
import { type Ask, RemotePrivilegedOps } from "../../src/privsep/remote-ops.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { publicKeyOf, x25519, x25519PrivateKeyObject } from "../../src/signalling/signalling-crypto.js";
import type { TunnelBypassStatus } from "../../src/wg/tunnel-bypass.js";
import type { WireGuardInterfaceInfo } from "../../src/wg/wg-command.js";

const silent = createLogger("test", "silent");
const ownPrivate = randomBytes(32);
const peerKey = publicKeyOf(randomBytes(32));
const strangerKey = publicKeyOf(randomBytes(32));

function interfaceInfo(): WireGuardInterfaceInfo {
  return {
    name: "wg0",
    privateKey: ownPrivate.toString("base64"),
    publicKey: publicKeyOf(ownPrivate),
    listenPort: 51820,
    fwmark: 0xca6c,
    peers: [
      {
        publicKey: peerKey,
        endpoint: "192.0.2.7:51820",
        allowedIps: ["10.0.0.2/32"],
        latestHandshake: 0,
        rxBytes: 0,
        txBytes: 0,
        persistentKeepalive: 0,
      },
    ],
  };
}

/** LocalPrivilegedOps that records what would have been done, instead of doing it. */
function fakeOps() {
  const done: string[] = [];
  const saved = new Map<string, string>();
  const fastPath: FastPathControl = {
    preference: 49200,
    interfaces: ["lo"],
    attach: async (dev: string) => void done.push(`attach ${dev}`),
    setOutbound: (e: OutboundEntry) =>
      void done.push(`out ${e.loopbackAddress}:${e.loopbackPort}${e.nextHop ? ` via ${e.nextHop}` : ""}`),
    deleteOutbound: () => void done.push("delete out"),
    outboundCounters: () => ({ packets: 3n, bytes: 300n, lastNs: 7n }),
    setInbound: (e: InboundEntry) => void done.push(`in ${e.loopbackAddress}`),
    deleteInbound: () => void done.push("delete in"),
    inboundCounters: () => null,
    close: async () => void done.push("fast path closed"),
    countersMoved: (full: boolean) => [
      {
        loopback: "127.1.2.3:51822",
        direction: "outbound",
        counters: { packets: 9n, bytes: 900n, lastNs: 8n },
      },
      // Not an entry the worker set: left out.
      {
        loopback: "127.9.9.9:1",
        direction: full ? "inbound" : "outbound",
        counters: { packets: 1n, bytes: 1n, lastNs: 1n },
      },
    ],
  };
  let reads = 0;
  const bypassStatus: TunnelBypassStatus = {
    state: "active",
    fwmark: 0xca6c,
    mark: 0xca6c,
    cgroup: null,
    reason: null,
  };
  const ops = {
    readInterface: async () => interfaceInfo(),
    // As LocalPrivilegedOps with its InterfaceReader: every read a full change.
    readInterfaceChanges: async () => {
      const info = interfaceInfo();
      return { info, changes: { read: ++reads, changed: info.peers, removed: [] } };
    },
    lastReadPeer: (key: string) => interfaceInfo().peers.find((p) => p.publicKey === key),
    setPeerEndpoint: async (key: string, endpoint: string) => void done.push(`set ${key} ${endpoint}`),
    nudgeIfTrafficWaiting: async () => void done.push("nudge traffic"),
    nudgeHandshake: async (key: string, keepalive: number) => void done.push(`nudge ${key} ${keepalive}`),
    endpoints: {
      load: async () => undefined,
      entries: () => [...saved],
      set: async (key: string, endpoint: string) => void saved.set(key, endpoint),
      delete: async (key: string) => void saved.delete(key),
    },
    restoreEndpoints: async () => 0,
    checkWgQuickConfig: async () => null,
    bypass: {
      start: async () => void done.push("bypass start"),
      follow: async () => true,
      status: () => bypassStatus,
      close: async () => void done.push("bypass closed"),
    },
    loadFastPath: async () => fastPath,
  } as unknown as LocalPrivilegedOps;
  const server = new PrivilegedServer({ interfaceName: "wg0", ops, logger: silent });
  return { server, done, saved };
}

async function readyServer() {
  const fake = fakeOps();
  await fake.server.handle({ op: "readInterface" });
  return fake;
}

const outbound = {
  localAddress: "10.1.0.2",
  localPort: 40000,
  remoteAddress: "198.51.100.9",
  remotePort: 50000,
  loopbackAddress: "127.1.2.3",
  loopbackPort: 51822,
  wireguardPort: 51820,
  ifindex: 2,
  toLoopback: false,
};

describe("PrivilegedServer", () => {
  it("gives the worker the interface without its private key", async () => {
    const { server } = fakeOps();
    const info = (await server.handle({ op: "readInterface" })) as WireGuardInterfaceInfo;
    expect(info.privateKey).toBeNull();
    expect(info.publicKey).toBe(publicKeyOf(ownPrivate));
    expect(JSON.stringify(info)).not.toContain(ownPrivate.toString("base64"));
  });

  it("answers X25519 with the interface's key for a canonical public key, and nothing else", async () => {
    const { server } = await readyServer();
    const peer = randomBytes(32);
    const shared = (await server.handle({ op: "x25519", peer: publicKeyOf(peer) })) as string;
    const expected = x25519(x25519PrivateKeyObject(peer), Buffer.from(publicKeyOf(ownPrivate), "base64"));
    expect(Buffer.from(shared, "base64")).toEqual(expected);
    const remote = new LocalKeyAgreement(peer);
    expect(await remote.x25519(Buffer.from(publicKeyOf(ownPrivate), "base64"))).toEqual(expected);
    await expect(server.handle({ op: "x25519", peer: "AAAA" })).rejects.toThrow(PrivsepRefusal);
    await expect(server.handle({ op: "x25519", peer: Buffer.alloc(32).toString("base64") })).rejects.toThrow(
      /low-order/,
    );
    // No request returns the key itself.
    for (const op of ["privateKey", "readKey", "dump"])
      await expect(server.handle({ op })).rejects.toThrow(/malformed request/);
  });

  it("refuses X25519 before it has read the interface (it has no key yet)", async () => {
    const { server } = fakeOps();
    await expect(server.handle({ op: "x25519", peer: publicKeyOf(randomBytes(32)) })).rejects.toThrow(
      /no private key/,
    );
  });

  it("points only the interface's peers, and only at 127.x", async () => {
    const { server, done } = await readyServer();
    await server.handle({ op: "setPeerEndpoint", key: peerKey, endpoint: "127.4.5.6:51822" });
    expect(done).toEqual([`set ${peerKey} 127.4.5.6:51822`]);
    const refused = [
      { key: strangerKey, endpoint: "127.4.5.6:51822" },
      { key: peerKey, endpoint: "198.51.100.1:51820" },
      { key: peerKey, endpoint: "127.4.5.6:0" },
      { key: peerKey, endpoint: "127.4.5.256:51822" },
      { key: peerKey, endpoint: "[::1]:51822" },
      { key: peerKey, endpoint: "127.0.0.1:51822\npeer x remove" },
      { key: `${peerKey} remove`, endpoint: "127.4.5.6:51822" },
    ];
    for (const request of refused)
      await expect(server.handle({ op: "setPeerEndpoint", ...request })).rejects.toThrow(PrivsepRefusal);
    expect(done).toHaveLength(1);
  });

  it("nudges handshakes with the peer's settings as WireGuard shows them, not the worker's", async () => {
    const { server, done } = await readyServer();
    await server.handle({ op: "nudgeHandshake", key: peerKey, keepalive: 25 });
    expect(done).toEqual([`nudge ${peerKey} 0`]);
    await expect(server.handle({ op: "nudgeHandshake", key: strangerKey })).rejects.toThrow(PrivsepRefusal);
    await expect(server.handle({ op: "nudgeTraffic", key: peerKey, endpoint: "10.0.0.1:1" })).rejects.toThrow(
      PrivsepRefusal,
    );
  });

  it("remembers only the real endpoint WireGuard showed for the peer", async () => {
    const { server, saved } = await readyServer();
    await expect(
      server.handle({ op: "stateSet", key: peerKey, endpoint: "203.0.113.66:51820" }),
    ).rejects.toThrow(/real endpoint/);
    await expect(
      server.handle({ op: "stateSet", key: strangerKey, endpoint: "192.0.2.7:51820" }),
    ).rejects.toThrow(PrivsepRefusal);
    expect(saved.size).toBe(0);
    await server.handle({ op: "stateSet", key: peerKey, endpoint: "192.0.2.7:51820" });
    expect([...saved]).toEqual([[peerKey, "192.0.2.7:51820"]]);
  });

  it("marks sockets only with the interface's own fwmark", async () => {
    const { server, done } = await readyServer();
    await expect(server.handle({ op: "bypassStart", fwmark: 0x1234 })).rejects.toThrow(/fwmark/);
    expect(done).toEqual([]);
    expect(await server.handle({ op: "bypassFollow", fwmark: 0xca6c })).toMatchObject({ changed: true });
  });

  it("takes fast path entries leading to 127.x only, in batches, and returns counters", async () => {
    const { server, done } = await readyServer();
    await expect(server.handle({ op: "fastPathUpdate", updates: [] })).rejects.toThrow(/not loaded/);
    expect(await server.handle({ op: "fastPathLoad" })).toEqual({ preference: 49200, interfaces: ["lo"] });
    await server.handle({ op: "fastPathUpdate", updates: [{ op: "setOutbound", entry: outbound }] });
    expect(done).toEqual(["out 127.1.2.3:51822"]);
    const bad = [
      { ...outbound, loopbackAddress: "10.0.0.1" },
      { ...outbound, remoteAddress: "not an address" },
      { ...outbound, remotePort: 70000 },
      { ...outbound, channel: 12 },
      // The next hop: an IPv6 path's only, an IPv6 address.
      { ...outbound, nextHop: "10.1.0.1" },
      { ...outbound, nextHop: "fe80::1" },
      { ...outbound, remoteAddress: "2001:db8::9", nextHop: "gateway" },
      { ...outbound, remoteAddress: "2001:db8::9", nextHop: "10.1.0.1" },
    ];
    for (const entry of bad)
      await expect(
        server.handle({ op: "fastPathUpdate", updates: [{ op: "setOutbound", entry }] }),
      ).rejects.toThrow(PrivsepRefusal);
    // A batch with one bad entry is refused whole.
    await expect(
      server.handle({
        op: "fastPathUpdate",
        updates: [
          { op: "setOutbound", entry: outbound },
          { op: "setOutbound", entry: bad[0] },
        ],
      }),
    ).rejects.toThrow(PrivsepRefusal);
    expect(done).toEqual(["out 127.1.2.3:51822"]);
    await server.handle({
      op: "fastPathUpdate",
      updates: [
        { op: "setOutbound", entry: { ...outbound, remoteAddress: "2001:db8::9", nextHop: "fe80::1" } },
      ],
    });
    expect(done).toEqual(["out 127.1.2.3:51822", "out 127.1.2.3:51822 via fe80::1"]);
    done.length = 1;
    await expect(server.handle({ op: "fastPathAttach", dev: "eth0; rm -rf /", ifindex: 2 })).rejects.toThrow(
      PrivsepRefusal,
    );
    expect(
      await server.handle({
        op: "fastPathCounters",
        outbound: [{ loopbackAddress: "127.1.2.3", loopbackPort: 51822 }],
        inbound: [],
      }),
    ).toEqual({ outbound: [{ packets: "3", bytes: "300", lastNs: "7" }], inbound: [] });
  });

  it("refuses malformed requests of every shape with an error, never a crash", async () => {
    const { server } = await readyServer();
    const junk: unknown[] = [
      null,
      undefined,
      42,
      "readInterface",
      [],
      {},
      { op: 7 },
      { op: "setPeerEndpoint" },
      { op: "setPeerEndpoint", key: null, endpoint: {} },
      { op: "fastPathUpdate", updates: "all" },
      { op: "fastPathUpdate", updates: Array.from({ length: 5000 }, () => ({ op: "deleteInbound" })) },
      { op: "x25519", peer: "A".repeat(100_000) },
      JSON.parse('{"__proto__": {"op": "readInterface"}}'),
    ];
    for (const request of junk) await expect(server.handle(request)).rejects.toThrow(PrivsepRefusal);
  });

  it("shuts down: unloads the fast path and the bypass, and refuses what comes after", async () => {
    const { server, done } = await readyServer();
    await server.handle({ op: "fastPathLoad" });
    await server.close();
    expect(done).toEqual(["fast path closed", "bypass closed"]);
    await expect(server.handle({ op: "readInterface" })).rejects.toThrow(/shutting down/);
  });
});

describe("loopbackEndpoint", () => {
  it("accepts 127.x:port only", () => {
    expect(loopbackEndpoint("127.0.0.1:51821")).toBe("127.0.0.1:51821");
    expect(loopbackEndpoint("127.255.1.2:1")).toBe("127.255.1.2:1");
    for (const bad of ["127.0.0.1", "128.0.0.1:1", "127.0.0.1:65536", " 127.0.0.1:1", "localhost:1"])
      expect(() => loopbackEndpoint(bad)).toThrow(PrivsepRefusal);
  });
});

describe("RemotePrivilegedOps against the parent's server, over JSON as on the IPC channel", () => {
  function channel(server: PrivilegedServer): Ask {
    // What process.send does: JSON both ways; a value JSON cannot carry fails the send.
    return async (request) =>
      JSON.parse(JSON.stringify(await server.handle(JSON.parse(JSON.stringify(request)))));
  }

  it("agrees keys without the private key, and carries fast path entries and counters", async () => {
    const { server, done } = fakeOps();
    const remote = new RemotePrivilegedOps(channel(server), silent);
    const info = await remote.readInterface();
    expect(info.privateKey).toBeNull();
    const keys = remote.keyAgreement(info);
    const peer = randomBytes(32);
    expect(await keys?.x25519(Buffer.from(publicKeyOf(peer), "base64"))).toEqual(
      await new LocalKeyAgreement(peer).x25519(Buffer.from(publicKeyOf(ownPrivate), "base64")),
    );
    await expect(keys?.x25519(Buffer.alloc(32))).rejects.toThrow(/X25519/);

    const fastPath = await remote.loadFastPath();
    // KernelForwarder passes its own records, bigint counts and all: only the entry's fields cross.
    fastPath.setOutbound({ ...outbound, sentPackets: 0n } as OutboundEntry);
    await waitUntil(() => done.includes("out 127.1.2.3:51822"));
    // The next hop crosses with the entry (the forwarder's record has it undefined when there is none).
    fastPath.setOutbound({ ...outbound, remoteAddress: "2001:db8::9", nextHop: "fe80::1" });
    await waitUntil(() => done.includes("out 127.1.2.3:51822 via fe80::1"));
    const setAt = Date.now();
    await waitUntil(() => fastPath.outboundCounters("127.1.2.3", 51822)?.packets === 3n);
    // A copy, read when it was asked for: what came after is not in it (the idle sweep waits for it).
    const read = fastPath.outboundCounters("127.1.2.3", 51822);
    expect(read).toEqual({ packets: 3n, bytes: 300n, lastNs: 7n, readAt: expect.any(Number) });
    expect(read?.readAt).toBeGreaterThanOrEqual(setAt);
    expect(read?.readAt).toBeLessThanOrEqual(Date.now());
    await fastPath.close();
    expect(done).toContain("fast path closed");
  });

  it("tells which entries moved in one answer, their counts read from then on; across a change, none", async () => {
    const { server } = fakeOps();
    const remote = new RemotePrivilegedOps(channel(server), silent);
    await remote.readInterface();
    const fastPath = await remote.loadFastPath();
    fastPath.setOutbound({ ...outbound } as OutboundEntry);
    const askedAt = Date.now();
    const moved = await fastPath.countersMoved?.(false);
    const counters = { packets: 9n, bytes: 900n, lastNs: 8n, readAt: expect.any(Number) };
    expect(moved).toEqual([{ loopback: "127.1.2.3:51822", direction: "outbound", counters }]);
    const read = fastPath.outboundCounters("127.1.2.3", 51822);
    expect(read).toEqual(counters);
    expect(read?.readAt).toBeGreaterThanOrEqual(askedAt);
    expect(read?.readAt).toBeLessThanOrEqual(Date.now());
    // An entry changed while the answer was on its way: its counts may be its predecessor's.
    const meanwhile = fastPath.countersMoved?.(false);
    fastPath.deleteOutbound("127.1.2.3", 51822);
    await expect(meanwhile).rejects.toThrow(/changed while/);
    await expect(server.handle({ op: "fastPathCountersMoved", full: "yes" })).rejects.toThrow(PrivsepRefusal);
    await fastPath.close();
  });

  it("mirrors the saved endpoints and keeps the bypass status the parent reports", async () => {
    const { server } = fakeOps();
    const remote = new RemotePrivilegedOps(channel(server), silent);
    await remote.readInterface();
    await remote.endpoints.load();
    await remote.endpoints.set(peerKey, "192.0.2.7:51820");
    expect(remote.endpoints.original(peerKey)).toBe("192.0.2.7:51820");
    await expect(remote.endpoints.set(peerKey, "203.0.113.1:1")).rejects.toThrow(/real endpoint/);
    expect(remote.endpoints.original(peerKey)).toBe("192.0.2.7:51820");
    expect(await remote.bypass.follow(0xca6c)).toBe(true);
    expect(remote.bypass.mark).toBe(0xca6c);
    // A refusal is a reason in the status, as TunnelBypass reports its own failures.
    expect(await remote.bypass.follow(0x1)).toBe(false);
    expect(remote.bypass.status()).toMatchObject({
      state: "unavailable",
      reason: expect.stringMatching(/fwmark/),
    });
  });
});

async function waitUntil(condition: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
