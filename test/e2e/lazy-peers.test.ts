// Lazy peers (issue 15): with real wireguard-go behind NATs (a direct path, and a relayed one), a
// peer idle for `--idle-timeout` releases its ICE session and sockets (status: dormant, L(P) kept),
// and WireGuard's first packet afterwards connects it again and is answered; restarted while
// WireGuard's session lives, the peer is connected at once. npm run build first (the lab runs dist/).
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cleanupStale, labSupported } from "../lab/lab-housekeeping.js";
import { teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { udpSocketsOf } from "../lab/udp-sockets.js";
import { waitFor } from "../support/wait-for.js";

const supported = await labSupported();
const IDLE = ["--idle-timeout", "3s"];

// Behind endpoint-independent NATs the path is direct; behind symmetric ones it is relayed (TURN), where
// waking also takes an allocation.
describe.skipIf(!supported).each([
  { nat: "eim", path: "direct" },
  { nat: "symmetric", path: "relay" },
] as const)("lazy peers with real wireguard-go, $nat NATs ($path path)", ({ nat, path }) => {
  let lab: ProductLab;

  const releases = (on: string) =>
    (lab.host(on).tunnelbore?.logs() ?? []).filter((l) =>
      String(l.msg).startsWith("idle: ice session released"),
    ).length;
  const stateOf = async (on: string, peer: string) => (await lab.peerStatus(on, peer)).state;
  const sockets = (on: string) => {
    const h = lab.host(on);
    const pid = h.tunnelbore?.process.child.pid;
    if (pid === undefined) throw new Error(`no tunnelbore on ${on}`);
    return udpSocketsOf(h.ns, pid);
  };

  beforeAll(async () => {
    await cleanupStale();
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat, flags: IDLE },
        { name: "b", nat, flags: IDLE },
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    await teardownAll();
  });

  it("an idle peer goes dormant with its ICE sockets closed; the first ping after wakes it and is answered", async () => {
    await lab.waitForPing("a", "b");
    // Under load one host may start seconds after the other: a peer not yet online for the idle timeout
    // rests before any traffic, as it should. What counts is what happens from the first ping on.
    const releasedBefore = releases("a");
    // Traffic for twice the idle timeout, carried by the kernel fast path where it loads: its counters
    // are traffic too, so the peer stays connected and no ping is lost.
    const busy = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 30, interval: 200 });
    expect(busy.received).toBe(30);
    const carried = await lab.peerStatus("a", "b");
    expect(carried.state).toBe(`connected(${path})`);
    if ((await lab.status("a")).forwarding.mode === "kernel") expect(carried.kernelFastPath).toBe(true);
    expect(releases("a") - releasedBefore).toBe(0); // not even for a moment (a held ping would hide it)
    const lastTraffic = Date.now();
    expect(await stateOf("a", "b")).toMatch(/^connected\(/);
    const connectedSockets = await sockets("a");

    await waitFor(
      async () => (await stateOf("a", "b")) === "dormant" && (await stateOf("b", "a")) === "dormant",
      {
        what: "both peers dormant",
        timeoutMs: 15_000,
        intervalMs: 200,
      },
    );
    const dormant = await lab.peerStatus("a", "b");
    expect(releases("a") - releasedBefore).toBe(1);
    expect(dormant).toMatchObject({ state: "dormant", pathKind: null });
    const dormantSockets = await sockets("a");
    // The ICE sockets are gone; what stays is loopback (the catch-all and L(P), which WireGuard's
    // endpoint names) and what is not per peer.
    expect(dormantSockets.length).toBeLessThan(connectedSockets.length);
    const released = connectedSockets.filter((s) => !dormantSockets.includes(s));
    expect(released.some((s) => !s.startsWith("127."))).toBe(true);
    expect(dormantSockets).toContain(`${dormant.loopback}`);

    // WireGuard's keepalive 10 s after the last data it received wakes nobody: dropped, not held.
    const noPathDrops = async () =>
      (await lab.status("a")).drops["no-path"] + (await lab.status("b")).drops["no-path"];
    const dropsBefore = await noPathDrops();
    await sleep(Math.max(0, lastTraffic + 12_000 - Date.now()));
    expect(await noPathDrops()).toBeGreaterThan(dropsBefore);
    expect([await stateOf("a", "b"), await stateOf("b", "a")]).toEqual(["dormant", "dormant"]);
    expect(await sockets("a")).toHaveLength(dormantSockets.length);

    // The first packet wakes both sides and is answered (WireGuard's session still runs: it is data).
    const started = Date.now();
    const first = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 1, timeout: 2000 });
    expect(first.output).toMatch(/icmp_seq=1 /);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(await stateOf("a", "b")).toMatch(/^connected\(/);
    expect(await stateOf("b", "a")).toMatch(/^connected\(/);
    expect((await sockets("a")).length).toBeGreaterThan(dormantSockets.length);
  }, 60_000);

  it("restarted while WireGuard's session with the peer lives, Tunnelbore connects it proactively", async () => {
    // The handshake of the test before is over the 3 s idle timeout old but WireGuard's session (180 s)
    // lives: its next packet would be data, so the peer is connected at start, not left dormant (a peer
    // whose session is over too starts dormant: test/unit/peer-dormant.test.ts).
    await lab.stopTunnelbore("a");
    await lab.startTunnelbore("a");
    const path = await lab.waitForPath("a", "b", 15_000);
    expect(path.state).toMatch(/^connected\(/);
    expect(releases("a")).toBe(0);
    const answered = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 1, timeout: 2000 });
    expect(answered.output).toMatch(/icmp_seq=1 /);
  }, 40_000);
});
