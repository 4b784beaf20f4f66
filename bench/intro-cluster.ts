// intro-server --cluster (issue 15): 4 node processes on one Redis, on this machine. Holds N
// authenticated clients spread over the nodes (RSS per node and per client), relays envelopes between
// pairs on different nodes at a steady 10,000/s (one-way p50/p99), then SIGKILLs one node: how long
// until its clients are served by the others, and how many envelopes between clients on the surviving
// nodes were lost meanwhile. Clients are light protocol clients in this process.
//   npx tsx bench/intro-cluster.ts   (INTRO_CLUSTER_CLIENTS=N, INTRO_CLUSTER_RATE=envelopes/s to change them)
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import type { ServerMessage } from "../src/signalling/protocol.js";
import {
  authProof,
  publicKeyOf,
  x25519,
  x25519PrivateKeyObject,
} from "../src/signalling/signalling-crypto.js";
import { freePort } from "../test/support/free-port.js";
import { rssBytes } from "./proc-stats.js";
import { percentile } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const NODES = 4;
const CLIENTS = Number(process.env.INTRO_CLUSTER_CLIENTS ?? 12_000);
const CONNECT_CONCURRENCY = 200;
const PAIRS = 100;
const RATE_PER_SECOND = Number(process.env.INTRO_CLUSTER_RATE ?? 10_000);
const WARMUP_MS = 1_000;
const MEASURE_MS = 10_000;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Proc {
  child: ChildProcess;
  pid: number;
  url: string;
}

function spawnNode(redisUrl: string): Promise<Proc> {
  const child = spawn(
    process.execPath,
    [
      // INTRO_BENCH_SERVER_ENTRY=dist/intro-server/main.js measures compiled JS without tsx (as bench/intro.ts).
      ...(process.env.INTRO_BENCH_SERVER_ENTRY
        ? [process.env.INTRO_BENCH_SERVER_ENTRY]
        : ["--import", "tsx", "intro-server/main.ts"]),
      "--listen",
      "127.0.0.1:0",
      "--no-stun",
      "--cluster",
      redisUrl,
      // Every bench client comes from 127.0.0.1: lift the caps above the bench's load.
      "--max-pending-per-address",
      String(CONNECT_CONCURRENCY * 2),
      "--max-conns-per-address",
      String(CLIENTS * 2),
      "--max-conns",
      String(CLIENTS * 2),
      "--max-peers-per-address",
      String(CLIENTS * 8),
    ],
    {
      cwd: projectRoot,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, TUNNELBORE_LOG: "warn" },
    },
  );
  return new Promise((resolve, reject) => {
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (ws:\/\/\S+)/.exec(output);
      if (match) resolve({ child, pid: child.pid!, url: match[1]! });
    });
    child.once("exit", () => reject(new Error("node exited before listening")));
  });
}

type Handler = (message: ServerMessage) => void;

/** The send time, as 20 base64 characters (15 bytes: no padding) in front of the ciphertext. */
const stamp = () => Buffer.from(performance.now().toFixed(3).padStart(15, "0")).toString("base64");
const sentAt = (c: string) => Number(Buffer.from(c.slice(0, 20), "base64").toString());

/** A protocol client: authenticates, declares its peers, reconnects elsewhere when its node goes. */
class BenchClient {
  readonly privateKey = randomBytes(32);
  readonly publicKey = publicKeyOf(this.privateKey);
  ws: WebSocket | undefined;
  node = 0;
  peers: string[] = [];
  onMessage: Handler = () => {};
  /** Resolves on each welcome. */
  welcomed: () => void = () => {};

