// What InterfaceSync tells Tunnelbore a read changed (issues 15, 16): traffic alone (counters, the
// latest handshake) changes neither the peers nor their allowed IPs, so the passes over every peer
// that depend on those (tunnel ranges, the introduction server's peer list) are not made for it.

import { setTimeout as sleep } from "node:timers/promises";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ReadChanges, SyncedPeers } from "../../src/interface-sync.js";
import { InterfaceSync, readInterval } from "../../src/interface-sync.js";
import type { Peer } from "../../src/peer/peer.js";
import { InterfaceDiffer, InterfaceMirror } from "../../src/privsep/interface-diff.js";
import type { PrivilegedOps } from "../../src/privsep/privileged-ops.js";
import type { WireGuardInterfaceInfo, WireGuardPeerInfo } from "../../src/wg/wg-command.js";

function peer(n: number, over: Partial<WireGuardPeerInfo> = {}): WireGuardPeerInfo {
  return {
    publicKey: `key${n}`,
    endpoint: null,
    allowedIps: [`10.0.0.${n}/32`],
    latestHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
    persistentKeepalive: 0,
    ...over,
  };
}

function setup(cadence: { pollIntervalMs: number; pollPerPeerMs?: number } = { pollIntervalMs: 2000 }) {
  let next: WireGuardInterfaceInfo = {
    name: "tbtnone0",
    privateKey: null,
    publicKey: null,
    listenPort: 51820,
    fwmark: 0,
    peers: [],
  };
  let reads = 0;
  const ops = {
    readInterface: async () => {
      reads++;
      return next;
    },
    endpoints: { original: () => undefined, deleteMany: async () => {}, setMany: async () => [] },
  } as unknown as PrivilegedOps;
  const held = new Map<string, WireGuardPeerInfo>();
  const seen: ReadChanges[] = [];
  /** What the sync did to the peers, in order; and how many keys it looked up. */
  const calls: string[] = [];
  let lookups = 0;
  const fakePeer = {
    onHandshakeObserved() {},
    onEndpointOurs() {},
    onEndpointElsewhere: () => false,
  } as unknown as Peer;
  const peers: SyncedPeers = {
    follow: async () => true,
    ensure: async (wireguard) => {
      calls.push(`ensure ${wireguard.publicKey} ${wireguard.rxBytes} ${wireguard.allowedIps.join(",")}`);
      held.set(wireguard.publicKey, wireguard);
      return { peer: fakePeer, loopback: "127.1.0.1:51822", loopback6: null };
    },
    remove: (key) => {
      calls.push(`remove ${key}`);
      held.delete(key);
    },
    bulk: () => {},
    keys: () => held.keys(),
    count: () => held.size,
    has: (key) => {
      lookups++;
      return held.has(key);
    },
    setStaticPath: async () => {},
    loopbacksOf: () => [],
    applied: (_info, changed) => {
      seen.push(changed);
      calls.push(`applied ${JSON.stringify(changed)}`);
      return 0;
    },
  };
  const options = {
    interfaceName: "tbtnone0",
    manageEndpoints: false,
    staticEndpoints: new Map(),
    ...cadence,
  };
  const sync = new InterfaceSync(options, ops, peers, pino({ level: "silent" }));
  const read = async (
    list: WireGuardPeerInfo[],
    head: Partial<WireGuardInterfaceInfo> = {},
    delta?: WireGuardInterfaceInfo["delta"],
  ) => {
    next = { ...next, ...head, peers: list, ...(delta ? { delta } : {}) };
    if (!delta) delete next.delta;
    await sync.sync();
    return seen.at(-1);
  };
  return { read, sync, calls, lookups: () => lookups, reads: () => reads };
}

