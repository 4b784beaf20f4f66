// Clients fail over between introduction servers (issue 15), end to end: two intro servers (not
// clustered) on the lab's public segment, two real `run --intro A --intro B` behind NATs, pinging
// through WireGuard. Server A stopped with SIGTERM (it closes its clients with 4011): both runs move to
// B, the ping never stops (the ICE path is not touched by a server change), and a roam afterwards heals
// through B, the only server left for the signalling the new path needs.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStatus } from "../../src/commands/status.js";
import type { SpawnedProcess } from "../lab/netns.js";
import { teardownAll } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import { CLI } from "../lab/tunnelbore.js";
import { ProductLab, startIntroServer } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

const SECOND_INTRO_PORT = 8444;
const SECOND_STUN_PORT = 3490;

let lab: ProductLab;
let second: SpawnedProcess;
let secondUrl: string;

beforeAll(async () => {
  lab = await ProductLab.create({
    hosts: [
      { name: "a", nat: "eim" },
      { name: "b", nat: "eim" },
    ],
    routers: [{ name: "cafe", nat: "eim" }],
    startTunnelbores: false,
  });
  const server = lab.lab.server;
  second = await startIntroServer(server.ns, [
    CLI,
    "intro-server",
    "--listen",
    `${server.address}:${SECOND_INTRO_PORT}`,
    "--stun-port",
    String(SECOND_STUN_PORT),
  ]);
  secondUrl = `ws://${server.address}:${SECOND_INTRO_PORT}`;
  // `run --intro A --intro B`: the lab gives A first.
  for (const host of ["a", "b"]) {
    lab.host(host).flags.push("--intro", secondUrl);
    await lab.startTunnelbore(host);
  }
  await lab.waitForPing("a", "b", 60_000);
}, 120_000);

afterAll(async () => {
  await second?.stop("SIGTERM");
  await lab?.teardown();
  await teardownAll();
});

async function introOf(host: string) {
  const intro = (await lab.status(host)).intro;
  if (!intro) throw new Error(`${host} has no introduction server`);
  return intro;
}

/** ICE restarts of `on`'s peer `peer`, upgrade attempts left out (they run on a timer of their own). */
async function restartsOf(on: string, peer: string): Promise<number> {
  const { iceRestarts } = await lab.peerStatus(on, peer);
  return Object.entries(iceRestarts)
    .filter(([why]) => why !== "upgrade")
    .reduce((sum, [, count]) => sum + count, 0);
}

describe("two runs given two introduction servers", () => {
  it("both start at the first; status lists both", async () => {
    for (const host of ["a", "b"]) {
      const intro = await introOf(host);
      expect(intro).toMatchObject({ url: lab.introUrl, state: "connected" });
      expect(intro.servers).toEqual([lab.introUrl, secondUrl]);
    }
  });

  it("the first stopped with SIGTERM: both move to the second, the ping never stops, a roam heals through it", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 5, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const pathBefore = await lab.peerStatus("a", "b");
    const restartsBefore = [await restartsOf("a", "b"), await restartsOf("b", "a")];
    const stoppedAt = Date.now();
    await lab.stopIntroServer("SIGTERM");
    for (const host of ["a", "b"]) {
      await waitFor(
        async () => {
          const intro = await introOf(host);
          return intro.url === secondUrl && intro.state === "connected";
        },
        { what: `${host} connected to the second server`, timeoutMs: 10_000, intervalMs: 50 },
      );
    }
    const movedMs = Date.now() - stoppedAt;
    // status names the server in use and the list.
    const text = formatStatus(await lab.status("a"));
    expect(text).toContain(`introduction server ${secondUrl}: connected for `);
    expect(text).toContain(`; servers: ${lab.introUrl}, ${secondUrl}`);
    const since = Date.now();
    await waitFor(() => ping.receivedSince(since) >= 10, { what: "pings after the move", intervalMs: 50 });
    const pathAfter = await lab.peerStatus("a", "b");
    expect(ping.lostCount).toBe(0);
    // The same path: not restarted by the move.
    expect(pathAfter.pathKind).toBe(pathBefore.pathKind);
    expect(pathAfter.remote).toBe(pathBefore.remote);
    // No ICE restart on either side (an upgrade attempt, on its own timer, aside).
    expect([await restartsOf("a", "b"), await restartsOf("b", "a")]).toEqual(restartsBefore);
    console.log(`moved to the second server in ${movedMs} ms; ${ping.receivedCount} pings, none lost`);

    // A roam needs signalling for the new path: only the second server is left to carry it.
    const movedHostAt = Date.now();
    await lab.lab.moveHost("a", "cafe");
    await waitFor(() => ping.receivedSince(movedHostAt) >= 3, {
      what: "pings answered after the roam",
      timeoutMs: 20_000,
      intervalMs: 50,
    });
    await ping.stop();
    // Healed by an ICE restart that a signalled through the second server (the first is gone).
    const ab = await lab.peerStatus("a", "b");
    expect(ab.iceRestarts["network-changed"]).toBeGreaterThanOrEqual(1);
    expect(ab.pathKind).not.toBeNull();
    expect((await introOf("a")).url).toBe(secondUrl);
    console.log(`roamed after the move: ${ab.pathKind} path, ${ping.lostCount} pings lost during the roam`);
  }, 90_000);
});
