// Introduction servers as a cluster (issue 15), end to end: a redis-server and two clustered
// intro-server nodes on the lab's public segment; two real `run`s behind NATs, each first on a
// different node (`--intro` twice, in opposite orders), connect and ping through WireGuard. Then the
// node of one is SIGKILLed: it moves to the survivor, and the other roams to another network; the
// path heals through the surviving node, the only one left to carry the signalling. Last, a rolling
// restart of both nodes with SIGTERM while a pings b: the runs move and come back, no ping lost.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SpawnedProcess } from "../lab/netns.js";
import { spawnInNamespace, teardownAll } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import { ProductLab, startIntroServer } from "../lab/tunnelbore-lab.js";
import { waitFor } from "../support/wait-for.js";

const REDIS_PORT = 6390;
const SECOND_INTRO_PORT = 8444;
const SECOND_STUN_PORT = 3490;

let lab: ProductLab;
let redis: SpawnedProcess;
let second: SpawnedProcess;
let firstUrl: string;
let secondUrl: string;
let secondArgs: string[];

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
  redis = spawnInNamespace(server.ns, "redis-server", [
    "--port",
    String(REDIS_PORT),
    "--bind",
    server.address,
    "--save",
    "",
    "--appendonly",
    "no",
    // Its only clients are the nodes in this namespace; protected mode would refuse them (no password).
    "--protected-mode",
    "no",
  ]);
  const cluster = `redis://${server.address}:${REDIS_PORT}`;
  // The lab's own server becomes the first node: the same arguments, clustered.
  const labArgs = (lab as unknown as { introArgs: string[] }).introArgs;
  await lab.stopIntroServer("SIGTERM");
  Object.assign(lab, { introArgs: [...labArgs, "--cluster", cluster] });
  await waitFor(
    async () => {
      await lab.restartIntroServer(); // throws while redis is not listening yet
      return true;
    },
    { what: "the first node joined the cluster", timeoutMs: 15_000, intervalMs: 200 },
  );
  secondArgs = labArgs.map((arg) =>
    arg.endsWith(":8443")
      ? `${server.address}:${SECOND_INTRO_PORT}`
      : arg === "3478"
        ? String(SECOND_STUN_PORT)
        : arg,
  );
  secondArgs.push("--cluster", cluster);
  second = await startIntroServer(server.ns, secondArgs);
  firstUrl = lab.introUrl;
  secondUrl = `ws://${server.address}:${SECOND_INTRO_PORT}`;
  // a: --intro first --intro second; b: --intro second --intro first (the lab puts its URL first).
  lab.host("a").flags.push("--intro", secondUrl);
  await lab.startTunnelbore("a");
  Object.assign(lab, { introUrl: secondUrl });
  lab.host("b").flags.push("--intro", firstUrl);
  await lab.startTunnelbore("b");
  Object.assign(lab, { introUrl: firstUrl });
}, 120_000);

afterAll(async () => {
  await second?.stop("SIGKILL");
  await lab?.teardown();
  await redis?.stop("SIGKILL");
  await teardownAll();
});

async function introOf(host: string) {
  const intro = (await lab.status(host)).intro;
  if (!intro) throw new Error(`${host} has no introduction server`);
  return intro;
}

describe("two runs on different nodes of a cluster", () => {
  it("meet through the cluster and ping through their NATs", async () => {
    expect((await introOf("a")).url).toBe(firstUrl);
    expect((await introOf("b")).url).toBe(secondUrl);
    await lab.waitForPing("a", "b", 60_000);
    expect(await lab.ping("b", "a")).toBe(true);
    // Usually direct at once; under load now and then relay first, then direct (waitForDirectPath).
    const direct = await lab.waitForDirectPath("a", "b", "through the cluster");
    expect(direct.pathKind).toBe("direct");
  }, 90_000);

  it("a node SIGKILLed: its run moves to the survivor, and a roam heals through it", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 3, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    await second.stop("SIGKILL");
    await waitFor(
      async () => {
        const intro = await introOf("b");
        return intro.url === firstUrl && intro.state === "connected";
      },
      { what: "b connected to the surviving node", timeoutMs: 15_000, intervalMs: 100 },
    );
    // The path never depended on the server.
    const since = Date.now();
    await waitFor(() => ping.receivedSince(since) >= 3, { what: "pings after the kill", intervalMs: 50 });

    const roamedAt = Date.now();
    await lab.lab.moveHost("a", "cafe");
    await waitFor(() => ping.receivedSince(roamedAt) >= 3, {
      what: "pings answered after the roam",
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    await ping.stop();
    const ab = await lab.peerStatus("a", "b");
    expect(ab.pathKind).not.toBeNull();
    expect((await introOf("a")).url).toBe(firstUrl);
    expect((await introOf("b")).url).toBe(firstUrl);
    console.log(`healed after the roam over a ${ab.pathKind} path; ${ping.lostCount} pings lost in all`);
  }, 90_000);

  it("a rolling restart of both nodes (SIGTERM): the runs move and come back, no ping lost", async () => {
    second = await startIntroServer(lab.lab.server.ns, secondArgs); // SIGKILLed in the test before
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress);
    await waitFor(() => ping.receivedCount >= 3, {
      what: "pings flowing",
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    const bothOn = (url: string) =>
      waitFor(
        async () => {
          for (const host of ["a", "b"]) {
            const intro = await introOf(host);
            if (intro.url !== url || intro.state !== "connected") return false;
          }
          return true;
        },
        { what: `both runs connected to ${url}`, timeoutMs: 15_000, intervalMs: 100 },
      );
    await lab.stopIntroServer("SIGTERM");
    await bothOn(secondUrl);
    await lab.restartIntroServer();
    await second.stop("SIGTERM");
    await bothOn(firstUrl);
    second = await startIntroServer(lab.lab.server.ns, secondArgs);
    const since = Date.now();
    await waitFor(() => ping.receivedSince(since) >= 5, { what: "pings after the restarts", intervalMs: 50 });
    await ping.stop();
    expect(ping.lostCount).toBe(0);
    console.log(`rolling restart of both nodes: ${ping.receivedCount} pings, none lost`);
  }, 90_000);
});
