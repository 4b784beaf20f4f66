// Introduction server benchmarks: authenticated clients held by one server process (and its memory),
// and envelope relay latency at a steady 2,000 envelopes/s. The server is a real process
// (intro-server/main.ts under tsx); the clients are IntroClients in this process.
//   npx tsx bench/intro.ts
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { IntroClient } from "../src/intro-client/intro-client.js";
import { createLogger } from "../src/log.js";
import { EnvelopeCodec } from "../src/signalling/envelope.js";
import { LocalKeyAgreement } from "../src/signalling/key-agreement.js";
import { publicKeyOf } from "../src/signalling/signalling-crypto.js";
import { percentile } from "./statistics.js";
import { type BenchRow, formatTable } from "./table.js";

const projectRoot = fileURLToPath(new URL("..", import.meta.url));
const silent = createLogger("bench", "silent");

const HELD_CLIENTS = 10_000;
const CONNECT_CONCURRENCY = 500;
const RELAY_PAIRS = 50;
const RELAY_RATE_PER_SECOND = 2_000;
const RELAY_WARMUP_MS = 1_000;
const RELAY_MEASURE_MS = 10_000;

/** What a candidate offer looks like in practice: ~400 bytes of JSON before sealing. */
function candidatePayload(sequence: number, sentAt: number) {
  return {
    kind: "candidates",
    sequence,
    sentAt,
    ufrag: "Zq9f",
    pwd: "mN3b4Qx0pLrT7uV2wY5zA8",
    candidates: [
      "candidate:1 1 udp 2130706431 192.0.2.10 50712 typ host",
      "candidate:2 1 udp 1694498815 198.51.100.20 61234 typ srflx raddr 192.0.2.10 rport 50712",
      "candidate:3 1 udp 16777215 203.0.113.5 49160 typ relay raddr 198.51.100.20 rport 61234",
    ],
  };
}

interface ServerProcess {
  child: ChildProcess;
  url: string;
  rssBytes(): number;
  peakRssBytes(): number;
  cpuSeconds(): number;
  stop(): Promise<void>;
}

function statusField(pid: number, field: string): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

async function startServerProcess(): Promise<ServerProcess> {
  // INTRO_BENCH_SERVER_ENTRY=path/to/compiled/intro-server/main.js measures compiled JS without tsx.
  const entry = process.env.INTRO_BENCH_SERVER_ENTRY;
  const child = spawn(
    process.execPath,
    [
      ...(entry ? [entry] : ["--import", "tsx", "intro-server/main.ts"]),
      "--listen",
      "127.0.0.1:0",
      "--no-stun",
      // Every bench client comes from 127.0.0.1: lift the per-address caps above the bench's load.
      "--max-pending-per-address",
      String(CONNECT_CONCURRENCY),
      "--max-conns-per-address",
      String(HELD_CLIENTS),
    ],
    {
      cwd: projectRoot,
      stdio: ["ignore", "pipe", "inherit"],
      env: { ...process.env, TUNNELBORE_LOG: "warn" },
    },
  );
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const url = await new Promise<string>((resolve, reject) => {
    let output = "";
    child.stdout!.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      const match = /listening on (ws:\/\/\S+)/.exec(output);
      if (match) resolve(match[1]!);
    });
    void exited.then(() => reject(new Error("intro server exited before listening")));
  });
  const pid = child.pid!;
  return {
    child,
    url,
    rssBytes: () => statusField(pid, "VmRSS"),
    peakRssBytes: () => statusField(pid, "VmHWM"),
    cpuSeconds: () => {
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 10 ms
    },
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) process.kill(pid, "SIGTERM");
      await exited;
    },
  };
}

async function inBatches<T>(items: T[], size: number, work: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(work));
}

function connected(client: IntroClient): Promise<void> {
  return new Promise((resolve) => {
    if (client.connected) resolve();
    else client.once("connected", () => resolve());
  });
}

/** Paired clients (each declares its partner), so the server also tracks presence for all of them. */
function pairedClients(url: string, count: number): IntroClient[] {
  const keys = Array.from({ length: count }, () => randomBytes(32));
  const publicKeys = keys.map((key) => publicKeyOf(key));
  return keys.map((privateKey, i) => {
    const client = new IntroClient({
      url,
      keys: new LocalKeyAgreement(privateKey),
      logger: silent,
      reconnect: { initialDelayMs: 500, maxDelayMs: 5_000 },
      handshakeTimeoutMs: 30_000,
    });
    client.setPeers([publicKeys[i ^ 1]!]);
    return client;
  });
}

