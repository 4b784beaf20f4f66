// What InterfaceSync tells Tunnelbore a read changed (issues 15, 16): traffic alone (counters, the
// latest handshake) changes neither the peers nor their allowed IPs, so the passes over every peer
// that depend on those (tunnel ranges, the introduction server's peer list) are not made for it.
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ReadChanges, SyncedPeers } from "../../src/interface-sync.js";
import { InterfaceSync } from "../../src/interface-sync.js";
import type { Peer } from "../../src/peer/peer.js";
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

function setup() {
  let next: WireGuardInterfaceInfo = {
    name: "tbtnone0",
    privateKey: null,
    publicKey: null,
    listenPort: 51820,
    fwmark: 0,
    peers: [],
  };
  const ops = {
    readInterface: async () => next,
    endpoints: { original: () => undefined, deleteMany: async () => {}, setMany: async () => [] },
  } as unknown as PrivilegedOps;
  const held = new Map<string, WireGuardPeerInfo>();
  const seen: ReadChanges[] = [];
  const fakePeer = {
    onHandshakeObserved() {},
    onEndpointOurs() {},
    onEndpointElsewhere: () => false,
  } as unknown as Peer;
  const peers: SyncedPeers = {
    follow: async () => true,
    ensure: async (wireguard) => {
      held.set(wireguard.publicKey, wireguard);
      return { peer: fakePeer, loopback: "127.1.0.1:51822" };
    },
    remove: (key) => void held.delete(key),
    bulk: () => {},
    keys: () => held.keys(),
    count: () => held.size,
    has: (key) => held.has(key),
    setStaticPath: async () => {},
    loopbackOf: () => null,
    applied: (_info, changed) => {
      seen.push(changed);
      return 0;
    },
  };
  const options = {
    interfaceName: "tbtnone0",
    manageEndpoints: false,
    staticEndpoints: new Map(),
    pollIntervalMs: 2000,
  };
  const sync = new InterfaceSync(options, ops, peers, pino({ level: "silent" }));
  const read = async (list: WireGuardPeerInfo[], head: Partial<WireGuardInterfaceInfo> = {}) => {
    next = { ...next, ...head, peers: list };
    await sync.sync();
    return seen.at(-1);
  };
  return { read, sync };
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
});
