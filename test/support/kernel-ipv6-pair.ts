// Two namespaces on one IPv6 veth link, each with a real wireguard-go peered with the other (tunnel
// addresses IPv4): A's peer B at its real IPv6 endpoint, the static path Tunnelbore on A takes over.
// For the kernel fast path's IPv6 test and benchmark (WireGuard's side stays IPv4 loopback).
import { createNamespace, generateKeyPair, nsRun, uniqueTag } from "../lab/netns.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "./wait-for.js";

export interface Ipv6Pair {
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
  waitForPing(timeoutMs?: number): Promise<void>;
}

export async function createIpv6Pair(prefix: string): Promise<Ipv6Pair> {
  const tag = uniqueTag();
  const nsA = await createNamespace(`tbt-${prefix}-a-${tag}`);
  const nsB = await createNamespace(`tbt-${prefix}-b-${tag}`);
  const [linkA, linkB, tunA, tunB] = ["fd00:201::1", "fd00:201::2", "10.96.0.1", "10.96.0.2"];
  for (const ns of [nsA, nsB]) {
    await nsRun(ns, "sysctl", [
      "-qw",
      "net.ipv6.conf.all.disable_ipv6=0",
      "net.ipv6.conf.default.disable_ipv6=0",
    ]);
  }
  // The veth pair is made inside A and its other end moved to B: nothing is created on the host.
  await nsRun(nsA, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB]);
  await nsRun(nsA, "ip", ["-6", "addr", "add", `${linkA}/64`, "dev", "eth0", "nodad"]);
  await nsRun(nsB, "ip", ["-6", "addr", "add", `${linkB}/64`, "dev", "eth0", "nodad"]);
  await nsRun(nsA, "ip", ["link", "set", "eth0", "up"]);
  await nsRun(nsB, "ip", ["link", "set", "eth0", "up"]);
  const keyA = await generateKeyPair();
  const keyB = await generateKeyPair();
  const wgA = await startWireGuard(nsA, {
    privateKey: keyA.privateKey,
    listenPort: 51820,
    address: `${tunA}/24`,
    peers: [{ publicKey: keyB.publicKey, allowedIps: `${tunB}/32`, endpoint: `[${linkB}]:51820` }],
  });
  const wgB = await startWireGuard(nsB, {
    privateKey: keyB.privateKey,
    listenPort: 51820,
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