export async function benchHeldClients(rows: BenchRow[]): Promise<void> {
  const server = await startServerProcess();
  try {
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idleRss = server.rssBytes();
    const clients = pairedClients(server.url, HELD_CLIENTS);
    const started = performance.now();
    await inBatches(clients, CONNECT_CONCURRENCY, async (client) => {
      const ready = connected(client);
      client.start();
      await ready;
    });
    const connectSeconds = (performance.now() - started) / 1000;
    // Presence: every client sees its partner online.
    const deadline = Date.now() + 30_000;
    let online = 0;
    while (Date.now() < deadline) {
      online = clients.filter((client, i) => client.isOnline(clients[i ^ 1]!.publicKey)).length;
      if (online === HELD_CLIENTS) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await new Promise((resolve) => setTimeout(resolve, 2_000)); // settle, let GC run
    const heldRss = server.rssBytes();
    const stillConnected = clients.filter((client) => client.connected).length;
    rows.push(
      {
        name: "intro: authenticated clients held",
        value: stillConnected,
        unit: "clients",
        note: `target ${HELD_CLIENTS.toLocaleString("en-US")}; ${online.toLocaleString("en-US")} saw their peer online`,
      },
      {
        name: "intro: server RSS with those clients",
        value: heldRss / 2 ** 20,
        unit: "MiB",
        note: `target <= 300 MB; idle ${(idleRss / 2 ** 20).toFixed(0)} MiB (${process.env.INTRO_BENCH_SERVER_ENTRY ? "compiled JS" : "under tsx"}), peak ${(server.peakRssBytes() / 2 ** 20).toFixed(0)} MiB`,
      },
      {
        name: "intro: server memory per client",
        value: (heldRss - idleRss) / stillConnected / 1024,
        unit: "KiB",
        note: "(RSS held - RSS idle) / clients",
      },
      {
        name: "intro: connect + authenticate + declare",
        value: HELD_CLIENTS / connectSeconds,
        unit: "clients/s",
        note: `${CONNECT_CONCURRENCY} at a time; 2 CPUs shared by server and clients`,
      },
    );
    await inBatches(clients, 1_000, (client) => client.stop());
  } finally {
    await server.stop();
  }
}

interface RelayRun {
  latencies: number[];
  sentInWindow: number;
  deliveredInWindow: number;
  dropped: number;
  undeliverable: number;
  serverCpu: number;
}

/** One run: 2,000 envelopes/s on a fixed schedule for RELAY_MEASURE_MS after a warm-up. */
async function relayRun(): Promise<RelayRun> {
  const server = await startServerProcess();
  try {
    const clients = pairedClients(server.url, RELAY_PAIRS * 2);
    await Promise.all(
      clients.map((client) => {
        const online = new Promise<void>((resolve) => client.once("peer-online", () => resolve()));
        client.start();
        return online;
      }),
    );
    const senders = clients.filter((_, i) => i % 2 === 0);
    const latencies: number[] = [];
    let firstMeasured = Number.POSITIVE_INFINITY;
    let lastMeasured = -1;
    let deliveredInWindow = 0;
    let dropped = 0;
    let undeliverable = 0;
    for (const client of clients) {
      client.on("envelope", (_from, payload) => {
        const { sequence, sentAt } = payload as { sequence: number; sentAt: number };
        if (sequence < firstMeasured || sequence > lastMeasured) return;
        deliveredInWindow++;
        latencies.push(performance.now() - sentAt);
      });
      client.on("envelope-dropped", () => dropped++);
      client.on("undeliverable", () => undeliverable++);
    }

    // Send on a fixed schedule (not as fast as possible): every tick, whatever is due by now.
    const begin = performance.now();
    let sent = 0;
    let cpuAt = 0;
    let cpuSeconds = 0;
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const elapsed = performance.now() - begin;
        if (firstMeasured === Number.POSITIVE_INFINITY && elapsed >= RELAY_WARMUP_MS) {
          firstMeasured = sent;
          cpuAt = performance.now();
          cpuSeconds = server.cpuSeconds();
        }
        if (elapsed >= RELAY_WARMUP_MS + RELAY_MEASURE_MS) {
          clearInterval(tick);
          resolve();
          return;
        }
        const due = Math.floor((elapsed / 1000) * RELAY_RATE_PER_SECOND);
        while (sent < due) {
          const sender = senders[sent % senders.length]!;
          const partner = clients[clients.indexOf(sender) ^ 1]!;
          if (sent >= firstMeasured) lastMeasured = sent;
          sender.send(partner.publicKey, candidatePayload(sent, performance.now()));
          sent++;
        }
      }, 2);
    });
    const serverCpu = (server.cpuSeconds() - cpuSeconds) / ((performance.now() - cpuAt) / 1000);
    await new Promise((resolve) => setTimeout(resolve, 1_000)); // let the last ones land
    await Promise.all(clients.map((client) => client.stop()));
    latencies.sort((a, b) => a - b);
    return {
      latencies,
      sentInWindow: lastMeasured - firstMeasured + 1,
      deliveredInWindow,
      dropped,
      undeliverable,
      serverCpu,
    };
  } finally {
    await server.stop();
  }
}

