// `tunnelbore run --ebpf` on an IPv6 static path between real wireguard-go peers: WireGuard's side is
// IPv4 loopback (L(P)), the path is IPv6, and the tc program translates transport data both ways
// (the kernel's counters carry it; Tunnelbore's sockets see only handshakes and keepalives).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createNamespace, generateKeyPair, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { startWireGuard, type WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

const LINK_A = "fd00:201::1";
const LINK_B = "fd00:201::2";
const TUN_A = "10.96.0.1";
const TUN_B = "10.96.0.2";

describe("kernel fast path on an IPv6 static path", () => {
  let nsA = "";
  let wgA: WireGuardInterface;
  let wgB: WireGuardInterface;
  let keyA = { privateKey: "", publicKey: "" };
  let keyB = { privateKey: "", publicKey: "" };
  let dirs: TunnelboreDirs;
  const running: TunnelboreProcess[] = [];

  beforeAll(async () => {
    const tag = uniqueTag();
    nsA = await createNamespace(`tbt-k6-a-${tag}`);
    const nsB = await createNamespace(`tbt-k6-b-${tag}`);
    for (const ns of [nsA, nsB]) {
      await nsRun(ns, "sysctl", [
        "-qw",
        "net.ipv6.conf.all.disable_ipv6=0",
        "net.ipv6.conf.default.disable_ipv6=0",
      ]);
    }
    // The veth pair is made inside A and its other end moved to B: nothing is created on the host.
    await nsRun(nsA, "ip", ["link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nsB]);
    await nsRun(nsA, "ip", ["-6", "addr", "add", `${LINK_A}/64`, "dev", "eth0", "nodad"]);
    await nsRun(nsB, "ip", ["-6", "addr", "add", `${LINK_B}/64`, "dev", "eth0", "nodad"]);
    await nsRun(nsA, "ip", ["link", "set", "eth0", "up"]);
    await nsRun(nsB, "ip", ["link", "set", "eth0", "up"]);
    keyA = await generateKeyPair();
    keyB = await generateKeyPair();
    wgA = await startWireGuard(nsA, {
      privateKey: keyA.privateKey,
      listenPort: 51820,
      address: `${TUN_A}/24`,
      peers: [{ publicKey: keyB.publicKey, allowedIps: `${TUN_B}/32`, endpoint: `[${LINK_B}]:51820` }],
    });
    wgB = await startWireGuard(nsB, {
      privateKey: keyB.privateKey,
      listenPort: 51820,
      address: `${TUN_B}/24`,
      peers: [{ publicKey: keyA.publicKey, allowedIps: `${TUN_A}/32` }],
    });
    dirs = tunnelboreDirs();
  });
  afterEach(async () => {
    for (const tb of running.splice(0)) await tb.stop("SIGTERM");
  });
  afterAll(async () => {
    await teardownAll();
    dirs?.cleanup();
  });

  const pingOnce = () =>
    nsRun(nsA, "ping", ["-c", "1", "-W", "1", TUN_B]).then(
      () => true,
      () => false,
    );

  it("carries pings in the kernel, translating IPv4 loopback <-> the IPv6 path", async () => {
    await waitFor(pingOnce, {
      what: "WireGuard over IPv6 without Tunnelbore",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const tb = await startTunnelbore(nsA, wgA.name, dirs, ["--ebpf"]);
    running.push(tb);
    const peerOf = async (): Promise<PeerStatus> => {
      const p = (await tb.status()).peers.find((x) => x.publicKey === keyB.publicKey);
      if (!p) throw new Error("peer B missing from status");
      return p;
    };
    const loopback = `${loopbackAddressOf(Buffer.from(keyB.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await wgA.endpointOf(keyB.publicKey)) === loopback, {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await waitFor(pingOnce, { what: "ping through Tunnelbore", timeoutMs: 10_000, intervalMs: 50 });
    await waitFor(async () => (await peerOf()).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const before = await peerOf();
    const result = await ping(nsA, TUN_B, { count: 100, interval: 10 });
    expect(result.received).toBe(100);
    await waitFor(
      async () => {
        const p = await peerOf();
        return (
          p.kernelRxDatagrams - before.kernelRxDatagrams >= 100 &&
          p.kernelTxDatagrams - before.kernelTxDatagrams >= 100
        );
      },
      { what: "kernel counters include the pings", timeoutMs: 5000, intervalMs: 100 },
    );
    const after = await peerOf();
    const user = (p: PeerStatus) => p.txDatagrams - p.kernelTxDatagrams + p.rxDatagrams - p.kernelRxDatagrams;
    expect(user(after) - user(before)).toBeLessThan(10);
    // B sees A at the static path's IPv6 socket; A's WireGuard still has B at L(P).
    const seenByB = await wgB.endpointOf(keyA.publicKey);
    expect(seenByB.startsWith(`[${LINK_A}]:`)).toBe(true);
    expect(seenByB).not.toBe(`[${LINK_A}]:51820`);
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(loopback);
  }, 60_000);
});
