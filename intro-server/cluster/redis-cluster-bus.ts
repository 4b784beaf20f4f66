/** The cluster bus on Redis: shared state in keys and Lua scripts, messages to a node by pub/sub. */
import { createHash, randomBytes } from "node:crypto";
import { Redis, type RedisOptions } from "ioredis";
import { RuntimeError } from "../../src/errors.js";
import type { Logger } from "../../src/log.js";
import type {
  ClusterBus,
  ClusterEnvelope,
  ClusterHandlers,
  ClusterMember,
  DeclareResult,
  RouteResult,
} from "./cluster-bus.js";
import { type ClusterEngine, parseClusterEngine, redactClusterUrl } from "./cluster-url.js";
import { stamp, TRACE, traceNow, traceRoute } from "./envelope-trace.js";
import { LoopMonitor } from "./loop-monitor.js";
import { CLAIM, DECLARE, LEAVE, ONLINE_OF, PRUNE, REAP, RESTORE, ROUTE } from "./redis-scripts.js";
import { TurnBatch } from "./turn-batch.js";

export interface ClusterTiming {
  /** A node's heartbeat lives this long: its keys go offline at most this long after it dies (plus a sweep). */
  heartbeatTtlMs: number;
  /** How often a node renews its heartbeat and looks for dead nodes. */
  sweepIntervalMs: number;
  /**
   * A node whose heartbeat expired but whose process still holds its engine connection (its event loop
   * stalled, or its host froze or was cut off) is reaped only after its heartbeat has been missing this
   * long. A node whose process died loses its connection and is reaped once its heartbeat expires.
   */
  lateGraceMs: number;
  /** How long envelopes for a moving key are held, how many per key and per window in all. */
  holdMs: number;
  heldPerKey: number;
  heldPerWindow: number;
}

export const DEFAULT_CLUSTER_TIMING: ClusterTiming = {
  heartbeatTtlMs: 3_000,
  sweepIntervalMs: 1_000,
  lateGraceMs: 15_000,
  holdMs: 5_000,
  heldPerKey: 32,
  heldPerWindow: 10_000,
};

/** A node message as published; envelopes carry the ClusterEnvelope fields. */
type NodeMessage =
  | { t: "p"; to: string; peer: string; on: boolean }
  | ({ t: "e" } & ClusterEnvelope)
  | { t: "r"; key: string }
  | { t: "u"; to: string; peer: string };

class Script {
  readonly sha: string;
  constructor(readonly source: string) {
    this.sha = createHash("sha1").update(source).digest("hex");
  }
}

const SCRIPTS = {
  claim: new Script(CLAIM),
  declare: new Script(DECLARE),
  leave: new Script(LEAVE),
  route: new Script(ROUTE),
  reap: new Script(REAP),
  restore: new Script(RESTORE),
  prune: new Script(PRUNE),
  onlineOf: new Script(ONLINE_OF),
};

/** Keys a REAP script takes offline at most: tens of ms of Redis on this loaded VM, not seconds. */
const REAP_BATCH = 500;

const ROUTE_RESULTS: Record<number, RouteResult> = { 0: "undeliverable", 1: "sent", 2: "held" };

export class RedisClusterBus implements ClusterBus {
  readonly nodeId = randomBytes(8).toString("hex");
  private readonly commands: Redis;
  /** The commands connection's writes: one a turn of the event loop. */
  private readonly batch: TurnBatch;
  private readonly subscriber: Redis;
  /**
   * The heartbeat's own connection: on the commands connection it waited behind a login storm's
   * thousands of queued scripts, lapsed, and the others reaped a live node (measured at 56,000 clients).
   */
  private readonly beat: Redis;
  private sweep: NodeJS.Timeout | undefined;
  private handlers: ClusterHandlers | undefined;
  private everReady = false;
  /** The engine came back and this node is writing itself again: the sweep leaves that to it. */
  private rejoining = false;
  private closed = false;
  /** The reap under way: one at a time, and close waits for it before reaping itself. */
  private reaping: Promise<void> | undefined;
  /** Stalls of this process's event loop, logged with the work counted below (the cause of false deaths). */
  readonly loop: LoopMonitor;
  /** What this node asked of the engine since the monitor's last tick, and what arrived. */
  private work = { claims: 0, declares: 0, leaves: 0, routes: 0, received: 0, onlineOf: 0 };
  private activity = "";
  private lastBeatAt = 0;