/**
 * The machine is shared (2 CPUs, other tests running), so one run's tail is noisy: three runs,
 * each reported value is the median run's, and the spread of p99 is in the note.
 */
export async function benchRelayLatency(rows: BenchRow[], runs = 3): Promise<void> {
  const results: RelayRun[] = [];
  for (let i = 0; i < runs; i++) results.push(await relayRun());
  const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
  const p50s = results.map((run) => percentile(run.latencies, 50));
  const p99s = results.map((run) => percentile(run.latencies, 99));
  const maxima = results.map((run) => percentile(run.latencies, 100));
  const sent = results.reduce((sum, run) => sum + run.sentInWindow, 0);
  const delivered = results.reduce((sum, run) => sum + run.deliveredInWindow, 0);
  const lost = results.reduce((sum, run) => sum + run.dropped + run.undeliverable, 0);
  const fmt = (values: number[]) => values.map((value) => value.toFixed(2)).join(", ");
  rows.push(
    {
      name: "intro: relay latency p50 at 2,000 envelopes/s",
      value: median(p50s),
      unit: "ms",
      note: `median of ${runs} runs (${fmt(p50s)}); send -> seal -> server process -> open -> event, ${RELAY_PAIRS} pairs, ~430 B payload`,
    },
    {
      name: "intro: relay latency p99 at 2,000 envelopes/s",
      value: median(p99s),
      unit: "ms",
      note: `target <= 5 ms; runs ${fmt(p99s)}; max ${fmt(maxima)}`,
    },
    {
      name: "intro: envelopes delivered",
      value: (100 * delivered) / sent,
      unit: "%",
      note: `${delivered.toLocaleString("en-US")} of ${sent.toLocaleString("en-US")} over ${runs} x ${RELAY_MEASURE_MS / 1000} s; ${lost} dropped or undeliverable`,
    },
    {
      name: "intro: server CPU at 2,000 envelopes/s",
      value: 100 * median(results.map((run) => run.serverCpu)),
      unit: "% of a core",
    },
  );
}

async function benchSealOpen(rows: BenchRow[]): Promise<void> {
  const alice = new EnvelopeCodec({ keys: new LocalKeyAgreement(randomBytes(32)) });
  const bob = new EnvelopeCodec({ keys: new LocalKeyAgreement(randomBytes(32)) });
  await alice.prepare(bob.publicKey);
  await bob.prepare(alice.publicKey);
  alice.open(bob.publicKey, bob.sealHello(alice.publicKey)); // Bob's epoch, which Alice's envelopes echo
  const payload = candidatePayload(0, 0);
  const count = 20_000;
  for (let i = 0; i < 2_000; i++) bob.open(alice.publicKey, alice.seal(bob.publicKey, payload));
  const started = performance.now();
  for (let i = 0; i < count; i++) bob.open(alice.publicKey, alice.seal(bob.publicKey, payload));
  rows.push({
    name: "intro: seal + open one envelope",
    value: ((performance.now() - started) * 1000) / count,
    unit: "us",
    note: "XChaCha20-Poly1305 (HChaCha20 + node ChaCha20-Poly1305), JSON, replay window",
  });
}

export async function benchIntro(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  await benchSealOpen(rows);
  await benchRelayLatency(rows);
  await benchHeldClients(rows);
  return rows;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const rows = await benchIntro();
  console.log(formatTable(rows));
}
