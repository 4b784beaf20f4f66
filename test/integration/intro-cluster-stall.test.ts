// A cluster node whose process stops turning its event loop for longer than the heartbeat's TTL (the
// 56,000-client benchmark's false deaths, issue 15) is slow, not dead: the others do not take its clients
// offline, and envelopes for them arrive once it runs again. A node frozen for longer than the grace is
// taken for dead, and writes its connections again when it comes back. The stall is SIGSTOP on a node
// process: like a blocked event loop, its sockets stay open while it answers nothing.
import { Redis } from "ioredis";
import { afterEach, expect, it } from "vitest";
import type { IntroServer } from "../../intro-server/server.js";
import {
  envelopeOf,
  FAST_TIMING,
  login,
  sequenceOf,
  spawnClusterNode,
  startNode,
  startRedis,
  type TestRedis,
} from "./intro-cluster-support.js";
import { newKey, type RawIntroConnection, type SpawnedIntroServer, sleep } from "./intro-support.js";

let redis: TestRedis | undefined;
const nodes: IntroServer[] = [];
const processes: SpawnedIntroServer[] = [];
const connections: RawIntroConnection[] = [];

afterEach(async () => {
  for (const raw of connections.splice(0)) raw.close();
  for (const spawned of processes.splice(0)) {
    spawned.process.kill("SIGCONT");
    await spawned.stop("SIGKILL");
  }
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await redis?.stop();
  redis = undefined;
});

/** Alice on an in-process node (the reaper), Bob on a node process (3 s heartbeat) that will stall. */
async function aliceAndStallingBob() {
  redis = await startRedis();
  const survivor = await startNode(redis.url);
  nodes.push(survivor);
  const stalling = await spawnClusterNode(redis.url);
  processes.push(stalling);
  const alice = newKey();
  const bob = newKey();
  const aliceRaw = await login(survivor.url, alice, [bob]);
  const bobRaw = await login(stalling.url, bob, [alice]);
  connections.push(aliceRaw, bobRaw);
  await aliceRaw.next("presence");
  await bobRaw.next("presence");
  return { stalling, alice, bob, aliceRaw, bobRaw };
}

const presenceOf = (raw: RawIntroConnection, peer: string) =>
  raw.received.filter((message) => message.type === "presence" && message.peer === peer);

it("does not take a node whose event loop stalls past the heartbeat's TTL for dead, and loses nothing for it", async () => {
  const { stalling, bob, aliceRaw, bobRaw } = await aliceAndStallingBob();
  stalling.process.kill("SIGSTOP");
  // 5 s: its 3 s heartbeat expires, and the survivor sweeps every 300 ms meanwhile.
  const sent = 20;
  for (let i = 0; i < sent; i++) {
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(i) });
    await sleep(250);
  }
  stalling.process.kill("SIGCONT");
  const received: number[] = [];
  for (let i = 0; i < sent; i++) received.push(sequenceOf((await bobRaw.next("envelope", 5_000)).envelope));
  expect(received).toEqual(Array.from({ length: sent }, (_, i) => i));
  expect(aliceRaw.received.filter((message) => message.type === "undeliverable")).toEqual([]);
  expect(presenceOf(aliceRaw, bob.publicKey)).toEqual([]);
  // And it goes on as a member: Alice's next envelope goes through at once.
  aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(sent) });
  expect(sequenceOf((await bobRaw.next("envelope")).envelope)).toBe(sent);
}, 30_000);

it("takes a node frozen past the grace for dead, and it writes its connections again when it runs", async () => {
  const { stalling, alice, bob, aliceRaw, bobRaw } = await aliceAndStallingBob();
  stalling.process.kill("SIGSTOP");
  // Its heartbeat (3 s) expires, then the survivor's grace runs out.
  const frozenFor = 3_000 + FAST_TIMING.lateGraceMs;
  expect(await aliceRaw.next("presence", frozenFor + 3_000)).toEqual({
    type: "presence",
    peer: bob.publicKey,
    online: false,
  });
  stalling.process.kill("SIGCONT");
  // Its next heartbeat finds it reaped: Bob is written again and Alice told he is back.
  expect(await aliceRaw.next("presence", 5_000)).toEqual({
    type: "presence",
    peer: bob.publicKey,
    online: true,
  });
  aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(1) });
  expect(sequenceOf((await bobRaw.next("envelope")).envelope)).toBe(1);
  bobRaw.send({ type: "send", to: alice.publicKey, envelope: envelopeOf(2) });
  expect(sequenceOf((await aliceRaw.next("envelope")).envelope)).toBe(2);
}, 40_000);

it("takes a dead node's keys offline a batch at a time (the engine is not held by one long script), peers told", async () => {
  redis = await startRedis();
  const survivor = await startNode(redis.url);
  nodes.push(survivor);
  const alice = newKey();
  const bob = newKey();
  // A dead node (no heartbeat, no subscriber) holding Bob, mutual with Alice, and 1,200 other keys.
  const engine = new Redis(redis.url);
  try {
    const dead = "deadbeefdeadbeef";
    const others = Array.from({ length: 1_200 }, (_, i) => `key${i}`);
    await engine.config("SET", "slowlog-log-slower-than", "0");
    await engine.config("SET", "slowlog-max-len", "100000");
    const write = engine.multi().sadd("tb:nodes", dead);
    for (const key of [bob.publicKey, ...others]) write.set(`tb:at:${key}`, dead).sadd(`tb:nk:${dead}`, key);
    await write.sadd(`tb:d:${bob.publicKey}`, alice.publicKey).exec();
    const aliceRaw = await login(survivor.url, alice, [bob]);
    connections.push(aliceRaw);
    // Told online first if her declaration reached the engine before the survivor's first sweep.
    let presence = await aliceRaw.next("presence", 5_000);
    if (presence.online) presence = await aliceRaw.next("presence", 5_000);
    expect(presence).toEqual({ type: "presence", peer: bob.publicKey, online: false });
    const deadline = Date.now() + 5_000;
    while ((await engine.exists(`tb:nk:${dead}`, "tb:reaping")) > 0 && Date.now() < deadline) await sleep(50);
    expect(await engine.exists(`tb:nk:${dead}`, "tb:reaping", `tb:at:${bob.publicKey}`)).toBe(0);
    expect(await engine.exists(...others.map((key) => `tb:at:${key}`))).toBe(0);
    expect(await engine.sismember("tb:nodes", dead)).toBe(0);
    // Each REAP took at most 500 keys: 1,201 took three scripts (every command is in the slow log here).
    const log = (await engine.call("SLOWLOG", "GET", "100000")) as Array<[number, number, number, string[]]>;
    const reaps = log.filter(([, , , args]) => args[0]?.toUpperCase() === "EVALSHA" && args[7] === "500");
    expect(reaps.length).toBeGreaterThanOrEqual(3);
  } finally {
    engine.disconnect();
  }
}, 30_000);
