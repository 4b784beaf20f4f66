// A Sentinel failover slower than the nodes' heartbeat TTL (Sentinel takes the master for down only
// after 4 s, the heartbeats live 3 s): on the promoted replica both nodes' heartbeats have expired and
// neither is subscribed yet, so the first node back may take the other for dead and tell its clients
// their peers went offline. The node taken for dead writes its connections again at its next heartbeat,
// and no client is left believing a peer offline.
import { afterEach, describe, expect, it } from "vitest";
import { SentinelCluster, timeFailover } from "./intro-cluster-sentinel-support.js";
import { sleep } from "./intro-support.js";

const cluster = new SentinelCluster();
afterEach(() => cluster.stop());

describe("intro-server --cluster redis+sentinel://, a failover longer than a heartbeat", () => {
  it("leaves no client believing a peer offline once the nodes have written themselves again", async () => {
    const pair = await cluster.pairOnTwoNodes({ downAfterMs: 4_000 });
    const { engine, alice, bob, aliceHeard, bobHeard } = pair;
    await timeFailover(pair, "slow failover", "the master's SIGKILL", () => engine.master.kill("SIGKILL"));
    // Every reap the expired heartbeats allow, and every node's rewrite after it, within a few sweeps.
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 8_000 }).toBe(true);
    await expect.poll(() => bobHeard.presenceOf(alice.publicKey), { timeout: 8_000 }).toBe(true);
    await sleep(5_000);
    expect(aliceHeard.presenceOf(bob.publicKey)).toBe(true);
    expect(bobHeard.presenceOf(alice.publicKey)).toBe(true);
    console.log(
      `slow failover: presence messages in all: alice ${aliceHeard.presenceCount(bob.publicKey)}, ` +
        `bob ${bobHeard.presenceCount(alice.publicKey)} (1: none but the first)`,
    );
  });
});
