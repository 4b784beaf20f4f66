// Two namespaces on one link, each with a real wireguard-go peered with the other: the smallest lab,
// for Tunnelbore on side A with B's real endpoint (the static path).

import { waitFor } from "../support/wait-for.js";
import { createNamespace, generateKeyPair, nsRun, uniqueTag } from "./netns.js";
import { startWireGuard, type WireGuardInterface } from "./wireguard.js";

export interface LinkedPair {
  nsA: string;
  nsB: string;
  wgA: WireGuardInterface;
  wgB: WireGuardInterface;
  keyA: { privateKey: string; publicKey: string };
  keyB: { privateKey: string; publicKey: string };
  linkA: string;
  linkB: string;
  tunA: string;
  tunB: string;
  /** One ping from A to B through the tunnel, with a 1 s wait: true when answered. */
  pingOnce(): Promise<boolean>;
  /** Pings A to B through the tunnel until one is answered; rejects after `timeoutMs` (default 10 s). */
  waitForPing(timeoutMs?: number): Promise<void>;
}

/** The link's and the tunnel's addresses per family (WireGuard's tunnel addresses are IPv4 either way). */
const ADDRESSES = {
  ipv4: { linkA: "10.201.0.1", linkB: "10.201.0.2", prefix: 24, tunA: "10.99.0.1", tunB: "10.99.0.2" },
  ipv6: { linkA: "fd00:201::1", linkB: "fd00:201::2", prefix: 64, tunA: "10.96.0.1", tunB: "10.96.0.2" },
} as const;

/** `family`: the link between A and B (ipv6: A's peer B at its IPv6 endpoint, e.g. for the fast path's 4<->6). */
export async function createLinkedPair(
  prefix: string,
  family: "ipv4" | "ipv6" = "ipv4",
): Promise<LinkedPair> {
  const wireguardPort = 51820;
  const tag = uniqueTag();
  const nsA = await createNamespace(`tbt-${prefix}-a-${tag}`);
  const nsB = await createNamespace(`tbt-${prefix}-b-${tag}`);
  const { linkA, linkB, prefix: bits, tunA, tunB } = ADDRESSES[family];
  const v6 = family === "ipv6";
  if (v6) {
    for (const ns of [nsA, nsB]) {
      await nsRun(ns, "sysctl", [
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
      ]);
    }
  }
  // The veth pair is made inside A and its other end moved to B: nothing is created on the host.
  await nsRun(nsA, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB]);
  for (const [ns, address] of [
    [nsA, linkA],
    [nsB, linkB],
  ] as const) {
    await nsRun(
      ns,
      "ip",
      v6
        ? ["-6", "addr", "add", `${address}/${bits}`, "dev", "eth0", "nodad"]
        : ["addr", "add", `${address}/${bits}`, "dev", "eth0"],
    );
  }
  await nsRun(nsA, "ip", ["link", "set", "eth0", "up"]);
  await nsRun(nsB, "ip", ["link", "set", "eth0", "up"]);
  const keyA = await generateKeyPair();
  const keyB = await generateKeyPair();
  const wgA = await startWireGuard(nsA, {
    privateKey: keyA.privateKey,
    listenPort: wireguardPort,
    address: `${tunA}/24`,
    peers: [
      {
        publicKey: keyB.publicKey,
        allowedIps: `${tunB}/32`,
        endpoint: v6 ? `[${linkB}]:${wireguardPort}` : `${linkB}:${wireguardPort}`,
      },
    ],
  });
  const wgB = await startWireGuard(nsB, {
    privateKey: keyB.privateKey,
    listenPort: wireguardPort,
    address: `${tunB}/24`,
    peers: [{ publicKey: keyA.publicKey, allowedIps: `${tunA}/32` }],
  });
  const pingOnce = () =>
    nsRun(nsA, "ping", ["-c", "1", "-W", "1", tunB]).then(
      () => true,
      () => false,
    );
  return {
    nsA,
    nsB,
    wgA,
    wgB,
    keyA,
    keyB,
    linkA,
    linkB,
    tunA,
    tunB,
    pingOnce,
    async waitForPing(timeoutMs = 10_000) {
      await waitFor(pingOnce, { what: "ping through the tunnel", timeoutMs, intervalMs: 50 });
    },
  };
}
