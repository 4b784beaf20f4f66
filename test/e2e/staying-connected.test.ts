// Staying connected: two Tunnelbores behind nftables NATs keep WireGuard's traffic flowing through
// roaming, NAT resets, introduction server outages, restarts of Tunnelbore and of wireguard-go, UDP
// firewalls, and a NAT that becomes friendlier. Every case runs a continuous ping through WireGuard and
// asserts that it resumes; the gaps are printed here and measured in bench/staying-connected.ts.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import { ProductLab, WG_PORT } from "../lab/tunnelbore-lab.js";
import { startWireGuard } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

const INTRO_PORT = 8443;
const TURN_PORT = 3479;

/** The time from the last reply at or before `at` to the first one after it (ms), or null. */
function gapAcross(ping: ContinuousPing, at: number): number | null {
  const before = ping.replies.filter((r) => r <= at).at(-1);
  const after = ping.replies.find((r) => r > at);
  return before === undefined || after === undefined ? null : after - before;
}

/** Waits until `ping` got `count` replies after `since`. */
async function resumed(ping: ContinuousPing, since: number, timeoutMs: number, count = 3): Promise<void> {
  await waitFor(() => ping.receivedSince(since) >= count, {
    what: "pings answered again",
    timeoutMs: timeoutMs,
    intervalMs: 50,
  });
}

/** Restarts Tunnelbore on `host` (SIGKILL, as in a crash: WireGuard keeps pointing at L(P)). */
async function restartTunnelbore(lab: ProductLab, host: string): Promise<void> {
  await lab.stopTunnelbore(host, "SIGKILL");
  await lab.startTunnelbore(host);
}

afterAll(async () => {
  await teardownAll();
});

/** TBT_DUMP_LOGS=DIR keeps each Tunnelbore's log for debugging. */
function dumpLogs(lab: ProductLab | undefined, tag: string): void {
  const dir = process.env.TBT_DUMP_LOGS;
  if (!dir || !lab) return;
  for (const host of ["a", "b"]) {
    const tb = lab.host(host).tunnelbore;
    if (tb) writeFileSync(`${dir}/${tag}-${host}.log`, tb.process.output());
  }
}

