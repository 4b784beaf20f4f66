// The cluster's Redis failed over by Sentinel (--cluster redis+sentinel://): one master, one replica and
// three Sentinels of the test's own, two intro-server node processes. The master is SIGKILLed; a replica
// is promoted, both nodes find it through the Sentinels, their scripts run there, and clients on
// different nodes exchange envelopes again within a bound, each believing the other online.
import { createHash } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  CLAIM,
  DECLARE,
  LEAVE,
  ONLINE_OF,
  PRUNE,
  REAP,
  RESTORE,
  ROUTE,
} from "../../intro-server/cluster/redis-scripts.js";
import { SentinelCluster, timeFailover, untilEnvelopesFlow } from "./intro-cluster-sentinel-support.js";
import { envelopeOf, until } from "./intro-cluster-support.js";
import { newKey, sleep } from "./intro-support.js";

const cluster = new SentinelCluster();
afterEach(() => cluster.stop());

const SCRIPT_SHAS = [CLAIM, DECLARE, LEAVE, ONLINE_OF, PRUNE, REAP, RESTORE, ROUTE].map((source) =>
  createHash("sha1").update(source).digest("hex"),
);

describe("intro-server --cluster redis+sentinel://", () => {
  it("carries on through a failover: master SIGKILLed, replica promoted, clients meet again", async () => {
    const pair = await cluster.pairOnTwoNodes();
    const { engine: redis, one, two, alice, bob, aliceRaw, aliceHeard, bobHeard } = pair;
    await timeFailover(pair, "failover", "the master's SIGKILL", () => redis.master.kill("SIGKILL"));

    // The replica is the master now, by the Sentinels' word and its own; the nodes are subscribed
    // there and loaded their scripts there (a replica does not get SCRIPT LOAD).
    await expect.poll(() => redis.masterPort(), { timeout: 6_000 }).toBe(redis.replica.port);
    const promoted = await redis.dataClient(redis.replica.port);
    try {
      expect(((await promoted.call("ROLE")) as unknown[])[0]).toBe("master");
      const channels = (await promoted.smembers("tb:nodes")).map((id) => `tb:n:${id}`);
      const subscribed = (await promoted.call("PUBSUB", "NUMSUB", ...channels)) as unknown[];
      expect(subscribed.filter((_, i) => i % 2 === 1)).toEqual([1, 1]);
      expect(await promoted.call("SCRIPT", "EXISTS", ...SCRIPT_SHAS)).toEqual(SCRIPT_SHAS.map(() => 1));
    } finally {
      promoted.disconnect();
    }

    // Neither client is left believing the other offline: not now, nor once every heartbeat and reap
    // that the failover left pending has run (default 3 s TTL, 1 s sweep).
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 5_000 }).toBe(true);
    await expect.poll(() => bobHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);
    await sleep(5_000);
    expect(aliceHeard.presenceOf(bob.publicKey)).toBe(true);
    expect(bobHeard.presenceOf(alice.publicKey)).toBe(true);
    console.log(
      `failover: presence messages in all: alice ${aliceHeard.presenceCount(bob.publicKey)}, ` +
        `bob ${bobHeard.presenceCount(alice.publicKey)} (1: none but the first)`,
    );

    // A login after the failover meets a client from before it, across nodes.
    const carol = newKey();
    aliceRaw.send({ type: "peers", op: "replace", peers: [bob.publicKey, carol.publicKey] });
    const [, carolHeard] = await cluster.client(two, carol, [alice]);
    await expect.poll(() => carolHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);
    aliceRaw.send({ type: "send", to: carol.publicKey, envelope: envelopeOf(5_000) });
    await expect.poll(() => carolHeard.envelopeAt(5_000), { timeout: 5_000 }).toBeDefined();

    // Both node processes carried on, and neither logged the password.
    for (const spawned of [one, two]) {
      expect(spawned.process.exitCode).toBeNull();
      expect(spawned.stderr.join("")).not.toContain(redis.password);
    }
  });

  it("leaves a master that went dark (SIGSTOP: no RST closes its connections) when Sentinel switches", async () => {
    const pair = await cluster.pairOnTwoNodes();
    const { engine: redis, alice, bob, aliceHeard, bobHeard } = pair;
    // Ended by SIGKILL with the rest.
    await timeFailover(pair, "failover from a dark master", "its SIGSTOP", () =>
      process.kill(redis.master.process.pid!, "SIGSTOP"),
    );
    await expect.poll(() => redis.masterPort(), { timeout: 6_000 }).toBe(redis.replica.port);
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 5_000 }).toBe(true);
    await expect.poll(() => bobHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);
  });

  it("writes again what the promoted replica never got: a login, declarations, a departure", async () => {
    const { engine: redis, one, two, bob, bobRaw, aliceHeard } = await cluster.pairOnTwoNodes();
    // Replication cut: the master refuses the replica's password from now on and drops its link, so
    // what follows is written on the master alone, as async replication loses a master's last writes.
    const master = await redis.dataClient(redis.master.port);
    await master.call("CONFIG", "SET", "requirepass", `${redis.password}-changed`);
    await master.call("CLIENT", "KILL", "TYPE", "replica");
    master.disconnect();
    await until(async () => {
      const replica = await redis.dataClient(redis.replica.port);
      try {
        return (await replica.info("replication")).includes("master_link_status:down");
      } finally {
        replica.disconnect();
      }
    });
    // Carol (node one) and Dave (node two) log in and declare each other; Bob leaves.
    const carol = newKey();
    const dave = newKey();
    const [carolRaw, carolHeard] = await cluster.client(one, carol, [dave]);
    const [daveRaw, daveHeard] = await cluster.client(two, dave, [carol]);
    await expect.poll(() => carolHeard.presenceOf(dave.publicKey), { timeout: 5_000 }).toBe(true);
    await expect.poll(() => daveHeard.presenceOf(carol.publicKey), { timeout: 5_000 }).toBe(true);
    bobRaw.close();
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 5_000 }).toBe(false);
    const replica = await redis.dataClient(redis.replica.port);
    try {
      expect(await replica.get(`tb:at:${carol.publicKey}`)).toBeNull();
      expect(await replica.get(`tb:at:${dave.publicKey}`)).toBeNull();
      expect(await replica.get(`tb:at:${bob.publicKey}`)).not.toBeNull();
    } finally {
      replica.disconnect();
    }

    const killedAt = performance.now();
    await redis.master.kill("SIGKILL");
    const { toBMs: toDaveMs, toAMs: toCarolMs } = await untilEnvelopesFlow(
      [carolRaw, carolHeard, carol],
      [daveRaw, daveHeard, dave],
      killedAt,
      1_000,
    );
    console.log(
      `failover with lost writes: envelopes flow again ${Math.round(toDaveMs)} ms (one -> two) and ` +
        `${Math.round(toCarolMs)} ms (two -> one) after the master's SIGKILL`,
    );
    // Bob's departure is written again too: once every pending heartbeat and reap has run, Alice is
    // not told he is back, and the promoted master has no record of him.
    await sleep(5_000);
    expect(carolHeard.presenceOf(dave.publicKey)).toBe(true);
    expect(daveHeard.presenceOf(carol.publicKey)).toBe(true);
    expect(aliceHeard.presenceOf(bob.publicKey)).toBe(false);
    const promoted = await redis.dataClient(redis.replica.port);
    try {
      expect(await promoted.get(`tb:at:${bob.publicKey}`)).toBeNull();
      expect(await promoted.get(`tb:at:${carol.publicKey}`)).not.toBeNull();
    } finally {
      promoted.disconnect();
    }
  });

  it("runs its scripts on a master that lost them (NOSCRIPT: EVAL, which caches them again)", async () => {
    const { engine: redis, two, alice, bob, aliceRaw, bobHeard } = await cluster.pairOnTwoNodes();
    const master = await redis.dataClient(redis.master.port);
    try {
      await master.call("SCRIPT", "FLUSH");
      await master.call("CONFIG", "RESETSTAT");
      aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(2) });
      await expect.poll(() => bobHeard.envelopeAt(2), { timeout: 5_000 }).toBeDefined();
      // A login: claim, declare, and the presence of a peer on the other node.
      const carol = newKey();
      aliceRaw.send({ type: "peers", op: "replace", peers: [bob.publicKey, carol.publicKey] });
      const [, carolHeard] = await cluster.client(two, carol, [alice]);
      await expect.poll(() => carolHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);
      const stats = await master.info("commandstats");
      expect(stats).toMatch(/cmdstat_eval:calls=[1-9]/);
      expect(await master.call("SCRIPT", "EXISTS", SCRIPT_SHAS[7]!)).toEqual([1]);
    } finally {
      master.disconnect();
    }
  });

  it("asks Sentinels that require a password of their own with sentinel_password, through a failover", async () => {
    const pair = await cluster.pairOnTwoNodes({ sentinelPassword: true });
    const { engine: redis, one, two } = pair;
    const sentinelPassword = redis.sentinelPassword!;
    expect(redis.url).toContain(`?sentinel_password=${sentinelPassword}`);
    // Without it a node stops at start (exit 1), saying what to add and neither password.
    const refused = await cluster.node(redis.url.slice(0, redis.url.indexOf("?"))).then(
      () => "started",
      (error: Error) => error.message,
    );
    expect(refused).toMatch(/exited with 1: .*NOAUTH.*add \?sentinel_password=PASSWORD/s);
    expect(refused).not.toContain(sentinelPassword);
    expect(refused).not.toContain(redis.password);
    // The nodes found the master through the Sentinels (pairOnTwoNodes checked envelopes flow); a
    // failover makes them ask the Sentinels again, with the password.
    await timeFailover(pair, "failover, Sentinels with a password", "the master's SIGKILL", () =>
      redis.master.kill("SIGKILL"),
    );
    await expect.poll(() => redis.masterPort(), { timeout: 6_000 }).toBe(redis.replica.port);
    for (const spawned of [one, two]) {
      expect(spawned.process.exitCode).toBeNull();
      expect(spawned.stderr.join("")).not.toContain(sentinelPassword);
      expect(spawned.stderr.join("")).not.toContain(redis.password);
    }
  });
});
