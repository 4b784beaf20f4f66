// What the Sentinel failover tests share: a cluster of two node processes on a Redis that Sentinel
// fails over, clients whose every message is recorded with its arrival time, and a measure of how
// long after a moment envelopes flow both ways again.
import { expect } from "vitest";
import type { ServerMessage } from "../../src/signalling/protocol.js";
import {
  envelopeOf,
  login,
  sequenceOf,
  spawnClusterNode,
  startSentinelRedis,
  type TestSentinelRedis,
} from "./intro-cluster-support.js";
import { newKey, type RawIntroConnection, type SpawnedIntroServer, type TestKey } from "./intro-support.js";

/**
 * Master SIGKILL to envelopes flowing both ways again. Sentinel sees the master down after 1 s
 * (down-after-milliseconds), agrees, elects a leader, promotes the replica and names it (2.2-3.0 s);
 * a node then finds the new master within its retry (0.2 s at most). Measured 1.9-2.5 s after a
 * SIGKILL, 2.6-3.6 s after a SIGSTOP, 5.3-5.5 s with down-after 4 s (docs/decisions.md).
 */
export const FAILOVER_BOUND_MS = 10_000;

/** What a connection received, with when (the connection's own list is taken from by next()). */
export class Heard {
  readonly log: Array<{ at: number; message: ServerMessage }> = [];
  constructor(raw: RawIntroConnection) {
    raw.ws.on("message", (data) => {
      this.log.push({ at: performance.now(), message: JSON.parse(data.toString()) as ServerMessage });
    });
  }

  /** The last presence told about `peer`, if any. */
  presenceOf(peer: string): boolean | undefined {
    for (let i = this.log.length - 1; i >= 0; i--) {
      const { message } = this.log[i]!;
      if (message.type === "presence" && message.peer === peer) return message.online;
    }
    return undefined;
  }

  /** How many presence messages about `peer` arrived. */
  presenceCount(peer: string): number {
    return this.log.filter(({ message }) => message.type === "presence" && message.peer === peer).length;
  }

  /** When the first envelope numbered `from` or later arrived. */
  envelopeAt(from: number): number | undefined {
    return this.log.find(({ message }) => message.type === "envelope" && sequenceOf(message.envelope) >= from)
      ?.at;
  }
}

export type Speaker = [RawIntroConnection, Heard, TestKey];

/** A and B send each other an envelope every 100 ms from number `from`; ms from `since` until each got one. */
export async function untilEnvelopesFlow(
  [aRaw, aHeard, a]: Speaker,
  [bRaw, bHeard, b]: Speaker,
  since: number,
  from: number,
): Promise<{ toBMs: number; toAMs: number }> {
  let sequence = from;
  const sender = setInterval(() => {
    aRaw.send({ type: "send", to: b.publicKey, envelope: envelopeOf(sequence) });
    bRaw.send({ type: "send", to: a.publicKey, envelope: envelopeOf(sequence) });
    sequence++;
  }, 100);
  try {
    await expect
      .poll(() => bHeard.envelopeAt(from) !== undefined && aHeard.envelopeAt(from) !== undefined, {
        timeout: FAILOVER_BOUND_MS,
        interval: 50,
      })
      .toBe(true);
  } finally {
    clearInterval(sender);
  }
  return { toBMs: bHeard.envelopeAt(from)! - since, toAMs: aHeard.envelopeAt(from)! - since };
}

/** The two clients of `pairOnTwoNodes`, on different nodes. */
export interface ClientPair {
  alice: TestKey;
  bob: TestKey;
  aliceRaw: RawIntroConnection;
  bobRaw: RawIntroConnection;
  aliceHeard: Heard;
  bobHeard: Heard;
}

/**
 * Does what fails the master over (`cause`, named `after` in the log line), then waits until envelopes
 * flow both ways between the pair again and logs how long that took (`label`: which failover).
 */
export async function timeFailover(
  pair: ClientPair,
  label: string,
  after: string,
  cause: () => unknown,
): Promise<{ toBMs: number; toAMs: number }> {
  const causedAt = performance.now();
  await cause();
  const { alice, bob, aliceRaw, bobRaw, aliceHeard, bobHeard } = pair;
  const times = await untilEnvelopesFlow(
    [aliceRaw, aliceHeard, alice],
    [bobRaw, bobHeard, bob],
    causedAt,
    1_000,
  );
  console.log(
    `${label}: envelopes flow again ${Math.round(times.toBMs)} ms (one -> two) and ` +
      `${Math.round(times.toAMs)} ms (two -> one) after ${after}`,
  );
  return times;
}

/** A Redis with Sentinel, the node processes and clients a test started; stop() ends them all. */
export class SentinelCluster {
  engine: TestSentinelRedis | undefined;
  private readonly processes: SpawnedIntroServer[] = [];
  private readonly connections: RawIntroConnection[] = [];

  /** A node process on `url`; `env` for it alone (set while it starts). */
  async node(url: string, env: Record<string, string> = {}): Promise<SpawnedIntroServer> {
    const saved = Object.fromEntries(Object.keys(env).map((name) => [name, process.env[name]]));
    Object.assign(process.env, env);
    try {
      const spawned = await spawnClusterNode(url);
      this.processes.push(spawned);
      return spawned;
    } finally {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name];
        else process.env[name] = value;
      }
    }
  }

  /** Logged in on `on`, declaring `peers`, with what it hears recorded from the start. */
  async client(on: SpawnedIntroServer, key: TestKey, peers: TestKey[]): Promise<[RawIntroConnection, Heard]> {
    const raw = await login(on.url, key, peers);
    this.connections.push(raw);
    return [raw, new Heard(raw)];
  }

  /** The engine, two nodes, and Alice on one and Bob on two, each told the other is online. */
  async pairOnTwoNodes(options: Parameters<typeof startSentinelRedis>[0] = {}) {
    const engine = await startSentinelRedis(options);
    this.engine = engine;
    // A node trusts the test's self-signed certificate the way a deployment trusts a private CA.
    const env: Record<string, string> = engine.certFile ? { NODE_EXTRA_CA_CERTS: engine.certFile } : {};
    const one = await this.node(engine.url, env);
    const two = await this.node(engine.url, env);
    const alice = newKey();
    const bob = newKey();
    const [aliceRaw, aliceHeard] = await this.client(one, alice, [bob]);
    const [bobRaw, bobHeard] = await this.client(two, bob, [alice]);
    await expect.poll(() => aliceHeard.presenceOf(bob.publicKey), { timeout: 5_000 }).toBe(true);
    await expect.poll(() => bobHeard.presenceOf(alice.publicKey), { timeout: 5_000 }).toBe(true);
    aliceRaw.send({ type: "send", to: bob.publicKey, envelope: envelopeOf(1) });
    await expect.poll(() => bobHeard.envelopeAt(1), { timeout: 5_000 }).toBeDefined();
    return { engine, one, two, alice, bob, aliceRaw, bobRaw, aliceHeard, bobHeard };
  }

  async stop(): Promise<void> {
    for (const raw of this.connections.splice(0)) raw.close();
    for (const spawned of this.processes.splice(0)) await spawned.stop("SIGKILL");
    await this.engine?.stop();
    this.engine = undefined;
  }
}