describe("two hosts behind endpoint-independent NATs", () => {
  let lab: ProductLab;

  beforeAll(async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
      routers: [{ name: "cafe", nat: "eim" }],
    });
    await lab.waitForPing("a", "b");
  }, 90_000);

  afterAll(async () => {
    dumpLogs(lab, "eim");
    await lab?.teardown();
  });

  it("roaming: a host moves to another NAT while pinging; traffic resumes over a new direct path", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 5, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const movedAt = Date.now();
    await lab.lab.moveHost("a", "cafe");
    await resumed(ping, movedAt, 20_000);
    await ping.stop();
    const gap = gapAcross(ping, movedAt);
    console.log(`roaming gap (last reply before the move to the first after): ${gap} ms`);

    // Usually the first pair after the move is direct; now and then (about 1 run in 4 of a fresh-clone
    // CI) the relay pair is validated first and upgraded. Traffic resumed either way (above); the pair
    // must end up direct.
    const ab = await lab.waitForDirectPath("a", "b", "after the move");
    expect(ab.pathKind).toBe("direct");
    // b now reaches a at the new NAT's public address, directly. (That a notices the move itself,
    // rather than b's liveness check, is what keeps the gap short: bench/staying-connected.ts.)
    const ba = await waitFor(
      async () => {
        const status = await lab.peerStatus("b", "a");
        return (status.remote?.startsWith(`${lab.lab.router("cafe").wanAddress}:`) ?? false) && status;
      },
      { what: "b's path to a through the new NAT", timeoutMs: 10_000, intervalMs: 100 },
    );
    expect(ba.pathKind).toBe("direct");
  }, 60_000);

  it("the introduction server going away touches no path; restarted, the clients come back", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing", intervalMs: 50 });
    await lab.stopIntroServer("SIGKILL");
    // Staying down is what is under test: 30 s, past the clients' keepalive timeout and several of
    // their reconnect attempts.
    await new Promise((r) => setTimeout(r, 30_000));
    const downUntil = Date.now();
    // A reply to a request sent after the outage: every request before it is answered or counted lost.
    await waitFor(() => ping.receivedSince(downUntil) >= 1, { what: "a reply after the outage" });
    await ping.stop();
    console.log(`introduction server down 30 s: ${ping.lostCount} pings lost`);
    expect(ping.lostCount).toBe(0);
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("direct");

    // The clients come back. A Tunnelbore restarted now finds its peer only through the peer's
    // introduction client (a new ICE session needs signalling): b's restart proves a's client is back.
    await lab.restartIntroServer();
    await restartTunnelbore(lab, "b");
    await lab.waitForPing("a", "b", 60_000);
    // Another outage, and a's restart proves the same of b's client.
    await lab.stopIntroServer("SIGKILL");
    await lab.restartIntroServer();
    await restartTunnelbore(lab, "a");
    await lab.waitForPing("a", "b", 60_000);
    // A fresh start, as after roaming (above): the pair must end up direct.
    const ab = await lab.waitForDirectPath("a", "b", "after a's restart");
    expect(ab.pathKind).toBe("direct");
  }, 180_000);

  it("Tunnelbore on one side killed and restarted: the same L(P) again, traffic resumes", async () => {
    const loopback = (await lab.peerStatus("b", "a")).loopback;
    const endpointBefore = await lab.host("b").wg.endpointOf(lab.host("a").keys.publicKey);
    expect(endpointBefore).toBe(loopback);
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 3, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const killedAt = Date.now();
    await lab.stopTunnelbore("b", "SIGKILL");
    await lab.startTunnelbore("b");
    await resumed(ping, killedAt, 20_000);
    await ping.stop();
    console.log(`Tunnelbore restart gap: ${gapAcross(ping, killedAt)} ms`);
    expect((await lab.peerStatus("b", "a")).loopback).toBe(loopback);
    // WireGuard was not reconfigured: it still points at the same L(P), which it did before the kill
    // (and Tunnelbore calls `wg set` only when WireGuard's endpoint is not L(P)).
    expect(await lab.host("b").wg.endpointOf(lab.host("a").keys.publicKey)).toBe(endpointBefore);
  }, 60_000);

  it("wireguard-go restarted with the same config: endpoints pointed back at L(P), traffic resumes", async () => {
    const a = lab.host("a");
    const b = lab.host("b");
    const loopback = (await lab.peerStatus("a", "b")).loopback;
    // From b: b's WireGuard keeps its old session, so only a handshake started by a's new one helps.
    const ping = new ContinuousPing(b.ns, a.tunnelAddress);
    await waitFor(() => ping.receivedCount >= 3, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const restartedAt = Date.now();
    await a.wg.stop();
    await startWireGuard(
      a.ns,
      { privateKey: a.keys.privateKey, listenPort: WG_PORT, address: `${a.tunnelAddress}/24` },
      a.wg.name,
    );
    await a.wg.setPeer({ publicKey: b.keys.publicKey, allowedIps: `${b.tunnelAddress}/32` });
    await waitFor(async () => (await a.wg.endpointOf(b.keys.publicKey)) === loopback, {
      what: "a's endpoint for b back at L(P)",
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    await resumed(ping, restartedAt, 20_000);
    await ping.stop();
    console.log(`wireguard-go restart gap: ${gapAcross(ping, restartedAt)} ms`);
    expect(await lab.ping("a", "b")).toBe(true);
  }, 60_000);

  it("UDP blocked except TCP to the TURN server: connected over TURN/TCP", async () => {
    const server = lab.lab.server.address;
    const turnUdp = `${server}:${TURN_PORT}`;
    await lab.lab.blockUdp("a", {
      exceptTcpTo: [`${server}:${INTRO_PORT}`, `${server}:${TURN_PORT}`],
      countUdpTo: [turnUdp],
    });
    try {
      // Existing UDP flows survive a stateful firewall; a fresh start behind it has none.
      await lab.stopTunnelbore("a");
      await lab.startTunnelbore("a");
      await lab.waitForPing("a", "b", 40_000);
      // Relayed, and no UDP leaves a: the relay is TURN over TCP.
      expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
      // a tried TURN over UDP first (the firewall counted and dropped it)...
      const udpTries = await lab.lab.udpSentTo("a", turnUdp);
      expect(udpTries).toBeGreaterThan(0);
      const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
      await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing", intervalMs: 50 });
      const restartedAt = Date.now();
      await lab.stopTunnelbore("b");
      await lab.startTunnelbore("b");
      await resumed(ping, restartedAt, 20_000);
      await ping.stop();
      console.log(
        `Tunnelbore restart behind a UDP-blocking firewall: gap ${gapAcross(ping, restartedAt)} ms`,
      );
      // ...and learnt: a's next ICE generation (b restarted, so a new pair) allocated over TCP at once.
      expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
      expect(await lab.lab.udpSentTo("a", turnUdp)).toBe(udpTries);
    } finally {
      await lab.lab.unblock("a");
    }
  }, 90_000);
});

describe("a relayed pair: symmetric NAT and endpoint-independent NAT", () => {
  let lab: ProductLab;

  beforeAll(async () => {
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "symmetric" },
        { name: "b", nat: "eim" },
      ],
    });
    await lab.waitForPing("a", "b", 40_000);
  }, 90_000);

  afterAll(async () => {
    dumpLogs(lab, "relay");
    await lab?.teardown();
  });

  it("the NAT router forgets its mappings (conntrack flushed): traffic resumes", async () => {
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    // Steady traffic raises no suspicion: both sides stay connected all along.
    const states = new Set<string>();
    await waitFor(
      async () => {
        for (const [on, peer] of [
          ["a", "b"],
          ["b", "a"],
        ] as const)
          states.add((await lab.peerStatus(on, peer)).state);
        return ping.receivedCount >= 10;
      },
      { what: "pings flowing", intervalMs: 50 },
    );
    expect([...states]).toEqual(["connected(relay)"]);
    const flushedAt = Date.now();
    await lab.lab.flushConntrack("a");
    await resumed(ping, flushedAt + 500, 30_000);
    await ping.stop();
    console.log(`conntrack flush gap: ${gapAcross(ping, flushedAt)} ms`);
  }, 60_000);

  it("the symmetric NAT becomes endpoint-independent: the relayed peer upgrades to a direct path", async () => {
    await lab.waitForPing("a", "b");
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    const switchedAt = Date.now();
    await lab.lab.setNat("a", "eim");
    // Attempts back off to at most 30 s; one more then needs a second or two to connect.
    await waitFor(async () => (await lab.peerStatus("a", "b")).pathKind === "direct", {
      what: "a direct path",
      timeoutMs: 45_000,
      intervalMs: 250,
    });
    console.log(`upgraded to a direct path ${Date.now() - switchedAt} ms after the NAT changed`);
    // The other side nominates when the controlling side's nomination reaches it: a moment later.
    await waitFor(async () => (await lab.peerStatus("b", "a")).pathKind === "direct", {
      what: "b on the direct path too",
      timeoutMs: 3000,
      intervalMs: 100,
    });
    // Losses around the switch count only once pings came back over the new path.
    const directAt = Date.now();
    await waitFor(() => ping.receivedSince(directAt) >= 5, { what: "pings over the direct path" });
    await ping.stop();
    expect(ping.lostCount).toBeLessThanOrEqual(2);
  }, 60_000);
});
