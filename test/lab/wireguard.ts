// Real wireguard-go interfaces inside test namespaces.
import { existsSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "../support/wait-for.js";
import { nsRun, onTeardown, type SpawnedProcess, spawnInNamespace, uniqueTag } from "./netns.js";

export interface WireGuardPeerConfig {
  publicKey: string;
  allowedIps: string;
  endpoint?: string;
  persistentKeepalive?: number;
}

export interface WireGuardConfig {
  privateKey: string;
  listenPort: number;
  /** Tunnel address with prefix, e.g. "10.99.0.1/24". */
  address: string;
  peers?: WireGuardPeerConfig[];
}

export interface WireGuardInterface {
  readonly ns: string;
  readonly name: string;
  readonly process: SpawnedProcess;
  /** `wg show NAME dump` parsed into lines of tab-separated fields. */
  dump(): Promise<string[][]>;
  /** The endpoint WireGuard currently has for a peer ("(none)" when unset). */
  endpointOf(publicKey: string): Promise<string>;
  /** Unix seconds of WireGuard's latest completed handshake with a peer; 0 when never. */
  latestHandshakeOf(publicKey: string): Promise<number>;
  setPeer(peer: WireGuardPeerConfig): Promise<void>;
  stop(): Promise<void>;
}

/** A fresh interface name: wireguard-go's UAPI socket lives in /var/run/wireguard, shared by all namespaces. */
export function uniqueInterfaceName(prefix = "tbt"): string {
  return `${prefix}${uniqueTag()}`.slice(0, 15);
}

export async function startWireGuard(
  ns: string,
  config: WireGuardConfig,
  name = uniqueInterfaceName(),
): Promise<WireGuardInterface> {
  // wireguard-go removes its UAPI socket only on a clean exit; a SIGKILL at teardown leaves it behind.
  const socketPath = `/var/run/wireguard/${name}.sock`;
  onTeardown(async () => {
    await rm(socketPath, { force: true });
  });
  const proc = spawnInNamespace(ns, "wireguard-go", ["-f", name], {
    LOG_LEVEL: process.env.TBT_WG_LOG ?? "error",
  });
  await waitFor(() => existsSync(`/var/run/wireguard/${name}.sock`), {
    what: `wireguard-go ${name} socket`,
    timeoutMs: 10_000,
    intervalMs: 50,
  });
  // Not /dev/stdin: Node's stdin pipe is a socketpair, which `wg` cannot fopen (ENXIO).
  const keyDir = await mkdtemp(join(tmpdir(), "tbt-wgkey-"));
  const keyFile = join(keyDir, "key");
  try {
    await writeFile(keyFile, `${config.privateKey}\n`, { mode: 0o600 });
    await nsRun(ns, "wg", ["set", name, "private-key", keyFile, "listen-port", String(config.listenPort)]);
  } finally {
    await rm(keyDir, { recursive: true, force: true });
  }
  await nsRun(ns, "ip", ["address", "add", config.address, "dev", name]);
  await nsRun(ns, "ip", ["link", "set", name, "up"]);
  const iface: WireGuardInterface = {
    ...wireGuardControls(ns, name),
    process: proc,
    async stop() {
      await proc.stop("SIGTERM");
    },
  };
  for (const peer of config.peers ?? []) await iface.setPeer(peer);
  return iface;
}

/** What `wg` tells and sets of an interface, however it was made (wireguard-go here, wg-quick elsewhere). */
export function wireGuardControls(ns: string, name: string): Omit<WireGuardInterface, "process" | "stop"> {
  /** The peer's line of `wg show dump`: public key, preshared key, endpoint, allowed IPs, latest handshake, ... */
  const peerRow = async (publicKey: string): Promise<string[]> => {
    const row = (await controls.dump()).slice(1).find((r) => r[0] === publicKey);
    if (!row) throw new Error(`peer ${publicKey} not on ${name}`);
    return row;
  };
  const controls: Omit<WireGuardInterface, "process" | "stop"> = {
    ns,
    name,
    async dump() {
      const out = await nsRun(ns, "wg", ["show", name, "dump"]);
      return out
        .trim()
        .split("\n")
        .map((l) => l.split("\t"));
    },
    async endpointOf(publicKey) {
      return (await peerRow(publicKey))[2] ?? "(none)";
    },
    async latestHandshakeOf(publicKey) {
      return Number((await peerRow(publicKey))[4] ?? 0);
    },
    async setPeer(peer) {
      const args = ["set", name, "peer", peer.publicKey, "allowed-ips", peer.allowedIps];
      if (peer.endpoint) args.push("endpoint", peer.endpoint);
      if (peer.persistentKeepalive) args.push("persistent-keepalive", String(peer.persistentKeepalive));
      await nsRun(ns, "wg", args);
    },
  };
  return controls;
}
