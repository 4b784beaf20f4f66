// A rolling restart of every node of a cluster (SIGTERM's drain: close 4011, relay what is already
// sent, hold envelopes for clients on the move) while two clients exchange envelopes: none is lost.
import { afterEach, expect, it } from "vitest";
import type { IntroServer } from "../../intro-server/server.js";
import { CloseCode } from "../../src/signalling/protocol.js";
import { envelopeOf, MovingClient, startNode, startRedis, type TestRedis } from "./intro-cluster-support.js";
import { newKey, sleep } from "./intro-support.js";

let redis: TestRedis | undefined;
const nodes: IntroServer[] = [];
const clients: MovingClient[] = [];

afterEach(async () => {
  for (const client of clients.splice(0)) client.stop();
  await Promise.all(nodes.splice(0).map((node) => node.close()));
  await redis?.stop();
  redis = undefined;
});

it("loses no envelope between two clients while every node restarts in turn", async () => {
  redis = await startRedis();
  for (let i = 0; i < 3; i++) nodes.push(await startNode(redis.url));
  const urls = nodes.map((node) => node.url);
  const alice = newKey();
  const bob = newKey();
  // On different nodes, each moving to the next when its node drains.
  const aliceClient = new MovingClient(() => urls, alice, bob, 0);
  const bobClient = new MovingClient(() => urls, bob, alice, 1);
  clients.push(aliceClient, bobClient);
  await Promise.all([aliceClient.connect(), bobClient.connect()]);
  await sleep(300); // both declared

  let sent = 0;
  const stream = setInterval(() => {
    aliceClient.send(envelopeOf(sent));
    bobClient.send(envelopeOf(sent));
    sent++;
  }, 5);
  try {
    for (let i = 0; i < nodes.length; i++) {
      const port = nodes[i]!.port;
      await nodes[i]!.close();
      nodes[i] = await startNode(redis.url, { port });
      await sleep(400);
    }
  } finally {
    clearInterval(stream);
  }
  const expected = Array.from({ length: sent }, (_, i) => i);
  const sorted = (values: number[]) => [...values].sort((a, b) => a - b);
  await expect.poll(() => bobClient.received.length, { timeout: 8_000 }).toBe(sent);
  await expect.poll(() => aliceClient.received.length, { timeout: 8_000 }).toBe(sent);
  expect(sorted(bobClient.received)).toEqual(expected);
  expect(sorted(aliceClient.received)).toEqual(expected);
  expect(aliceClient.undeliverable + bobClient.undeliverable).toBe(0);
  // Each was told to move at least once, with 4011, and nothing else closed them.
  expect(aliceClient.moves).toBeGreaterThanOrEqual(1);
  expect(
    [...aliceClient.closes, ...bobClient.closes].every((code) => code === CloseCode.serverShutdown),
  ).toBe(true);
  expect(sent).toBeGreaterThan(200);
}, 60_000);
