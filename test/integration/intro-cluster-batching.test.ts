// A node's commands to the engine leave in one write a turn of its event loop: counted by the engine's
// own reads (INFO stats total_reads_processed) while a node asks for 300 scripts in one turn.
import { Redis } from "ioredis";
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_CLUSTER_TIMING, RedisClusterBus } from "../../intro-server/cluster/redis-cluster-bus.js";
import { silent, startRedis, type TestRedis } from "./intro-cluster-support.js";
import { newKey } from "./intro-support.js";

let redis: TestRedis | undefined;
const buses: RedisClusterBus[] = [];

afterEach(async () => {
  await Promise.all(buses.splice(0).map((bus) => bus.close()));
  await redis?.stop();
  redis = undefined;
});

const readsOf = async (engine: Redis) =>
  Number(/total_reads_processed:(\d+)/.exec(await engine.info("stats"))?.[1] ?? Number.NaN);

describe("a cluster node's writes to the engine", () => {
  it("go out once a turn, not once a command", async () => {
    redis = await startRedis();
    // No sweep during the count: its heartbeat and reap are reads of their own.
    const bus = new RedisClusterBus(redis.url, silent, {
      ...DEFAULT_CLUSTER_TIMING,
      sweepIntervalMs: 60_000,
    });
    buses.push(bus);
    const noop = () => {};
    await bus.start({
      presence: noop,
      envelope: noop,
      replaced: noop,
      undeliverable: noop,
      reconnected: noop,
      resubscribed: noop,
    });
    const engine = new Redis(redis.url);
    try {
      const peer = newKey().publicKey;
      const keys = Array.from({ length: 300 }, () => newKey().publicKey);
      const before = await readsOf(engine);
      const answers = await Promise.all(keys.map((key) => bus.onlineOf(key, [peer])));
      const reads = (await readsOf(engine)) - before;
      expect(answers.every((online) => online.length === 0)).toBe(true);
      // The 300 scripts and the second INFO: a few reads (the kernel may split one write), not 300.
      expect(reads).toBeLessThanOrEqual(10);
    } finally {
      engine.disconnect();
    }
  });
});