describe("InterfaceSync's changes", () => {
  it("tells peers and allowed IPs apart from traffic", async () => {
    const { read, sync } = setup();
    expect(await read([peer(1), peer(2)])).toEqual({ peers: true, allowedIps: true });
    // Counters and a handshake: nothing the passes over every peer depend on.
    expect(await read([peer(1, { rxBytes: 500, latestHandshake: 1700000000 }), peer(2)])).toEqual({
      peers: false,
      allowedIps: false,
    });
    expect(await read([peer(1, { rxBytes: 500, latestHandshake: 1700000000 }), peer(2)])).toEqual({
      peers: false,
      allowedIps: false,
    });
    expect(
      await read([peer(1, { rxBytes: 900 }), peer(2, { allowedIps: ["10.0.0.2/32", "10.9.0.0/16"] })]),
    ).toEqual({
      peers: false,
      allowedIps: true,
    });
    expect(await read([peer(2, { allowedIps: ["10.0.0.2/32", "10.9.0.0/16"] })])).toEqual({
      peers: true,
      allowedIps: true,
    });
    expect(await read([peer(2, { allowedIps: ["10.0.0.2/32", "10.9.0.0/16"] }), peer(3)])).toEqual({
      peers: true,
      allowedIps: true,
    });
    // The interface's own fields count as the peers'.
    expect(
      await read([peer(2, { allowedIps: ["10.0.0.2/32", "10.9.0.0/16"] }), peer(3)], { listenPort: 51999 }),
    ).toEqual({
      peers: true,
      allowedIps: true,
    });
    await sync.stop();
  });

  it("does the same with a read told as a delta as with the whole list, looking only at the delta's peers", async () => {
    // Random reads of up to 12 peers: counters, allowed IPs, peers coming and going. One sync is given
    // the mirror's lists (deltas, unchanged peers the same objects), the other a fresh copy of each.
    let seed = 7;
    const random = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const withDelta = setup();
    const whole = setup();
    let current = new Map<number, WireGuardPeerInfo>([1, 2, 3].map((n) => [n, peer(n)]));
    let deltas = 0;
    for (let step = 0; step < 300; step++) {
      const n = 1 + random(12);
      const roll = random(10);
      current = new Map(current);
      if (roll < 5) current.set(n, peer(n, { rxBytes: random(1000) }));
      else if (roll < 7) current.delete(n);
      else if (roll < 8) current.set(n, peer(n, { allowedIps: [`10.0.0.${n}/32`, `10.${n}.0.0/16`] }));
      const mirrored = mirror.apply(differ.changes(info([...current.values()]), mirror.since));
      if (mirrored.delta) deltas++;
      const head = { listenPort: 51820 };
      const a = await withDelta.read(mirrored.peers, head, mirrored.delta);
      const b = await whole.read(
        mirrored.peers.map((p) => ({ ...p, allowedIps: [...p.allowedIps] })),
        head,
      );
      expect(a).toEqual(b);
    }
    expect(deltas).toBeGreaterThan(200);
    expect(withDelta.calls).toEqual(whole.calls);
    await withDelta.sync.stop();
    await whole.sync.stop();
  });

  it("a hub's read with one peer's counters moved looks up that peer only", async () => {
    const differ = new InterfaceDiffer();
    const mirror = new InterfaceMirror();
    const { read, sync, lookups } = setup();
    const peers = Array.from({ length: 1000 }, (_, i) => peer(i));
    const apply = async (list: WireGuardPeerInfo[]) => {
      const mirrored = mirror.apply(differ.changes(info(list), mirror.since));
      return read(mirrored.peers, {}, mirrored.delta);
    };
    await apply(peers);
    await apply(peers);
    const before = lookups();
    for (let i = 1; i <= 10; i++) {
      peers[5] = peer(5, { rxBytes: i });
      expect(await apply([...peers])).toEqual({ peers: false, allowedIps: false });
    }
    expect(lookups() - before).toBe(10);
    await sync.stop();
  });
});

describe("How often the interface is read", () => {
  it("every poll interval up to 4,000 peers, then 0.5 ms a peer, at most 10 s; a fixed interval as given", () => {
    expect(readInterval(2000, 0.5, 1000)).toBe(2000);
    expect(readInterval(2000, 0.5, 4000)).toBe(2000);
    expect(readInterval(2000, 0.5, 10_000)).toBe(5000);
    expect(readInterval(2000, 0.5, 100_000)).toBe(10_000);
    expect(readInterval(2000, 0, 10_000)).toBe(2000);
    expect(readInterval(30_000, 0.5, 100_000)).toBe(30_000); // asked for slower still
  });

  it("reads a bigger interface further apart, and stops reading when stopped", async () => {
    // 20 ms a read for 50 peers, 100 ms for 500 (0.2 ms a peer). Real timers: a read awaits real I/O.
    const { read, sync, reads } = setup({ pollIntervalMs: 20, pollPerPeerMs: 0.2 });
    await read(Array.from({ length: 50 }, (_, i) => peer(i)));
    sync.startPolling();
    let before = reads();
    await sleep(500);
    const small = reads() - before;
    await read(Array.from({ length: 500 }, (_, i) => peer(i)));
    await sleep(100); // the read scheduled at the old pace
    before = reads();
    await sleep(500);
    const big = reads() - before;
    expect(small).toBeLessThanOrEqual(26);
    expect(small).toBeGreaterThanOrEqual(8); // a loaded machine delays timers, never hastens them
    expect(big).toBeLessThanOrEqual(6);
    expect(big).toBeGreaterThanOrEqual(1);
    await sync.stop();
    const stopped = reads();
    await sleep(300);
    expect(reads()).toBe(stopped);
  });
});

function info(peers: WireGuardPeerInfo[]): WireGuardInterfaceInfo {
  return { name: "tbtnone0", privateKey: null, publicKey: null, listenPort: 51820, fwmark: 0, peers };
}