  constructor(
    private readonly url: string,
    private readonly log: Logger,
    private readonly timing: ClusterTiming = DEFAULT_CLUSTER_TIMING,
  ) {
    const engine = parseClusterEngine(url);
    const connectionName = `tunnelbore-intro-${this.nodeId}`;
    // Not auto-pipelined: its batches are sent a tick later, so a MULTI or pipeline issued after them
    // would overtake them, and the scripts' order is what keeps a key's records right.
    this.commands = openConnection(engine, connectionName);
    this.batch = new TurnBatch(() => this.commands.stream);
    this.subscriber = openConnection(engine, connectionName);
    this.beat = openConnection(engine, `tunnelbore-intro-beat-${this.nodeId}`);
    this.loop = new LoopMonitor(log, {
      context: () => {
        const work = this.work;
        this.work = { claims: 0, declares: 0, leaves: 0, routes: 0, received: 0, onlineOf: 0 };
        return { node: this.nodeId, ...work, activity: this.activity || undefined };
      },
    });
    for (const connection of [this.commands, this.subscriber, this.beat]) {
      connection.on("error", (error: Error) =>
        log.debug({ err: error.message }, "cluster engine connection error"),
      );
    }
  }

  async start(handlers: ClusterHandlers): Promise<void> {
    this.handlers = handlers;
    const connect = async (connection: Redis) => {
      const failed = new Promise<never>((_, reject) =>
        connection.once("error", (error: Error) => reject(error)),
      );
      await Promise.race([connection.connect(), failed]);
    };
    try {
      await connect(this.commands);
      await connect(this.subscriber);
      await connect(this.beat);
      await this.subscriber.subscribe(this.channel(this.nodeId));
      await this.loadScripts();
    } catch (error) {
      this.commands.disconnect();
      this.subscriber.disconnect();
      this.beat.disconnect();
      throw new RuntimeError(
        "intro-cluster",
        `cannot reach the cluster engine at ${redactClusterUrl(this.url)}: ${(error as Error).message}${authHint(this.url, error as Error)}`,
        { url: redactClusterUrl(this.url) },
        { cause: error },
      );
    }
    this.subscriber.on("message", (_channel: string, text: string) => this.onMessage(text));
    // Pub/sub does not keep what was published while this subscriber was away.
    this.subscriber.on("ready", () => {
      if (this.closed) return;
      // ioredis sent SUBSCRIBE again as the connection became ready; the PING's answer comes after it,
      // so the resync reads the engine no earlier than this node hears what is published to it.
      void this.subscriber
        .ping()
        .catch(() => undefined)
        .then(() => {
          if (!this.closed) this.handlers?.resubscribed();
        });
    });
    this.commands.on("ready", () => {
      if (!this.everReady || this.closed) return;
      this.log.warn({ node: this.nodeId }, "cluster engine back: writing this node's connections again");
      this.rejoining = true;
      void this.loadScripts()
        // Live before writing its connections again, on this connection (the heartbeat's may come back
        // later): another node's resync meanwhile would read them as on a dead node and tell their
        // peers they are offline, and after a failover nothing would tell them otherwise.
        .then(() => this.heartbeat(this.commands))
        .then(() => this.handlers?.reconnected())
        .catch((error: Error) => this.log.warn({ err: error.message }, "cannot rejoin the cluster"))
        .finally(() => {
          this.rejoining = false;
        });
    });
    this.everReady = true;
    this.loop.start();
    await this.heartbeat();
    this.sweep = setInterval(() => void this.heartbeatAndReap(), this.timing.sweepIntervalMs);
    this.sweep.unref();
    this.log.info({ node: this.nodeId, engine: redactClusterUrl(this.url) }, "joined the cluster");
  }

