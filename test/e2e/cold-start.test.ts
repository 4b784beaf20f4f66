// Cold start (issue 11 item 2): two Tunnelbores start together and WireGuard has traffic at once.
// No handshake message either WireGuard sends may be lost on the way (a lost one costs WireGuard's 5 s
// retry). Real wireguard-go behind nftables NATs, the built CLI (npm run build first); the handshake
// messages between WireGuard and Tunnelbore are counted by nftables on each host's loopback
// (test/lab/wireguard-messages.ts), so a retry shows as a second initiation.
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { forgetAll, forgetPeer, startTogether } from "../lab/cold-start.js";
import { cleanupStale, labSupported } from "../lab/lab-housekeeping.js";
import { teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { ProductLab, WG_PORT } from "../lab/tunnelbore-lab.js";
import { countHandshakes, type HandshakeCounts } from "../lab/wireguard-messages.js";
import { waitFor } from "../support/wait-for.js";

const supported = await labSupported();
// wireguard-go logs its handshake retries only at verbose level (test/lab/wireguard.ts reads this).
process.env.TBT_WG_LOG = "verbose";
const HOSTS = ["a", "b"] as const;
type Host = (typeof HOSTS)[number];

describe.skipIf(!supported)("cold start: both Tunnelbores at once, traffic at once", () => {
  let lab: ProductLab;
  const counts = new Map<Host, () => Promise<HandshakeCounts>>();
  const counted = (host: Host) => counts.get(host)!();
  const other = (host: Host): Host => (host === "a" ? "b" : "a");

  async function noPathDrops(): Promise<number[]> {
    return Promise.all(HOSTS.map(async (h) => (await lab.status(h)).drops["no-path"]));
  }

  beforeAll(async () => {
    await cleanupStale();
    lab = await ProductLab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
      startTunnelbores: false,
    });
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
    await teardownAll();
  });

  // Every case starts cold: no Tunnelbore, WireGuard without session or endpoint, counters at 0.
  beforeEach(async () => {
    for (const h of HOSTS) await lab.stopTunnelbore(h);
    await forgetAll(lab, HOSTS);
    for (const h of HOSTS) counts.set(h, await countHandshakes(lab.host(h).ns, WG_PORT));
  });

  it("both WireGuards have traffic at once: one handshake, no retry", async () => {
    const { ready } = await startTogether(lab, HOSTS);
    const results = await Promise.all(
      HOSTS.map((h) =>
        ping(lab.host(h).ns, lab.host(other(h)).tunnelAddress, { count: 1, interval: 10, timeout: 20_000 }),
      ),
    );
    await ready;
    expect(results.map((r) => r.ok)).toEqual([true, true]);
    // Both held an initiation until their paths came up; had both been delivered, each WireGuard
    // would have answered the other's and dropped the answer to its own, then retried after 5 s.
    for (const h of HOSTS) expect((await counted(h)).initiationsSent).toBe(1);
    const answered = await Promise.all(HOSTS.map(async (h) => (await counted(h)).responsesReceived));
    expect(answered.sort()).toEqual([0, 1]);
    expect(await noPathDrops()).toEqual([0, 0]);
  }, 60_000);

  it("WireGuard tried before Tunnelbore ran: nudged once its endpoint is ours, it does not wait for its retry", async () => {
    // The recommended configuration: the catch-all as the endpoint, so that WireGuard's attempts
    // before Tunnelbore runs are counted for the peer (here they reach nothing yet).
    await forgetPeer(lab, "a", "b", "127.0.0.1:51821");
    const key = lab.host("b").keys.publicKey;
    const wg = lab.host("a").wg;
    const logFrom = wg.process.output().length; // wireguard-go lives on through the other cases
    // One packet and no more: only WireGuard's retransmit timer could start another handshake then.
    expect((await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 1, timeout: 1000 })).ok).toBe(
      false,
    );
    expect(Number((await wg.dump()).find((r) => r[0] === key)?.[6])).toBeGreaterThan(0);
    const { ready } = await startTogether(lab, HOSTS);
    await ready;
    await waitFor(async () => (await wg.latestHandshakeOf(key)) > 0, {
      what: "a's WireGuard completed a handshake with b",
      timeoutMs: 20_000,
    });
    // wireguard-go says so when its retransmit timer fires (it logs at verbose level here).
    expect(wg.process.output().slice(logFrom)).not.toMatch(
      /Handshake did not complete after \d+ seconds, retrying/,
    );
    expect(await noPathDrops()).toEqual([0, 0]);
  }, 60_000);

  // Twice each way: which side's path comes up first varies from run to run, and so did the loss.
  it.each([
    ["a", "b", 1],
    ["b", "a", 1],
    ["a", "b", 2],
    ["b", "a", 2],
  ] as const)(
    "%s pings %s as soon as both point at loopback (round %i): its first initiation is answered",
    async (from, to, _round) => {
      const { ready } = await startTogether(lab, HOSTS);
      const result = await ping(lab.host(from).ns, lab.host(to).tunnelAddress, {
        count: 1,
        interval: 10,
        timeout: 20_000,
      });
      await ready;
      expect(result.ok).toBe(true);
      // One initiation, one response: WireGuard did not have to retry.
      expect(await counted(from)).toMatchObject({ initiationsSent: 1, responsesReceived: 1 });
      expect(await counted(to)).toMatchObject({ initiationsReceived: 1, responsesSent: 1 });
      expect(await noPathDrops()).toEqual([0, 0]);
    },
    60_000,
  );
});
