// A hub: one wireguard-go interface with thousands of peers with static endpoints, most of whose other
// ends do not exist (their endpoints are in 198.18.0.0/15, behind the namespace's default route to a
// veth whose other end drops what goes there: routed as a real hub's uplink would route them), and a few real
// ones, each a wireguard-go in a namespace of its own on a link to the hub, holding its key.
// For test/e2e/hub.test.ts and bench/hub.ts.
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createNamespace, nsRun, uniqueTag } from "./netns.js";
import { startWireGuard, type WireGuardInterface } from "./wireguard.js";

export interface HubPeerKey {
  privateKey: string;
  publicKey: string;
}

export interface RealPeer {
  ns: string;
  wg: WireGuardInterface;
  key: HubPeerKey;
  /** Its real endpoint as the hub's WireGuard has it. */
  endpoint: string;
  /** Its tunnel address (the hub pings it there). */
  tunnelAddress: string;
}

export interface Hub {
  ns: string;
  wg: WireGuardInterface;
  /** The hub's tunnel address (real peers ping it there). */
  tunnelAddress: string;
  /** Every peer's key, real ones included. */
  keys: HubPeerKey[];
  /** The real endpoint the hub's WireGuard was configured with, by public key. */
  endpoints: Map<string, string>;
  real: RealPeer[];
  /** `wg show IF endpoints` of the hub: endpoint by public key. */
  currentEndpoints(): Promise<Map<string, string>>;
}

/** An X25519 key pair in WireGuard's base64, without spawning `wg` (thousands are needed). */
export function quickKeyPair(): HubPeerKey {
  const { privateKey, publicKey } = generateKeyPairSync("x25519");
  const priv = privateKey.export({ format: "der", type: "pkcs8" }).subarray(-32);
  const pub = publicKey.export({ format: "der", type: "spki" }).subarray(-32);
  return { privateKey: priv.toString("base64"), publicKey: pub.toString("base64") };
}

const HUB_TUNNEL = "10.98.0.1";

/** The hub with `peers` peers, `realPeers` of which (the first ones) exist. */
export async function createHub(peers: number, realPeers: number): Promise<Hub> {
  const tag = uniqueTag();
  const ns = await createNamespace(`tbt-hub-${tag}`);
  await nsRun(ns, "ip", ["link", "add", "uplink", "type", "veth", "peer", "name", "uplink-end"]);
  await nsRun(ns, "ip", ["addr", "add", "192.0.2.1/24", "dev", "uplink"]);
  await nsRun(ns, "ip", ["link", "set", "uplink", "up"]);
  await nsRun(ns, "ip", ["link", "set", "uplink-end", "up"]);
  // A gateway that is never asked for (a static neighbour) and never forwards.
  await nsRun(ns, "ip", ["neigh", "add", "192.0.2.254", "lladdr", "02:00:00:00:00:fe", "dev", "uplink"]);
  await nsRun(ns, "ip", ["route", "add", "default", "via", "192.0.2.254", "dev", "uplink"]);
  const keys = Array.from({ length: peers }, quickKeyPair);
  const hubKey = quickKeyPair();
  const endpoints = new Map<string, string>();
  const real: RealPeer[] = [];
  for (let k = 0; k < realPeers; k++) {
    const key = keys[k]!;
    const peerNs = await createNamespace(`tbt-hubp${k}-${tag}`);
    await nsRun(ns, "ip", [
      "link",
      "add",
      `eth${k}`,
      "type",
      "veth",
      "peer",
      "name",
      "eth0",
      "netns",
      peerNs,
    ]);
    await nsRun(ns, "ip", ["addr", "add", `10.202.${k}.1/24`, "dev", `eth${k}`]);
    await nsRun(peerNs, "ip", ["addr", "add", `10.202.${k}.2/24`, "dev", "eth0"]);
    await nsRun(ns, "ip", ["link", "set", `eth${k}`, "up"]);
    await nsRun(peerNs, "ip", ["link", "set", "eth0", "up"]);
    const tunnelAddress = `10.98.1.${k + 1}`;
    const wg = await startWireGuard(peerNs, {
      privateKey: key.privateKey,
      listenPort: 51820,
      address: `${tunnelAddress}/16`,
      peers: [{ publicKey: hubKey.publicKey, allowedIps: `${HUB_TUNNEL}/32` }],
    });
    const endpoint = `10.202.${k}.2:51820`;
    endpoints.set(key.publicKey, endpoint);
    real.push({ ns: peerNs, wg, key, endpoint, tunnelAddress });
  }
  const wg = await startWireGuard(ns, {
    privateKey: hubKey.privateKey,
    listenPort: 51820,
    address: `${HUB_TUNNEL}/16`,
  });
  // Every peer in one `wg addconf`: the hub's configuration, as an operator's file would give it.
  const lines = ["[Interface]"];
  keys.forEach((key, i) => {
    const allowed = i < realPeers ? real[i]!.tunnelAddress : `10.100.${i >> 8}.${i & 255}`;
    const endpoint =
      endpoints.get(key.publicKey) ?? `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}:51820`;
    endpoints.set(key.publicKey, endpoint);
    lines.push(
      "[Peer]",
      `PublicKey = ${key.publicKey}`,
      `AllowedIPs = ${allowed}/32`,
      `Endpoint = ${endpoint}`,
    );
  });
  const dir = await mkdtemp(join(tmpdir(), "tbt-hubconf-"));
  try {
    const file = join(dir, "hub.conf");
    await writeFile(file, `${lines.join("\n")}\n`, { mode: 0o600 });
    await nsRun(ns, "wg", ["addconf", wg.name, file]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return {
    ns,
    wg,
    tunnelAddress: HUB_TUNNEL,
    keys,
    endpoints,
    real,
    async currentEndpoints() {
      const out = await nsRun(ns, "wg", ["show", wg.name, "endpoints"]);
      const map = new Map<string, string>();
      for (const line of out.split("\n")) {
        const [key, endpoint] = line.split("\t");
        if (key && endpoint) map.set(key, endpoint.trim());
      }
      return map;
    },
  };
}
