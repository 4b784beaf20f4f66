// Several intro-server nodes sharing presence and envelope routing through a real redis-server started
// by the test: presence and envelopes across nodes, one connection per key, a dead node's clients
// going offline, membership and per-address caps across nodes, and the engine restarted.
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import type { IntroServer } from "../../intro-server/server.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { runCliSource } from "../support/cli-source.js";
import {
  envelopeOf,
  FAST_TIMING,
  freePort,
  login,
  sequenceOf,
  spawnClusterNode,
  startNode,
  startRedis,
  type TestRedis,
} from "./intro-cluster-support.js";
import { newKey, RawIntroConnection, type SpawnedIntroServer } from "./intro-support.js";

let redis: TestRedis | undefined;
const nodes: IntroServer[] = [];
const processes: SpawnedIntroServer[] = [];
const connections: RawIntroConnection[] = [];

afterEach(async () => {
  for (const raw of connections.splice(0)) raw.close();
  for (const spawned of processes.splice(0)) await spawned.stop("SIGKILL");
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await redis?.stop();
  redis = undefined;
});

async function cluster(
  count: number,
  options: Parameters<typeof startNode>[1] = {},
  timing: Parameters<typeof startNode>[2] = FAST_TIMING,
): Promise<IntroServer[]> {
  redis = await startRedis();
  for (let i = 0; i < count; i++) nodes.push(await startNode(redis.url, options, timing));
  return nodes;
}

/** Alice on `one` and Bob on `two`, declaring each other, each told the other is online. */
async function mutualPair(one: { url: string }, two: { url: string }) {
  const alice = newKey();
  const bob = newKey();
  const aliceRaw = await track(login(one.url, alice, [bob]));
  const bobRaw = await track(login(two.url, bob, [alice]));
  await aliceRaw.next("presence");
  await bobRaw.next("presence");
  return { alice, bob, aliceRaw, bobRaw };
}

/** The last presence `raw` was told about `peer` (taken from what it received), if any. */
function lastPresence(raw: RawIntroConnection, peer: string): boolean | undefined {
  const told = raw.received.filter((message) => message.type === "presence" && message.peer === peer);
  const last = told.at(-1);
  return last?.type === "presence" ? last.online : undefined;
}

async function track(raw: Promise<RawIntroConnection>): Promise<RawIntroConnection> {
  const connection = await raw;
  connections.push(connection);
  return connection;
}

