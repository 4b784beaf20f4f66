// Tunnelbore between real wireguard-go peers over a static path: two namespaces on one link,
// Tunnelbore on side A with B's real endpoint (an address, then a hostname).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun, teardownAll } from "../lab/netns.js";
import { childrenOf, isRunning } from "../lab/process-tree.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import type { WireGuardInterface } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

let pair: LinkedPair;
let nsA: string;
let nsB: string;
let wgA: WireGuardInterface;
let wgB: WireGuardInterface;
let keyB: { privateKey: string; publicKey: string };
let LINK_A: string;
let LINK_B: string;
const LINK_B2 = "10.201.0.3";
let dirs: TunnelboreDirs;
const running: TunnelboreProcess[] = [];

const pingOnce = () => pair.pingOnce();

async function tunnelbore(extra: string[] = []): Promise<TunnelboreProcess> {
  const tb = await startTunnelbore(nsA, wgA.name, dirs, extra);
  running.push(tb);
  return tb;
}

function loopbackOfB(): string {
  return `${loopbackAddressOf(Buffer.from(keyB.publicKey, "base64"))}:51822`;
}

beforeAll(async () => {
  pair = await createLinkedPair("sp");
  ({ nsA, nsB, wgA, wgB, keyB, linkA: LINK_A, linkB: LINK_B } = pair);
  dirs = tunnelboreDirs();
});

afterEach(async () => {
  for (const tb of running.splice(0)) await tb.stop("SIGTERM");
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
  rmSync(`/etc/netns/${nsA}`, { recursive: true, force: true });
});

