// Staying connected: two Tunnelbores behind nftables NATs keep WireGuard's traffic flowing through
// roaming, NAT resets, introduction server outages, restarts of Tunnelbore and of wireguard-go, UDP
// firewalls, and a NAT that becomes friendlier. Every case runs a continuous ping through WireGuard and
// asserts that it resumes; the gaps are printed here and measured in bench/staying-connected.ts.
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { teardownAll, waitFor } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import type { TunnelboreProcess } from "../lab/tunnelbore.js";
import { ProductLab, WG_PORT } from "../lab/tunnelbore-lab.js";
import { startWireGuard } from "../lab/wireguard.js";

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
  await waitFor("pings answered again", () => ping.receivedSince(since) >= count, timeoutMs, 50);
}

function logsOf(tb: TunnelboreProcess | null, msg: string): Array<Record<string, unknown>> {
  return (tb?.logs() ?? []).filter((l) => l.msg === msg);
}

function tunnelbore(lab: ProductLab, host: string): TunnelboreProcess {
  const tb = lab.host(host).tunnelbore;
  if (!tb) throw new Error(`no tunnelbore on ${host}`);
  return tb;
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
    await waitFor("pings flowing", () => ping.receivedCount >= 5, 10_000, 50);
    const movedAt = Date.now();
    await lab.lab.moveHost("a", "cafe");
    await resumed(ping, movedAt, 20_000);
    await ping.stop();
    const gap = gapAcross(ping, movedAt);
    console.log(`roaming gap (last reply before the move to the first after): ${gap} ms`);

    const ab = await lab.waitForPath("a", "b");
    expect(ab.pathKind).toBe("direct");
    // b now reaches a at the new NAT's public address.
    await waitFor(
      "b's path to a through the new NAT",
      async () =>
        (await lab.peerStatus("b", "a")).remote?.startsWith(`${lab.lab.router("cafe").wanAddress}:`) ?? false,
      10_000,
    );
    // a noticed the change itself, and both sides logged the path change with a reason.
    expect(logsOf(tunnelbore(lab, "a"), "local network changed").length).toBeGreaterThan(0);
    for (const host of ["a", "b"]) {
      const change = logsOf(tunnelbore(lab, host), "path changed").at(-1);
      expect(change).toMatchObject({ level: 30, kind: "direct", reason: expect.any(String) });
    }
  }, 60_000);

  it("the introduction server going away touches no path; restarted, the clients come back", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor("pings flowing", () => ping.receivedCount >= 3, 10_000, 50);
    const connectedBefore = ["a", "b"].map(
      (h) => logsOf(tunnelbore(lab, h), "connected to the introduction server").length,
    );
    await lab.stopIntroServer("SIGKILL");
    const killedAt = Date.now();
    await new Promise((r) => setTimeout(r, 30_000));
    const lostWhileDown = ping.lostCount;
    const receivedWhileDown = ping.receivedSince(killedAt);
    await lab.restartIntroServer();
    await waitFor(
      "both clients connected again",
      () =>
        ["a", "b"].every(
          (h, i) =>
            logsOf(tunnelbore(lab, h), "connected to the introduction server").length >
            (connectedBefore[i] ?? 0),
        ),
      20_000,
      100,
    );
    await ping.stop();
    console.log(`introduction server down 30 s: ${receivedWhileDown} replies, ${lostWhileDown} lost`);
    expect(lostWhileDown).toBe(0);
    expect(receivedWhileDown).toBeGreaterThan(100);
    expect(await lab.ping("a", "b")).toBe(true);
  }, 90_000);

  it("Tunnelbore on one side killed and restarted: the same L(P) again, traffic resumes", async () => {
    const loopback = (await lab.peerStatus("b", "a")).loopback;
    const endpointBefore = await lab.host("b").wg.endpointOf(lab.host("a").keys.publicKey);
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor("pings flowing", () => ping.receivedCount >= 3, 10_000, 50);
    const killedAt = Date.now();
    await lab.stopTunnelbore("b", "SIGKILL");
    await lab.startTunnelbore("b");
    await resumed(ping, killedAt, 20_000);
    await ping.stop();
    console.log(`Tunnelbore restart gap: ${gapAcross(ping, killedAt)} ms`);
    expect((await lab.peerStatus("b", "a")).loopback).toBe(loopback);
    // WireGuard was not reconfigured: it still points at the same L(P).
    expect(await lab.host("b").wg.endpointOf(lab.host("a").keys.publicKey)).toBe(endpointBefore);
    expect(logsOf(tunnelbore(lab, "b"), "pointed WireGuard endpoint at loopback")).toEqual([]);
  }, 60_000);

  it("wireguard-go restarted with the same config: endpoints pointed back at L(P), traffic resumes", async () => {
    const a = lab.host("a");
    const b = lab.host("b");
    const loopback = (await lab.peerStatus("a", "b")).loopback;
    // From b: b's WireGuard keeps its old session, so only a handshake started by a's new one helps.
    const ping = new ContinuousPing(b.ns, a.tunnelAddress);
    await waitFor("pings flowing", () => ping.receivedCount >= 3, 10_000, 50);
    const restartedAt = Date.now();
    await a.wg.stop();
    await startWireGuard(
      a.ns,
      { privateKey: a.keys.privateKey, listenPort: WG_PORT, address: `${a.tunnelAddress}/24` },
      a.wg.name,
    );
    await a.wg.setPeer({ publicKey: b.keys.publicKey, allowedIps: `${b.tunnelAddress}/32` });
    await waitFor(
      "a's endpoint for b back at L(P)",
      async () => (await a.wg.endpointOf(b.keys.publicKey)) === loopback,
      10_000,
    );
    await resumed(ping, restartedAt, 20_000);
    await ping.stop();
    console.log(`wireguard-go restart gap: ${gapAcross(ping, restartedAt)} ms`);
    expect(await lab.ping("a", "b")).toBe(true);
  }, 60_000);

  it("UDP blocked except TCP to the TURN server: connected over TURN/TCP", async () => {
    const server = lab.lab.server.address;
    await lab.lab.blockUdp("a", { exceptTcpTo: [`${server}:${INTRO_PORT}`, `${server}:${TURN_PORT}`] });
    try {
      // Existing UDP flows survive a stateful firewall; a fresh start behind it has none.
      await lab.stopTunnelbore("a");
      await lab.startTunnelbore("a");
      await lab.waitForPing("a", "b", 40_000);
      const ab = await lab.peerStatus("a", "b");
      expect(ab.pathKind).toBe("relay");
      const change = logsOf(tunnelbore(lab, "a"), "ice pair nominated").at(-1);
      expect(change?.relayTransport).toBe("tcp");
      // Learnt: the next generation (b restarts) allocates over TCP at once, not after UDP timed out.
      expect(
        logsOf(
          tunnelbore(lab, "a"),
          "TURN over UDP fails, over TCP works: TCP from now on (until the network changes)",
        ),
      ).toHaveLength(1);
      const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
      await waitFor("pings flowing", () => ping.receivedCount >= 3, 10_000, 50);
      const restartedAt = Date.now();
      await lab.stopTunnelbore("b");
      await lab.startTunnelbore("b");
      await resumed(ping, restartedAt, 20_000);
      await ping.stop();
      console.log(
        `Tunnelbore restart behind a UDP-blocking firewall: gap ${gapAcross(ping, restartedAt)} ms`,
      );
      expect(logsOf(tunnelbore(lab, "a"), "ice pair nominated").at(-1)?.relayTransport).toBe("tcp");
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
    await waitFor("pings flowing", () => ping.receivedCount >= 10, 10_000, 50);
    // Steady traffic raises no suspicion.
    for (const host of ["a", "b"])
      expect(logsOf(tunnelbore(lab, host), "path suspect; restarting ice")).toEqual([]);
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
    await waitFor(
      "a direct path",
      async () => (await lab.peerStatus("a", "b")).pathKind === "direct",
      45_000,
      250,
    );
    console.log(`upgraded to a direct path ${Date.now() - switchedAt} ms after the NAT changed`);
    // The other side nominates when the controlling side's nomination reaches it: a moment later.
    await waitFor(
      "b on the direct path too",
      async () => (await lab.peerStatus("b", "a")).pathKind === "direct",
      3000,
      100,
    );
    await new Promise((r) => setTimeout(r, 1000));
    await ping.stop();
    expect(ping.lostCount).toBeLessThanOrEqual(2);
  }, 60_000);
});