  async claim(key: string, bucket: string, perAddressCap: number): Promise<boolean> {
    this.work.claims++;
    return (await this.run("claim", [this.nodeId, key, bucket, perAddressCap])) === 1;
  }

  async declare(change: Parameters<ClusterBus["declare"]>[0]): Promise<DeclareResult> {
    this.work.declares++;
    const growth = change.added.length - change.removed.length;
    const reply = (await this.run("declare", [
      this.nodeId,
      change.key,
      change.bucket,
      change.perAddressCap,
      change.reset ? 1 : 0,
      growth,
      change.added.length,
      ...change.added,
      ...change.removed,
    ])) as [number, string[]?, string[]?, string[]?];
    const held: ClusterEnvelope[] = [];
    for (const text of reply[3] ?? []) {
      const message = parseNodeMessage(text);
      if (message?.t === "e") held.push(message);
    }
    return { ok: reply[0] === 1, online: reply[1] ?? [], offline: reply[2] ?? [], held };
  }

  async leave(left: Parameters<ClusterBus["leave"]>[0]): Promise<void> {
    this.work.leaves++;
    await this.run("leave", [
      this.nodeId,
      left.key,
      left.bucket,
      left.declared.length,
      left.moving ? 1 : 0,
      ...left.declared,
    ]);
  }

  async markMoving(keys: readonly string[]): Promise<void> {
    if (keys.length === 0) return;
    this.batch.hold();
    const pipeline = this.commands.pipeline();
    for (const key of keys) pipeline.set(`tb:mv:${key}`, "1", "PX", this.timing.holdMs);
    await pipeline.exec();
  }

  async route(envelope: ClusterEnvelope, checkMutual: boolean): Promise<RouteResult> {
    this.work.routes++;
    const began = TRACE ? traceNow() : 0;
    const payload = JSON.stringify({ t: "e", ...envelope });
    const result = await this.run("route", [
      this.nodeId,
      envelope.to,
      envelope.from,
      payload,
      checkMutual ? 1 : 0,
      this.timing.holdMs,
      this.timing.heldPerKey,
      this.timing.heldPerWindow,
    ]);
    if (TRACE) traceRoute(traceNow() - began);
    return ROUTE_RESULTS[Number(result)] ?? "undeliverable";
  }

  async onlineOf(key: string, declared: readonly string[]): Promise<string[]> {
    if (declared.length === 0) return [];
    this.work.onlineOf++;
    return (await this.run("onlineOf", [key, ...declared])) as string[];
  }

  tellUndeliverable(node: string, to: string, peer: string): void {
    this.batch.hold();
    this.commands
      .publish(this.channel(node), JSON.stringify({ t: "u", to, peer }))
      .catch((error: Error) => this.log.debug({ err: error.message }, "cannot tell undeliverable"));
  }

  async restore(members: readonly ClusterMember[]): Promise<void> {
    this.activity = `restore of ${members.length}`;
    try {
      await this.restoreNow(members);
    } finally {
      this.activity = "";
    }
  }

  private async restoreNow(members: readonly ClusterMember[]): Promise<void> {
    await this.run("prune", [this.nodeId, ...members.map((member) => member.key)]);
    // In slices, so that one script does not hold Redis for long.
    for (let i = 0; i < members.length; i += 500) {
      const slice = members.slice(i, i + 500);
      const args: Array<string | number> = [this.nodeId, slice.length];
      for (const member of slice)
        args.push(member.key, member.bucket, member.declared.length, ...member.declared);
      await this.run("restore", args);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweep);
    this.loop.stop();
    try {
      // Gone at once: the others need not wait for the heartbeat to expire.
      await this.commands.del(`tb:alive:${this.nodeId}`);
      await this.reap(true);
    } catch (error) {
      this.log.warn({ err: (error as Error).message }, "could not leave the cluster cleanly");
    }
    this.subscriber.disconnect();
    this.beat.disconnect();
    await this.commands.quit().catch(() => this.commands.disconnect());
  }