describe("static path through real wireguard-go", () => {
  it("forwards pings, points WireGuard at L(P), and restores the endpoint on SIGTERM", async () => {
    const tb = await tunnelbore();
    await waitFor(async () => (await wgA.endpointOf(keyB.publicKey)) === loopbackOfB(), {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await pair.waitForPing();
    const status = await tb.status();
    const peer = status.peers.find((p) => p.publicKey === keyB.publicKey);
    expect(peer).toMatchObject({ pathKind: "static", remote: `${LINK_B}:51820`, loopback: loopbackOfB() });
    expect(peer?.rxBytes).toBeGreaterThan(0);
    expect(peer?.txBytes).toBeGreaterThan(0);
    // B sees A at the static path's socket, not at WireGuard's port: the packets went through Tunnelbore.
    const seenByB = await wgB.endpointOf((await wgA.dump())[0]?.[1] ?? "");
    expect(seenByB.startsWith(`${LINK_A}:`)).toBe(true);
    expect(seenByB).not.toBe(`${LINK_A}:51820`);

    expect(await tb.stop("SIGTERM")).toBe(0);
    running.length = 0;
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(`${LINK_B}:51820`);
  });

  it("follows peers added to and removed from the interface", async () => {
    const tb = await tunnelbore();
    const extra = await generateKeyPair();
    await wgA.setPeer({
      publicKey: extra.publicKey,
      allowedIps: "10.99.0.9/32",
      endpoint: "192.0.2.9:51820",
    });
    const extraLoopback = `${loopbackAddressOf(Buffer.from(extra.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await wgA.endpointOf(extra.publicKey)) === extraLoopback, {
      what: "the new peer pointed at its L(P)",
      intervalMs: 100,
    });
    const added = (await tb.status()).peers.find((p) => p.publicKey === extra.publicKey);
    expect(added).toMatchObject({ pathKind: "static", remote: "192.0.2.9:51820", loopback: extraLoopback });
    await nsRun(nsA, "wg", ["set", wgA.name, "peer", extra.publicKey, "remove"]);
    await waitFor(async () => (await tb.status()).peers.every((p) => p.publicKey !== extra.publicKey), {
      what: "the removed peer gone",
      intervalMs: 100,
    });
    // The first peer was not disturbed.
    expect(await pingOnce()).toBe(true);
  });

  it("survives SIGKILL and a restart without reconfiguring WireGuard; the ping resumes", async () => {
    // In user space, so that the kill stops the traffic at once (the kernel fast path carries on for a
    // few seconds until the dead owner's heartbeat is stale: test/e2e/kernel-cleanup.test.ts).
    const first = await tunnelbore(["--ebpf", "off"]);
    await waitFor(async () => (await wgA.endpointOf(keyB.publicKey)) === loopbackOfB(), {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await pair.waitForPing();
    const pid = first.process.child.pid ?? -1;
    // Its unprivileged worker runs it (privilege separation), or Tunnelbore itself (one process).
    const owners = [
      pid,
      ...childrenOf(pid)
        .filter((p) => p.comm === "node")
        .map((p) => p.pid),
    ];
    const monitors = owners.flatMap((owner) => childrenOf(owner)).filter((p) => p.comm === "ip");
    expect(monitors, "tunnelbore runs one `ip monitor`").toHaveLength(1);
    await first.stop("SIGKILL");
    running.length = 0;
    expect(await pingOnce()).toBe(false);
    // The kernel ends it with its parent (setpriv --pdeathsig): no orphan waits for its next write,
    // which in this quiet namespace would be never.
    await waitFor(async () => monitors.every((m) => !isRunning(m.pid)), {
      what: "ip monitor ends with tunnelbore",
      timeoutMs: 5000,
    });
    const second = await tunnelbore();
    // How long the restart takes is measured in bench/staying-connected.ts (restart gap).
    await waitFor(pingOnce, { what: "ping resumes", intervalMs: 20 });
    // WireGuard kept L(P) (it was there before the kill): the new process found it there and had no
    // reason to call `wg set` (it does only when WireGuard's endpoint is not L(P)).
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(loopbackOfB());
    const peer = (await second.status()).peers.find((p) => p.publicKey === keyB.publicKey);
    expect(peer).toMatchObject({ pathKind: "static", remote: `${LINK_B}:51820` });
  });

  it("follows a hostname to its new address without waiting for WireGuard's next handshake", async () => {
    // Fresh sessions on both sides, as on a first contact (an older session's timers would decide
    // when WireGuard next shakes hands).
    for (const [wg, peerKey, allowed] of [
      [wgA, keyB.publicKey, "10.99.0.2/32"],
      [wgB, pair.keyA.publicKey, "10.99.0.1/32"],
    ] as const) {
      await nsRun(wg.ns, "wg", ["set", wg.name, "peer", peerKey, "remove"]);
      await wg.setPeer({ publicKey: peerKey, allowedIps: allowed });
    }
    mkdirSync(`/etc/netns/${nsA}`, { recursive: true });
    const hosts = `/etc/netns/${nsA}/hosts`;
    // Written in place (same inode): `ip netns exec` bind-mounts this file over /etc/hosts.
    writeFileSync(hosts, `127.0.0.1 localhost\n${LINK_B} peer-b.tbt.test\n`);
    await tunnelbore(["--endpoint", `${keyB.publicKey}=peer-b.tbt.test:51820`]);
    await waitFor(pingOnce, { what: "ping via the hostname", timeoutMs: 10_000, intervalMs: 100 });
    const handshake = await wgA.latestHandshakeOf(keyB.publicKey);
    expect(handshake).toBeGreaterThan(0);

    // B moves to a new address and the old one becomes unreachable from A. (B keeps the old address
    // itself: wireguard-go cannot answer at all after its sticky source address is deleted, with or
    // without Tunnelbore.)
    // B drops what still arrives at the old address (a route on A would not do: the kernel fast path
    // sends to the neighbour it resolved, and a blackhole route does not stop it).
    await nsRun(nsB, "ip", ["addr", "add", `${LINK_B2}/24`, "dev", "eth0"]);
    await nsRun(nsB, "nft", [
      `add table ip tbt_move; add chain ip tbt_move pre { type filter hook prerouting priority -300; }; add rule ip tbt_move pre ip daddr ${LINK_B} udp dport 51820 drop`,
    ]);
    writeFileSync(hosts, `127.0.0.1 localhost\n${LINK_B2} peer-b.tbt.test\n`);
    // WireGuard starts a new handshake when its data goes unanswered (about 15 s): keep traffic flowing.
    const tb = running[0]!;
    // Tunnelbore re-resolves as soon as B falls silent while A keeps sending (or at WireGuard's next
    // handshake, whichever comes first).
    await waitFor(pingOnce, { what: "ping after the move", timeoutMs: 40_000, intervalMs: 200 });
    // Not WireGuard's new handshake brought the ping back: the session of before the move carries it.
    expect(await wgA.latestHandshakeOf(keyB.publicKey)).toBe(handshake);
    const peer = (await tb.status()).peers.find((p) => p.publicKey === keyB.publicKey);
    expect(peer?.remote).toBe(`${LINK_B2}:51820`);
    await nsRun(nsB, "nft", ["delete table ip tbt_move"]);
    await nsRun(nsB, "ip", ["addr", "del", `${LINK_B2}/24`, "dev", "eth0"]);
  }, 90_000);
});
