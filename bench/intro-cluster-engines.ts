// The engine choice for `intro-server --cluster` (issue 15), measured: cross-node envelope latency at
// a steady 10,000 envelopes/s and memory per client for presence, on Redis (the cluster bus as built:
// a Lua route script and pub/sub) and on NATS (core pub/sub, one subject per key: NATS routes by
// interest, so presence is a subscription). Each engine is a process of its own on a free port.
//   npx tsx bench/intro-cluster-engines.ts
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { Redis } from "ioredis";
import { connect as natsConnect, StringCodec } from "nats";
import type { ClusterEnvelope } from "../intro-server/cluster/cluster-bus.js";
import { RedisClusterBus } from "../intro-server/cluster/redis-cluster-bus.js";
import { createLogger } from "../src/log.js";
import { publicKeyOf } from "../src/signalling/signalling-crypto.js";
import { freePort } from "../test/support/free-port.js";
import { redisServerArgs } from "../test/support/redis-server-args.js";
import { rssBytes } from "./proc-stats.js";
import { percentile } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const silent = createLogger("bench", "silent");
const RATE_PER_SECOND = 10_000;
const WARMUP_MS = 1_000;
const MEASURE_MS = 5_000;
const PRESENCE_CLIENTS = 20_000;
const DECLARED_PER_CLIENT = 4;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function waitForPort(port: number): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const busy = await new Promise<boolean>((resolve) => {
      const probe = createServer().listen(port, "127.0.0.1");
      probe.once("listening", () => probe.close(() => resolve(false)));
      probe.once("error", () => resolve(true));
    });
    if (busy) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}

async function startEngine(command: string, args: (port: number) => string[]) {
  const port = await freePort();
  const child: ChildProcess = spawn(command, args(port), { stdio: "ignore" });
  await waitForPort(port);
  return {
    port,
    pid: child.pid!,
    stop: () => {
      child.kill("SIGKILL");
    },
  };
}

/** A realistic sealed envelope (~600 bytes of base64) whose `c` starts with the send time. */
const filler = randomBytes(420).toString("base64");
function timedEnvelope(): { n: string; c: string } {
  return { n: randomBytes(24).toString("base64"), c: `${performance.now().toFixed(3)}|${filler}` };
}
const sentAt = (c: string) => Number(c.slice(0, c.indexOf("|")));

/** Sends at RATE_PER_SECOND (a batch every millisecond); resolves with how many it sent. */
async function steadyRate(send: () => void): Promise<number> {
  const perTick = RATE_PER_SECOND / 1000;
  let sent = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = performance.now() - started;
      const due = Math.floor((elapsed / 1000) * RATE_PER_SECOND);
      for (let i = 0; sent < due && i < perTick * 20; i++, sent++) send();
      if (elapsed > WARMUP_MS + MEASURE_MS) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await sleep(500);
  return sent;
}

function latencyRows(engine: string, latencies: number[], sent: number, received: number): BenchRow[] {
  // sent and received count the whole run, warm-up included
  return [
    {
      name: `${engine}: envelope p50`,
      value: percentile(latencies, 50),
      unit: "ms",
      note: "cross-node, one way",
    },
    {
      name: `${engine}: envelope p99`,
      value: percentile(latencies, 99),
      unit: "ms",
      note: `${RATE_PER_SECOND}/s`,
    },
    { name: `${engine}: envelopes lost`, value: sent - received, unit: "", note: `of ${sent}` },
  ];
}

const keys = (count: number) => Array.from({ length: count }, () => publicKeyOf(randomBytes(32)));

