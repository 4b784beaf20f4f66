// `tunnelbore run --ebpf` on an IPv6 static path between real wireguard-go peers: WireGuard's side is
// IPv4 loopback (L(P)), the path is IPv6, and the tc program translates transport data both ways
// (the kernel's counters carry it; Tunnelbore's sockets see only handshakes and keepalives).
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { createIpv6Pair, type Ipv6Pair } from "../support/kernel-ipv6-pair.js";
import { waitFor } from "../support/wait-for.js";

describe("kernel fast path on an IPv6 static path", () => {
  let pair: Ipv6Pair;
  let dirs: TunnelboreDirs;
  const running: TunnelboreProcess[] = [];

  beforeAll(async () => {
    pair = await createIpv6Pair("k6");
    dirs = tunnelboreDirs();
  });
  afterEach(async () => {
    for (const tb of running.splice(0)) await tb.stop("SIGTERM");
  });
  afterAll(async () => {
    await teardownAll();
    dirs?.cleanup();
  });

  it("carries pings in the kernel, translating IPv4 loopback <-> the IPv6 path", async () => {
    await pair.waitForPing();
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, ["--ebpf"]);
    running.push(tb);
    const peerOf = async (): Promise<PeerStatus> => {
      const p = (await tb.status()).peers.find((x) => x.publicKey === pair.keyB.publicKey);
      if (!p) throw new Error("peer B missing from status");
      return p;
    };
    const loopback = `${loopbackAddressOf(Buffer.from(pair.keyB.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await pair.wgA.endpointOf(pair.keyB.publicKey)) === loopback, {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await pair.waitForPing();
    await waitFor(async () => (await peerOf()).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const before = await peerOf();
    const result = await ping(pair.nsA, pair.tunB, { count: 100, interval: 10 });
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
    const seenByB = await pair.wgB.endpointOf(pair.keyA.publicKey);
    expect(seenByB.startsWith(`[${pair.linkA}]:`)).toBe(true);
    expect(seenByB).not.toBe(`[${pair.linkA}]:51820`);
    expect(await pair.wgA.endpointOf(pair.keyB.publicKey)).toBe(loopback);
  }, 60_000);
});