  connect(urls: string[], node: number): Promise<void> {
    this.node = node;
    const ws = new WebSocket(urls[node]!, { perMessageDeflate: false });
    this.ws = ws;
    return new Promise((resolve, reject) => {
      ws.once("error", reject);
      ws.on("message", (data) => {
        const message = JSON.parse(data.toString()) as ServerMessage;
        if (message.type === "challenge") {
          const serverKey = Buffer.from(message.serverKey, "base64");
          const shared = x25519(x25519PrivateKeyObject(this.privateKey), serverKey);
          const proof = authProof(
            shared,
            serverKey,
            Buffer.from(message.nonce, "base64"),
            Buffer.from(this.publicKey, "base64"),
          );
          ws.send(
            JSON.stringify({
              type: "auth",
              version: 1,
              publicKey: this.publicKey,
              proof: proof.toString("base64"),
            }),
          );
        } else if (message.type === "welcome") {
          ws.send(JSON.stringify({ type: "peers", op: "replace", peers: this.peers }));
          resolve();
          this.welcomed();
        } else this.onMessage(message);
      });
    });
  }
}

async function connectAll(clients: BenchClient[], urls: string[], nodeOf: (i: number) => number) {
  for (let i = 0; i < clients.length; i += CONNECT_CONCURRENCY) {
    await Promise.all(
      clients.slice(i, i + CONNECT_CONCURRENCY).map((client, j) => client.connect(urls, nodeOf(i + j))),
    );
  }
}

