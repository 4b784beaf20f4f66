// The measured envelope stream of bench/intro-cluster.ts: pairs of clients on neighbouring nodes send
// each other envelopes at a set rate; each envelope carries its send time and (nodes run with
// TUNNELBORE_INTRO_TRACE=1) the nodes' stage times, so its one-way latency splits into
//   sender's write -> node A takes the frame -> node B takes it from Redis -> node B writes it -> the
//   receiver parses it.
// All times are the monotonic clock (CLOCK_MONOTONIC, shared by the processes of one machine).
// Run in the bench's own process (streamPairs) or as a process of its own (INTRO_CLUSTER_PAIR_PROCS=N:
// this file as a child; its loop then does only its share of the stream).
import { randomBytes } from "node:crypto";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { WebSocket } from "ws";
import { BenchClient, connectAll, nodeOfClient, sleep } from "./intro-cluster-client.js";

/** The monotonic clock in ms, as the nodes' trace (intro-server/cluster/envelope-trace.ts). */
export const monoNow = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

/** The send time, as 20 base64 characters (15 bytes: no padding) in front of the ciphertext. */
const stamp = () => Buffer.from(monoNow().toFixed(3).padStart(15, "0")).toString("base64");
const sentAt = (c: string) => Number(Buffer.from(c.slice(0, 20), "base64").toString());

/**
 * Per measured envelope: total, then sender -> A, A -> B, B's turn, B -> receiver (NaN without trace),
 * and last its send time (monotonic ms).
 */
export const STAGES = ["total", "write->A", "A->B (Redis)", "B's turn", "B->receiver"] as const;
export const SAMPLE_WIDTH = STAGES.length + 1;

export interface StreamResult {
  /** SAMPLE_WIDTH numbers per measured envelope. */
  samples: number[];
  sent: number;
  received: number;
  undeliverable: number;
  /** This process's loop delay (ms) over the stream, and its CPU (ms). */
  loop: { p50: number; p99: number; max: number };
  cpuMs: number;
}

/**
 * Streams envelopes between `pairs` (each way) at `rate` for `ms`, measuring those sent after
 * `warmupMs`, whenever they arrive; then waits until nothing has arrived for 3 s.
 */
export async function streamPairs(
  pairs: Array<[BenchClient, BenchClient]>,
  rate: number,
  ms: number,
  warmupMs: number,
): Promise<StreamResult> {
  const samples: number[] = [];
  let sent = 0;
  let received = 0;
  let undeliverable = 0;
  const begin = monoNow();
  const measureFrom = begin + warmupMs;
  const measureTo = begin + ms;
  for (const [client] of pairs) {
    client.onMessage = (message) => {
      if (message.type === "envelope") {
        received++;
        const now = monoNow();
        const at = sentAt(message.envelope.c);
        if (at < measureFrom || at > measureTo) return;
        const t = (message.envelope as { t?: number[] }).t;
        if (t?.length === 3)
          samples.push(now - at, t[0]! - at, t[1]! - t[0]!, t[2]! - t[1]!, now - t[2]!, at);
        else samples.push(now - at, Number.NaN, Number.NaN, Number.NaN, Number.NaN, at);
      } else if (message.type === "undeliverable") undeliverable++;
    };
  }
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const cpuBefore = process.cpuUsage();
  const filler = randomBytes(420).toString("base64");
  let index = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const elapsed = monoNow() - begin;
      const due = Math.floor((elapsed / 1000) * rate);
      for (let k = 0; sent < due && k < 200; k++, sent++) {
        const [from, to] = pairs[index++ % pairs.length]!;
        if (from.ws?.readyState !== WebSocket.OPEN) {
          sent--;
          continue;
        }
        // Built as text: the frame is what a client's JSON.stringify gives, at a fraction of its cost.
        const nonce = randomBytes(24).toString("base64");
        from.ws.send(
          `{"type":"send","to":"${to.publicKey}","envelope":{"n":"${nonce}","c":"${stamp()}${filler}"}}`,
        );
      }
      if (elapsed > ms) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  loop.disable();
  const cpu = process.cpuUsage(cpuBefore);
  // Lost is what never arrives: wait for the stragglers (a p99 of seconds on a loaded machine) until
  // nothing has arrived for 3 s, rather than count what is still on its way.
  let settled = received + undeliverable;
  for (let quiet = 0; quiet < 3_000 && received + undeliverable < sent; ) {
    await sleep(250);
    quiet = received + undeliverable === settled ? quiet + 250 : 0;
    settled = received + undeliverable;
  }
  await sleep(250);
  const delay = (ns: number) => ns / 1e6;
  return {
    samples,
    sent,
    received,
    undeliverable,
    loop: { p50: delay(loop.percentile(50)), p99: delay(loop.percentile(99)), max: delay(loop.max) },
    cpuMs: (cpu.user + cpu.system) / 1e3,
  };
}

/** Pairs of clients `from`..`from + 2 * count`, each declaring the other. */
export function makePairs(
  from: number,
  count: number,
): { clients: BenchClient[]; pairs: Array<[BenchClient, BenchClient]> } {
  const clients: BenchClient[] = [];
  for (let i = 0; i < count * 2; i++) clients.push(new BenchClient(from + i));
  const pairs: Array<[BenchClient, BenchClient]> = [];
  for (let i = 0; i < count * 2; i += 2) {
    clients[i]!.peers = [clients[i + 1]!.publicKey];
    clients[i + 1]!.peers = [clients[i]!.publicKey];
    pairs.push([clients[i]!, clients[i + 1]!], [clients[i + 1]!, clients[i]!]);
  }
  return { clients, pairs };
}

export type PairsMessage =
  | { type: "start"; urls: string[]; from: number; count: number }
  | { type: "stream"; rate: number; ms: number; warmupMs: number };
export type PairsReport = { type: "ready" } | { type: "connected" } | ({ type: "done" } & StreamResult);

if (import.meta.url === `file://${process.argv[1]}`) {
  const send = (report: PairsReport) => process.send!(report);
  let pairs: Array<[BenchClient, BenchClient]> = [];
  process.on("message", async (message: PairsMessage) => {
    if (message.type === "start") {
      const made = makePairs(message.from, message.count);
      pairs = made.pairs;
      await connectAll(made.clients, message.urls, (i) =>
        nodeOfClient(message.from + i, message.urls.length),
      );
      send({ type: "connected" });
    } else send({ type: "done", ...(await streamPairs(pairs, message.rate, message.ms, message.warmupMs)) });
  });
  process.once("SIGTERM", () => process.exit(0));
  send({ type: "ready" });
}