  private channel(node: string): string {
    return `tb:n:${node}`;
  }

  /**
   * Resolves true if this node was not a member of the cluster: first start, or reaped meanwhile. On
   * its own connection, so that a busy command stream does not delay it, unless told otherwise.
   */
  private async heartbeat(connection: Redis = this.beat): Promise<boolean> {
    const sentAt = performance.now();
    const sinceLast = this.lastBeatAt ? sentAt - this.lastBeatAt : 0;
    this.lastBeatAt = sentAt;
    const replies = await connection
      .multi()
      .set(`tb:alive:${this.nodeId}`, "1", "PX", this.timing.heartbeatTtlMs)
      .sadd("tb:nodes", this.nodeId)
      .del(`tb:late:${this.nodeId}`)
      // Reaped meanwhile: what is left of its keys is its own again (it writes them all again).
      .srem("tb:reaping", this.nodeId)
      .exec();
    const replyMs = performance.now() - sentAt;
    // Late by the timer (this loop) or by the reply (the engine): which one lapses the heartbeat.
    if (sinceLast > this.timing.heartbeatTtlMs / 2 || replyMs > this.timing.heartbeatTtlMs / 2)
      this.log.warn(
        { node: this.nodeId, sinceLastMs: Math.round(sinceLast), replyMs: Math.round(replyMs) },
        "cluster heartbeat late",
      );
    return replies?.[1]?.[1] === 1;
  }

  private async heartbeatAndReap(): Promise<void> {
    if (this.closed || this.rejoining || this.commands.status !== "ready" || this.beat.status !== "ready")
      return;
    try {
      if (await this.heartbeat()) {
        // Another node reaped us (frozen past the grace, or our subscriber dropped while the heartbeat
        // lapsed): our keys went offline in the engine while their connections are open here.
        this.log.warn({ node: this.nodeId }, "this node was taken for dead: writing its connections again");
        this.handlers?.reconnected();
      }
      await this.reap(false);
    } catch (error) {
      this.log.debug({ err: (error as Error).message }, "cluster sweep failed");
    }
  }

  /**
   * Takes dead nodes' keys offline, REAP_BATCH keys a script: the engine serves other commands (the
   * heartbeats too) between batches. One sweep at a time does it.
   */
  private async reap(leaving: boolean): Promise<void> {
    if (this.reaping && !leaving) return this.reaping;
    const previous = this.reaping;
    const run = (async () => {
      await previous?.catch(() => {});
      for (let more = true; more && (leaving || !this.closed); ) {
        const args = [this.nodeId, this.timing.holdMs, this.timing.lateGraceMs, leaving ? 1 : 0, REAP_BATCH];
        const [dead, again] = (await this.run("reap", args)) as [string[], number];
        if (dead.length > 0) this.log.info({ dead }, "nodes left the cluster: their clients go offline");
        more = again === 1;
      }
    })();
    this.reaping = run;
    try {
      await run;
    } finally {
      if (this.reaping === run) this.reaping = undefined;
    }
  }

  private onMessage(text: string): void {
    this.work.received++;
    const message = parseNodeMessage(text);
    const handlers = this.handlers;
    if (!message || !handlers) return;
    switch (message.t) {
      case "p":
        handlers.presence(message.to, message.peer, message.on);
        return;
      case "e":
        stamp(message.envelope);
        handlers.envelope({
          to: message.to,
          from: message.from,
          src: message.src,
          envelope: message.envelope,
        });
        return;
      case "r":
        handlers.replaced(message.key);
        return;
      case "u":
        handlers.undeliverable(message.to, message.peer);
        return;
    }
  }

  /**
   * Loaded up front: a NOSCRIPT answer and the EVAL after it would let a later command overtake,
   * and the scripts' order is what keeps a key's records right.
   */
  private async loadScripts(): Promise<void> {
    for (const script of Object.values(SCRIPTS)) await this.commands.script("LOAD", script.source);
  }