async function benchRedis(): Promise<BenchRow[]> {
  const engine = await startEngine("redis-server", (port) => redisServerArgs(port));
  const url = `redis://127.0.0.1:${engine.port}`;
  const rows: BenchRow[] = [];
  const latencies: number[] = [];
  let received = 0;
  let measuring = false;
  const noop = { presence() {}, replaced() {}, undeliverable() {}, reconnected() {}, resubscribed() {} };
  const a = new RedisClusterBus(url, silent);
  const b = new RedisClusterBus(url, silent);
  try {
    await a.start({ ...noop, envelope() {} });
    await b.start({
      ...noop,
      envelope: (envelope: ClusterEnvelope) => {
        received++;
        if (measuring) latencies.push(performance.now() - sentAt(envelope.envelope.c));
      },
    });
    const [alice, bob] = keys(2) as [string, string];
    await a.claim(alice, "192.0.2.1", 1_000);
    await b.claim(bob, "192.0.2.2", 1_000);
    const declare = { removed: [], reset: true, perAddressCap: 1_000_000 };
    await a.declare({ ...declare, key: alice, bucket: "192.0.2.1", added: [bob] });
    await b.declare({ ...declare, key: bob, bucket: "192.0.2.2", added: [alice] });
    setTimeout(() => {
      measuring = true;
    }, WARMUP_MS);
    const sent = await steadyRate(() => {
      void a.route({ to: bob, from: alice, src: a.nodeId, envelope: timedEnvelope() }, true);
    });
    rows.push(...latencyRows("redis (route script + pub/sub)", latencies, sent, received));

    // Presence: each client claimed and declaring 4 peers, as the nodes write it.
    const info = new Redis(url);
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await info.info("memory"))![1]);
    const beforeUsed = await usedMemory();
    const beforeRss = rssBytes(engine.pid);
    const clients = keys(PRESENCE_CLIENTS);
    for (let i = 0; i < clients.length; i += 200) {
      await Promise.all(
        clients.slice(i, i + 200).map(async (key, j) => {
          const bucket = `10.${(i + j) >> 16}.${((i + j) >> 8) & 255}.${(i + j) & 255}`;
          await b.claim(key, bucket, 1_000);
          const added = Array.from(
            { length: DECLARED_PER_CLIENT },
            (_, k) => clients[(i + j + k + 1) % clients.length]!,
          );
          await b.declare({ ...declare, key, bucket, added });
        }),
      );
    }
    const perClientUsed = ((await usedMemory()) - beforeUsed) / PRESENCE_CLIENTS;
    const perClientRss = (rssBytes(engine.pid) - beforeRss) / PRESENCE_CLIENTS;
    rows.push({
      name: "redis: engine memory per client",
      value: perClientUsed,
      unit: "bytes",
      note: `used_memory, ${DECLARED_PER_CLIENT} declared peers each, ${PRESENCE_CLIENTS} clients`,
    });
    rows.push({ name: "redis: engine RSS per client", value: perClientRss, unit: "bytes" });
    info.disconnect();
  } finally {
    await a.close();
    await b.close();
    engine.stop();
  }
  return rows;
}

async function benchNats(): Promise<BenchRow[]> {
  const engine = await startEngine("nats-server", (port) => ["-a", "127.0.0.1", "-p", String(port)]);
  const servers = `127.0.0.1:${engine.port}`;
  const codec = StringCodec();
  const rows: BenchRow[] = [];
  const a = await natsConnect({ servers });
  const b = await natsConnect({ servers });
  try {
    const latencies: number[] = [];
    let received = 0;
    let measuring = false;
    const bob = keys(1)[0]!;
    // The subject is the key: node B's interest in it is Bob's presence.
    b.subscribe(`tb.k.${bob.replace(/[/+=]/g, "_")}`, {
      callback: (_error, message) => {
        received++;
        const envelope = JSON.parse(codec.decode(message.data)) as ClusterEnvelope;
        if (measuring) latencies.push(performance.now() - sentAt(envelope.envelope.c));
      },
    });
    await b.flush();
    setTimeout(() => {
      measuring = true;
    }, WARMUP_MS);
    const subject = `tb.k.${bob.replace(/[/+=]/g, "_")}`;
    const sent = await steadyRate(() => {
      const envelope = { to: bob, from: "alice", src: "a", envelope: timedEnvelope() };
      a.publish(subject, codec.encode(JSON.stringify(envelope)));
    });
    rows.push(...latencyRows("nats (pub/sub, subject per key)", latencies, sent, received));

    const beforeRss = rssBytes(engine.pid);
    for (const key of keys(PRESENCE_CLIENTS))
      b.subscribe(`tb.k.${key.replace(/[/+=]/g, "_")}`, { callback: () => {} });
    await b.flush();
    await sleep(500);
    rows.push({
      name: "nats: engine RSS per client",
      value: (rssBytes(engine.pid) - beforeRss) / PRESENCE_CLIENTS,
      unit: "bytes",
      note: "one subscription each; declarations and caps not held by the engine (no JetStream KV)",
    });
  } finally {
    await a.close();
    await b.close();
    engine.stop();
  }
  return rows;
}

export async function benchIntroClusterEngines(): Promise<BenchRow[]> {
  return [...(await benchRedis()), ...(await benchNats())];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatTable(await benchIntroClusterEngines()));
  process.exit(0);
}