export async function benchIntroCluster(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const redisPort = await freePort();
  const redis = spawn(
    "redis-server",
    ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    {
      stdio: "ignore",
    },
  );
  await sleep(300);
  const redisUrl = `redis://127.0.0.1:${redisPort}`;
  const nodes: Proc[] = [];
  const clients: BenchClient[] = [];
  try {
    for (let i = 0; i < NODES; i++) nodes.push(await spawnNode(redisUrl));
    const urls = nodes.map((node) => node.url);
    await sleep(1_000);
    const idleRss = nodes.map((node) => rssBytes(node.pid));
    const redisIdle = rssBytes(redis.pid!);

    // Held clients, in pairs on neighbouring nodes, each pair declaring each other.
    for (let i = 0; i < CLIENTS; i++) clients.push(new BenchClient());
    for (let i = 0; i < CLIENTS; i += 2) {
      clients[i]!.peers = [clients[i + 1]!.publicKey];
      clients[i + 1]!.peers = [clients[i]!.publicKey];
    }
    const started = Date.now();
    await connectAll(clients, urls, (i) => (Math.floor(i / 2) + (i % 2)) % NODES);
    const connectSeconds = (Date.now() - started) / 1000;
    await sleep(3_000);
    const loadedRss = nodes.map((node) => rssBytes(node.pid));
    const perNode = loadedRss.map((rss, i) => rss - idleRss[i]!);
    const perClient = perNode.reduce((a, b) => a + b, 0) / CLIENTS;
    rows.push({
      name: "clients held (4 nodes)",
      value: CLIENTS,
      unit: "",
      note: `connected in ${connectSeconds.toFixed(1)} s`,
    });
    for (let i = 0; i < NODES; i++) {
      rows.push({
        name: `node ${i} RSS`,
        value: loadedRss[i]! / 2 ** 20,
        unit: "MiB",
        note: `idle ${(idleRss[i]! / 2 ** 20).toFixed(0)} MiB`,
      });
    }
    rows.push({ name: "node RSS per client", value: perClient / 1024, unit: "KiB", note: "goal <= 8 KiB" });
    rows.push({
      name: "redis RSS per client",
      value: (rssBytes(redis.pid!) - redisIdle) / CLIENTS / 1024,
      unit: "KiB",
    });

    // Latency: the first PAIRS pairs, on different nodes, at RATE_PER_SECOND in all.
    const latencies: number[] = [];
    let measuring = false;
    let sent = 0;
    let received = 0;
    let undeliverable = 0;
    const filler = randomBytes(420).toString("base64");
    for (const client of clients.slice(0, PAIRS * 2)) {
      client.onMessage = (message) => {
        if (message.type === "envelope") {
          received++;
          const at = sentAt(message.envelope.c);
          if (measuring) latencies.push(performance.now() - at);
        } else if (message.type === "undeliverable") undeliverable++;
      };
    }
    const streamPairs = async (pairs: Array<[BenchClient, BenchClient]>, ms: number, warmupMs: number) => {
      const begin = performance.now();
      setTimeout(() => {
        measuring = true;
      }, warmupMs);
      let index = 0;
      await new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          const elapsed = performance.now() - begin;
          const due = Math.floor((elapsed / 1000) * RATE_PER_SECOND);
          for (let k = 0; sent < due && k < 200; k++, sent++) {
            const [from, to] = pairs[index++ % pairs.length]!;
            const envelope = { n: randomBytes(24).toString("base64"), c: stamp() + filler };
            if (from.ws?.readyState === WebSocket.OPEN)
              from.ws.send(JSON.stringify({ type: "send", to: to.publicKey, envelope }));
            else sent--;
          }
          if (elapsed > ms) {
            clearInterval(timer);
            resolve();
          }
        }, 1);
      });
      measuring = false;
      await sleep(1_000);
    };
    const pairs: Array<[BenchClient, BenchClient]> = [];
    for (let p = 0; p < PAIRS; p++) {
      pairs.push([clients[2 * p]!, clients[2 * p + 1]!], [clients[2 * p + 1]!, clients[2 * p]!]);
    }
    await streamPairs(pairs, WARMUP_MS + MEASURE_MS, WARMUP_MS);
    rows.push({
      name: "cross-node envelope p50",
      value: percentile(latencies, 50),
      unit: "ms",
      note: `${RATE_PER_SECOND}/s, ${PAIRS} pairs`,
    });
    rows.push({
      name: "cross-node envelope p99",
      value: percentile(latencies, 99),
      unit: "ms",
      note: "goal <= 10 ms",
    });
    rows.push({
      name: "envelopes lost (steady)",
      value: sent - received,
      unit: "",
      note: `of ${sent}, ${undeliverable} undeliverable`,
    });

    // A node SIGKILLed: its clients reconnect to the next node; pairs on the survivors keep talking.
    const victim = 0;
    const victims = clients.filter((client) => client.node === victim);
    let back = 0;
    let killedAt = 0;
    let lastBack = 0;
    for (const client of victims) {
      client.ws!.on("close", () => {
        client.welcomed = () => {
          back++;
          lastBack = Date.now();
        };
        // As a client does: at once to another node, again after a short random pause if refused.
        const attempt = (): void => {
          const node = 1 + Math.floor(Math.random() * (NODES - 1));
          client.connect(urls, node).catch(() => setTimeout(attempt, 100 + Math.random() * 400));
        };
        attempt();
      });
    }
    const survivorsPairs = pairs.filter(([a, b]) => a.node !== victim && b.node !== victim);
    sent = 0;
    received = 0;
    undeliverable = 0;
    const killing = sleep(1_000).then(() => {
      killedAt = Date.now();
      nodes[victim]!.child.kill("SIGKILL");
    });
    await streamPairs(survivorsPairs, 8_000, 0);
    await killing;
    for (let waited = 0; back < victims.length && waited < 20_000; waited += 100) await sleep(100);
    rows.push({
      name: "node killed: its clients served elsewhere",
      value: (lastBack - killedAt) / 1000,
      unit: "s",
      note: `${back} of ${victims.length} re-authenticated on the others (goal <= 5 s)`,
    });
    rows.push({
      name: "node killed: envelopes lost between survivors",
      value: sent - received,
      unit: "",
      note: `of ${sent} (${survivorsPairs.length / 2} pairs), ${undeliverable} undeliverable`,
    });
  } finally {
    for (const client of clients) client.ws?.terminate();
    for (const node of nodes) node.child.kill("SIGKILL");
    redis.kill("SIGKILL");
  }
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatTable(await benchIntroCluster()));
  process.exit(0);
}