  /** EVALSHA; EVAL if Redis lost the script (it restarted and this command was queued before the reload). */
  private async run(name: keyof typeof SCRIPTS, args: Array<string | number>): Promise<unknown> {
    const script = SCRIPTS[name];
    this.batch.hold();
    try {
      return await this.commands.evalsha(script.sha, 0, ...args);
    } catch (error) {
      if (!(error as Error).message.startsWith("NOSCRIPT")) throw error;
      return await this.commands.eval(script.source, 0, ...args);
    }
  }
}

function parseNodeMessage(text: string): NodeMessage | undefined {
  try {
    const message = JSON.parse(text) as NodeMessage;
    return typeof message === "object" && message !== null ? message : undefined;
  } catch {
    return undefined;
  }
}

/** A connection to the engine, not yet connected (start connects it). */
function openConnection(engine: ClusterEngine, connectionName: string): Redis {
  const shared: RedisOptions = {
    lazyConnect: true,
    // Reconnect for ever, at most every 2 s: the engine restarting must not stop the node.
    retryStrategy: (times: number) => Math.min(100 * times, 2_000),
    maxRetriesPerRequest: null,
    // While Redis is away a command fails at once (a login is closed 4011 to try elsewhere, an
    // envelope is undeliverable) rather than queue without bound in this process.
    enableOfflineQueue: false,
    connectionName,
  };
  if (engine.kind === "redis") return new Redis(engine.url, shared);
  return new Redis(sentinelOptions(engine, shared));
}

/** What to do when the Sentinels refused a node that gave them no password of their own. */
function authHint(url: string, error: Error): string {
  const engine = parseClusterEngine(url);
  const refusedBySentinels = /sentinels are unreachable.*(NOAUTH|WRONGPASS)/is.test(error.message);
  if (engine.kind !== "sentinel" || engine.sentinelPassword || !refusedBySentinels) return "";
  return " (if the Sentinels require a password of their own, add ?sentinel_password=PASSWORD to the URL)";
}

/**
 * ioredis's own Sentinel client: it asks the Sentinels for the master at every (re)connection and
 * checks the node it reaches is a master, so a reconnection after a failover lands on the promoted one.
 */
export function sentinelOptions(
  engine: Extract<ClusterEngine, { kind: "sentinel" }>,
  shared: RedisOptions,
): RedisOptions {
  return {
    ...shared,
    sentinels: engine.sentinels,
    name: engine.masterName,
    ...(engine.username ? { username: engine.username } : {}),
    ...(engine.password ? { password: engine.password } : {}),
    ...(engine.sentinelUsername ? { sentinelUsername: engine.sentinelUsername } : {}),
    ...(engine.sentinelPassword ? { sentinelPassword: engine.sentinelPassword } : {}),
    // Until the Sentinels name the promoted replica (2.2-2.3 s after a SIGKILL here, 0.9 s after the
    // replica took the role) they name the dead master, which refuses at once: ask again every 0.2 s at
    // most, so that a node is on the new master within 0.2 s of the Sentinels naming it.
    retryStrategy: (times: number) => Math.min(100 * times, 200),
    // A master demoted with its connections open answers writes READONLY (no write happened): find the
    // master again and send the command there.
    reconnectOnError: (error: Error) => (error.message.startsWith("READONLY") ? 2 : false),
    // Sentinel's +switch-master closes the connections. Needed when the master's host goes dark: no
    // RST closes them then, and commands would wait on a dead socket; also for a manual failover, or a
    // master cut off from the Sentinels but not from this node.
    failoverDetector: true,
    // A dark master never answers the FIN of that close: give up on it after 0.2 s, not ioredis's 2 s.
    disconnectTimeout: 200,
    // TLS to the data nodes the Sentinels name and to the Sentinels themselves.
    ...(engine.tls ? { tls: {}, enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
  };
}