describe("intro-server --cluster (redis)", () => {
  it("refuses an engine it does not support (exit 2) and one it cannot reach at start (exit 1)", async () => {
    const listen = ["intro-server", "--listen", "127.0.0.1:0", "--no-stun"];
    const nats = await runCliSource([...listen, "--cluster", "nats://127.0.0.1:4222"]);
    expect(nats.code).toBe(2);
    expect(nats.stderr).toMatch(/--cluster nats:\/\/ is not supported: the cluster runs on Redis/);
    const port = await freePort();
    const unreachable = await runCliSource([...listen, "--cluster", `redis://:secret@127.0.0.1:${port}`]);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr).toMatch(
      new RegExp(`cannot reach the cluster engine at redis://:\\*\\*\\*@127.0.0.1:${port}`),
    );
    expect(unreachable.stderr).not.toMatch(/secret/);
  });

  it("tells peers on different nodes of each other only once both declared, and relays their envelopes", async () => {
    const [one, two] = await cluster(2);
    const alice = newKey();
    const bob = newKey();
    const aliceRaw = await track(login(one!.url, alice, [bob]));
    // Bob has not declared Alice yet: she learns nothing of him.
    const bobRaw = await track(login(two!.url, bob, []));
    bobRaw.send({ type: "ping" });
    await bobRaw.next("pong");
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(0) });
    expect(await aliceRaw.next("undeliverable")).toEqual({ type: "undeliverable", to: bob.publicKey });
    expect(aliceRaw.received.filter((message) => message.type === "presence")).toEqual([]);

    bobRaw.send({ type: "peers", op: "add", peers: [alice.publicKey] });
    expect(await bobRaw.next("presence")).toEqual({ type: "presence", peer: alice.publicKey, online: true });
    expect(await aliceRaw.next("presence")).toEqual({ type: "presence", peer: bob.publicKey, online: true });

    for (let i = 1; i <= 20; i++) aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(i) });
    bobRaw.send({ type: "send", to: alice.publicKey, envelope: envelopeOf(100) });
    const atBob: number[] = [];
    for (let i = 0; i < 20; i++) {
      const message = await bobRaw.next("envelope");
      expect(message.from).toBe(alice.publicKey);
      atBob.push(sequenceOf(message.envelope));
    }
    expect(atBob.sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect(sequenceOf((await aliceRaw.next("envelope")).envelope)).toBe(100);

    // Bob leaves: Alice on the other node sees him go.
    bobRaw.ws.close(CloseCode.normal);
    expect(await aliceRaw.next("presence")).toEqual({ type: "presence", peer: bob.publicKey, online: false });
  });

  it("closes a key's connection on one node with 4010 when the key logs in on another", async () => {
    const [one, two] = await cluster(2);
    const alice = newKey();
    const bob = newKey();
    const bobRaw = await track(login(one!.url, bob, [alice]));
    const first = await track(login(one!.url, alice, [bob]));
    await first.next("presence");
    await bobRaw.next("presence");
    const second = await track(login(two!.url, alice, [bob]));
    const closed = await first.closed;
    expect(closed.code).toBe(CloseCode.replaced);
    expect(await second.next("presence")).toEqual({ type: "presence", peer: bob.publicKey, online: true });
    // As on one node: Bob sees the old connection go and the new one come.
    expect(await bobRaw.next("presence")).toMatchObject({ peer: alice.publicKey, online: false });
    expect(await bobRaw.next("presence")).toMatchObject({ peer: alice.publicKey, online: true });
    bobRaw.send({ type: "send", to: alice.publicKey, envelope: envelopeOf(7) });
    expect(sequenceOf((await second.next("envelope")).envelope)).toBe(7);
    expect(nodes.reduce((sum, node) => sum + node.stats().authenticated, 0)).toBe(2);
  });

  it("takes a SIGKILLed node's clients offline at the other nodes within seconds", async () => {
    redis = await startRedis();
    const survivor = await startNode(redis.url);
    nodes.push(survivor);
    const doomed = await spawnClusterNode(redis.url);
    processes.push(doomed);
    const { alice, bob, aliceRaw } = await mutualPair(survivor, doomed);

    const killedAt = Date.now();
    doomed.process.kill("SIGKILL");
    // The process node's heartbeat lives 3 s and the survivor sweeps every 300 ms.
    expect(await aliceRaw.next("presence", 6_000)).toEqual({
      type: "presence",
      peer: bob.publicKey,
      online: false,
    });
    expect(Date.now() - killedAt).toBeLessThan(6_000);
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(1) });
    await aliceRaw.next("undeliverable");

    // Bob comes back on the survivor: presence again.
    const again = await track(login(survivor.url, bob, [alice]));
    expect(await again.next("presence")).toMatchObject({ peer: alice.publicKey, online: true });
    expect(await aliceRaw.next("presence")).toMatchObject({ peer: bob.publicKey, online: true });
  });

  it("lets a SIGKILLed node's client in on another node at once, though its address is at the cap", async () => {
    redis = await startRedis();
    const survivor = await startNode(redis.url, { limits: { maxAuthenticatedPerAddress: 1 } });
    nodes.push(survivor);
    const doomed = await spawnClusterNode(redis.url, ["--max-conns-per-address", "1"]);
    processes.push(doomed);
    const bob = newKey();
    await track(login(doomed.url, bob, []));
    doomed.process.kill("SIGKILL");
    // The dead node's heartbeat lives 3 s more, and with it its count for 127.0.0.1: Bob's old
    // connection, which this login replaces, must not count against him.
    const movedAt = Date.now();
    await track(login(survivor.url, bob, [])); // welcomed, not closed 4014
    expect(Date.now() - movedAt).toBeLessThan(1_000);
    // Another key from the address is still over the cap.
    const carol = await track(RawIntroConnection.open(survivor.url));
    await carol.authenticate(newKey().privateKey);
    expect((await carol.closed).code).toBe(CloseCode.tooManyConnections);
  });

  it("writes a node's connections again when the others took it for dead (its heartbeat lapsed)", async () => {
    const [one, two] = await cluster(2);
    const { alice, aliceRaw, bobRaw } = await mutualPair(one!, two!);
    // What the others' REAP does to a node whose heartbeat expired (an event loop stalled past 3 s).
    const engine = new Redis(redis!.url);
    try {
      const nodeOne = (await engine.get(`tb:at:${alice.publicKey}`))!;
      await engine
        .multi()
        .srem("tb:nodes", nodeOne)
        .del(`tb:at:${alice.publicKey}`, `tb:d:${alice.publicKey}`, `tb:nk:${nodeOne}`, `tb:cnt:${nodeOne}`)
        .exec();
      // Node one's next heartbeat (every 300 ms here) finds it out of the cluster and writes Alice again.
      const deadline = Date.now() + 3_000;
      while ((await engine.get(`tb:at:${alice.publicKey}`)) !== nodeOne && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 100));
      expect(await engine.get(`tb:at:${alice.publicKey}`)).toBe(nodeOne);
      expect(await engine.sismember("tb:nodes", nodeOne)).toBe(1);
    } finally {
      engine.disconnect();
    }
    bobRaw.send({ type: "send", to: alice.publicKey, envelope: envelopeOf(3) });
    expect(sequenceOf((await aliceRaw.next("envelope")).envelope)).toBe(3);
  });

  it("holds membership (the same --allowed-keys) and per-address caps across nodes", async () => {
    const alice = newKey();
    const bob = newKey();
    const carol = newKey();
    const mallory = newKey();
    const allowedKeys = new Set([alice.publicKey, bob.publicKey, carol.publicKey]);
    const [one, two] = await cluster(2, {
      allowedKeys,
      limits: { maxAuthenticatedPerAddress: 2, maxDeclaredPeersPerAddress: 3 },
    });
    const stranger = await track(RawIntroConnection.open(two!.url));
    await stranger.authenticate(mallory.privateKey);
    expect((await stranger.closed).code).toBe(CloseCode.notMember);

    // Two connections from 127.0.0.1, one on each node: a third, on either, is over the address cap.
    await track(login(one!.url, alice, [bob, carol]));
    await track(login(two!.url, bob, []));
    const third = await track(RawIntroConnection.open(two!.url));
    await third.authenticate(carol.privateKey);
    const refused = await third.closed;
    expect(refused.code).toBe(CloseCode.tooManyConnections);
    expect(refused.reason).toMatch(/from your address \(at most 2\)/);

    // Alice declared 2 on node one; Bob's 2 on node two would make 4 for the address (cap 3).
    const bobAgain = await track(login(two!.url, bob, [alice, carol]));
    const over = await bobAgain.closed;
    expect(over.code).toBe(CloseCode.tooManyPeers);
  });

  it("after a lost engine connection, a key that left meanwhile goes offline and the counts are right", async () => {
    const [one, two] = await cluster(2, { limits: { maxAuthenticatedPerAddress: 2 } });
    const alice = newKey();
    const bob = newKey();
    const carol = newKey();
    const aliceRaw = await track(login(one!.url, alice, [bob, carol]));
    const bobRaw = await track(login(two!.url, bob, [alice]));
    await aliceRaw.next("presence");
    await bobRaw.next("presence");

    // Every node loses its engine connections; Bob leaves while node two cannot record it.
    const admin = new Redis(redis!.url);
    await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
    await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
    bobRaw.close();
    admin.disconnect();
    await expect.poll(() => lastPresence(aliceRaw, bob.publicKey), { timeout: 8_000 }).toBe(false);
    // Bob's connection no longer counts against 127.0.0.1 (cap 2): Carol gets in.
    await expect
      .poll(
        async () => {
          const carolRaw = await login(two!.url, carol, [alice]).catch(() => undefined);
          if (!carolRaw) return false;
          connections.push(carolRaw);
          return (await carolRaw.next("presence", 1_000).catch(() => undefined))?.type === "presence";
        },
        { timeout: 8_000, interval: 300 },
      )
      .toBe(true);
  });

  it("a node back on the engine before its heartbeat connection is live at once: its keys stay online", async () => {
    // A 3 s heartbeat, swept every 300 ms: the others take a node with neither heartbeat nor
    // subscriber for dead within a sweep.
    const [one, two] = await cluster(2, {}, { ...FAST_TIMING, heartbeatTtlMs: 3_000 });
    const { alice, bob, aliceRaw, bobRaw } = await mutualPair(one!, two!);
    const admin = new Redis(redis!.url);
    try {
      const nodeOne = (await admin.get(`tb:at:${alice.publicKey}`))!;
      // As after a failover or a restart: node one's heartbeat is gone and all its connections drop;
      // its command connection comes back, its heartbeat and subscriber connections only 1.2 s later
      // (they are closed as soon as they are seen, every 10 ms).
      await admin.del(`tb:alive:${nodeOne}`);
      const lagging = (line: string) =>
        line.includes(` name=tunnelbore-intro-beat-${nodeOne} `) ||
        (line.includes(` name=tunnelbore-intro-${nodeOne} `) && / sub=[1-9]/.test(line));
      await admin.call("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
      await admin.call("CLIENT", "KILL", "TYPE", "pubsub");
      const until = Date.now() + 1_200;
      while (Date.now() < until) {
        const list = String(await admin.call("CLIENT", "LIST"));
        for (const line of list.split("\n").filter(lagging)) {
          const id = /\bid=(\d+)/.exec(line)?.[1];
          if (id) await admin.call("CLIENT", "KILL", "ID", id).catch(() => undefined);
        }
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      // Node one wrote its heartbeat on its command connection before Alice: no sweep took it for dead.
      await expect
        .poll(async () => (await admin.pubsub("NUMSUB", `tb:n:${nodeOne}`))[1], { timeout: 5_000 })
        .toBe(1);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(await admin.exists(`tb:alive:${nodeOne}`)).toBe(1);
    } finally {
      admin.disconnect();
    }
    const offline = bobRaw.received.filter(
      (message) => message.type === "presence" && message.peer === alice.publicKey && !message.online,
    );
    expect(offline).toEqual([]);
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(4) });
    expect(sequenceOf((await bobRaw.next("envelope")).envelope)).toBe(4);
  });

  it("rebuilds presence from the nodes' connections after the engine restarts", async () => {
    const [one, two] = await cluster(2);
    const alice = newKey();
    const bob = newKey();
    const carol = newKey();
    const aliceRaw = await track(login(one!.url, alice, [bob, carol]));
    const bobRaw = await track(login(two!.url, bob, [alice]));
    await aliceRaw.next("presence");
    await bobRaw.next("presence");

    const port = redis!.port;
    await redis!.stop(); // no snapshot: the engine comes back empty
    redis = await startRedis(port);
    // Carol, new on node two, finds Alice (rebuilt from node one's connection) and they talk.
    // (The nodes reconnect with a backoff of up to 2 s; until then a login waits or fails.)
    let carolRaw: RawIntroConnection | undefined;
    for (let attempt = 0; attempt < 50 && !carolRaw; attempt++) {
      const candidate = await login(two!.url, carol, [alice]).catch(() => undefined);
      try {
        await candidate?.next("presence", 1_000);
        carolRaw = candidate;
      } catch {
        candidate?.close();
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    expect(carolRaw).toBeDefined();
    connections.push(carolRaw!);
    // Alice may have seen a failed attempt come and go; the last word is that Carol is online.
    await expect.poll(() => lastPresence(aliceRaw, carol.publicKey), { timeout: 5_000 }).toBe(true);
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(5) });
    expect(sequenceOf((await bobRaw.next("envelope")).envelope)).toBe(5);
    aliceRaw.send({ type: "send", to: carol.publicKey, envelope: envelopeOf(6) });
    expect(sequenceOf((await carolRaw!.next("envelope")).envelope)).toBe(6);
  });
});
