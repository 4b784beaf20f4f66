// Tunnelbore between real wireguard-go peers over a static path: two namespaces on one link,
// Tunnelbore on side A with B's real endpoint (an address, then a hostname).
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun, teardownAll, waitFor } from "../lab/netns.js";
import { childrenOf, isRunning } from "../lab/process-tree.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import type { WireGuardInterface } from "../lab/wireguard.js";

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
const timeUntilPing = (timeoutMs: number) => pair.timeUntilPing(timeoutMs);

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
    await waitFor("endpoint at L(P)", async () => (await wgA.endpointOf(keyB.publicKey)) === loopbackOfB());
    expect(await timeUntilPing(10_000)).toBeLessThan(10_000);
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
    await waitFor(
      "the new peer pointed at its L(P)",
      async () => (await wgA.endpointOf(extra.publicKey)) === extraLoopback,
    );
    const added = (await tb.status()).peers.find((p) => p.publicKey === extra.publicKey);
    expect(added).toMatchObject({ pathKind: "static", remote: "192.0.2.9:51820", loopback: extraLoopback });
    await nsRun(nsA, "wg", ["set", wgA.name, "peer", extra.publicKey, "remove"]);
    await waitFor("the removed peer gone", async () =>
      (await tb.status()).peers.every((p) => p.publicKey !== extra.publicKey),
    );
    // The first peer was not disturbed.
    expect(await pingOnce()).toBe(true);
  });

  it("survives SIGKILL and a restart without reconfiguring WireGuard; the ping resumes within 2 s", async () => {
    const first = await tunnelbore();
    await waitFor("endpoint at L(P)", async () => (await wgA.endpointOf(keyB.publicKey)) === loopbackOfB());
    await timeUntilPing(10_000);
    const pid = first.process.child.pid ?? -1;
    const monitors = childrenOf(pid).filter((p) => p.comm === "ip");
    expect(monitors, "tunnelbore runs one `ip monitor`").toHaveLength(1);
    await first.stop("SIGKILL");
    running.length = 0;
    expect(await pingOnce()).toBe(false);
    // The kernel ends it with its parent (setpriv --pdeathsig): no orphan waits for its next write.
    await waitFor(
      "ip monitor ends with tunnelbore",
      async () => monitors.every((m) => !isRunning(m.pid)),
      2000,
    );
    const restartedAt = Date.now();
    const second = await tunnelbore();
    await waitFor("ping resumes", pingOnce, 5000, 20);
    const gap = Date.now() - restartedAt;
    expect(gap).toBeLessThan(2000);
    // WireGuard kept L(P): the new process found it there and did not call `wg set`.
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(loopbackOfB());
    expect(second.logs().some((l) => l.msg === "pointed WireGuard endpoint at loopback")).toBe(false);
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
    await waitFor("ping via the hostname", pingOnce, 10_000, 100);

    // B moves to a new address and the old one becomes unreachable from A. (B keeps the old address
    // itself: wireguard-go cannot answer at all after its sticky source address is deleted, with or
    // without Tunnelbore.)
    await nsRun(nsB, "ip", ["addr", "add", `${LINK_B2}/24`, "dev", "eth0"]);
    await nsRun(nsA, "ip", ["route", "add", "blackhole", `${LINK_B}/32`]);
    writeFileSync(hosts, `127.0.0.1 localhost\n${LINK_B2} peer-b.tbt.test\n`);
    // WireGuard starts a new handshake when its data goes unanswered (about 15 s): keep traffic flowing.
    const tb = running[0]!;
    // Tunnelbore re-resolves as soon as B falls silent while A keeps sending (or at WireGuard's next
    // handshake, whichever comes first).
    const movedAt = Date.now();
    await waitFor("ping after the move", pingOnce, 40_000, 200);
    expect(Date.now() - movedAt).toBeLessThan(15_000);
    const peer = (await tb.status()).peers.find((p) => p.publicKey === keyB.publicKey);
    expect(peer?.remote).toBe(`${LINK_B2}:51820`);
    await nsRun(nsA, "ip", ["route", "del", "blackhole", `${LINK_B}/32`]);
    await nsRun(nsB, "ip", ["addr", "del", `${LINK_B2}/24`, "dev", "eth0"]);
  }, 90_000);
});
