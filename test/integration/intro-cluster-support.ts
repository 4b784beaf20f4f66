// Helpers for the intro-server cluster tests: a redis-server of our own on a free port (by PID), nodes
// in this process with short heartbeats, and a protocol client that moves to another node on 4011.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { WebSocket } from "ws";
import type { ClusterTiming } from "../../intro-server/cluster/redis-cluster-bus.js";
import { type IntroServer, type IntroServerOptions, startIntroServer } from "../../intro-server/server.js";
import { createLogger } from "../../src/log.js";
import { CloseCode, type SealedEnvelope, type ServerMessage } from "../../src/signalling/protocol.js";
import { freePort } from "../support/free-port.js";
import { redisServerArgs } from "../support/redis-server-args.js";
import { writeSelfSignedCertificate } from "../support/self-signed-certificate.js";
import {
  RawIntroConnection,
  type SpawnedIntroServer,
  sleep,
  spawnIntroServerProcess,
  type TestKey,
} from "./intro-support.js";

export { freePort };

export const silent = createLogger("test", "silent");

/** Heartbeats short enough for a test to see a dead node's clients go within a couple of seconds. */
export const FAST_TIMING = { heartbeatTtlMs: 1_200, sweepIntervalMs: 300, lateGraceMs: 4_000, holdMs: 5_000 };

export interface TestRedis {
  url: string;
  port: number;
  process: ChildProcess;
  /** Stops it (SIGTERM by PID, no snapshot: its data is gone) and waits for the exit. */
  stop(): Promise<void>;
}

/** A redis-server of the test's own, in memory only, on a free loopback port. */
export async function startRedis(port?: number): Promise<TestRedis> {
  let output = "";
  const { port: chosen, child } = await onOwnPort(
    (candidate) => {
      output = "";
      const started = spawn("redis-server", redisServerArgs(candidate, ["--loglevel", "warning"]), {
        stdio: ["ignore", "pipe", "pipe"],
      });
      started.stdout!.on("data", (chunk: Buffer) => {
        output += chunk.toString();
      });
      return started;
    },
    (candidate) => infoOf(quietClient({ port: candidate }), "server"),
    port,
    () => output,
  );
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once("exit", () => resolve());
  });
  return {
    url: `redis://127.0.0.1:${chosen}`,
    port: chosen,
    process: child,
    stop: async () => {
      if (child.exitCode === null) child.kill("SIGKILL");
      await exited;
    },
  };
}

/** A node in a process of its own (the default timing: a 3 s heartbeat), on a free loopback port. */
export function spawnClusterNode(redisUrl: string, extra: string[] = []): Promise<SpawnedIntroServer> {
  return spawnIntroServerProcess(["--listen", "127.0.0.1:0", "--no-stun", "--cluster", redisUrl, ...extra]);
}

export function startNode(
  url: string,
  options: IntroServerOptions = {},
  timing: Partial<ClusterTiming> = FAST_TIMING,
): Promise<IntroServer> {
  return startIntroServer({
    port: 0,
    stun: false,
    logger: silent,
    ...options,
    cluster: { url, timing },
  });
}

/** An envelope the server relays as is; `c` carries a sequence number the test reads back. */
export function envelopeOf(sequence: number): SealedEnvelope {
  return { n: randomBytes(24).toString("base64"), c: Buffer.from(`seq:${sequence}`).toString("base64") };
}

export function sequenceOf(envelope: SealedEnvelope): number {
  return Number(Buffer.from(envelope.c, "base64").toString().slice(4));
}

/** Authenticates, waits for welcome and declares `peers`. */
export async function login(url: string, key: TestKey, peers: TestKey[]): Promise<RawIntroConnection> {
  const raw = await RawIntroConnection.open(url);
  await raw.authenticate(key.privateKey);
  await raw.next("welcome");
  raw.send({ type: "peers", op: "replace", peers: peers.map((peer) => peer.publicKey) });
  return raw;
}

/**
 * The client side of the drain contract: on 4011 it reconnects at once to the next server, and holds
 * what it sends while it has no connection. Counts what arrives and what the server refused.
 */
export class MovingClient {
  readonly received: number[] = [];
  undeliverable = 0;
  moves = 0;
  readonly closes: number[] = [];
  private raw: RawIntroConnection | undefined;
  private online = false;
  private stopped = false;
  private readonly outbox: SealedEnvelope[] = [];
  private index: number;

  constructor(
    private readonly urls: () => string[],
    private readonly key: TestKey,
    private readonly peer: TestKey,
    start: number,
  ) {
    this.index = start;
  }

  get isOnline(): boolean {
    return this.online;
  }

  async connect(): Promise<void> {
    while (!this.stopped) {
      const urls = this.urls();
      const url = urls[this.index % urls.length]!;
      try {
        const raw = await RawIntroConnection.open(url);
        raw.ws.on("message", (data) => this.onMessage(JSON.parse(data.toString()) as ServerMessage));
        await raw.authenticate(this.key.privateKey);
        await raw.next("welcome");
        raw.send({ type: "peers", op: "replace", peers: [this.peer.publicKey] });
        this.raw = raw;
        this.online = true;
        for (const envelope of this.outbox.splice(0)) this.transmit(envelope);
        void raw.closed.then(({ code }) => {
          this.online = false;
          this.closes.push(code);
          if (this.stopped) return;
          this.moves++;
          if (code === CloseCode.serverShutdown) this.index++;
          void this.connect();
        });
        return;
      } catch {
        this.index++; // that server is down: the next one
        await sleep(50);
      }
    }
  }

  /** Sent at once if the connection is open; else held (a closing WebSocket would drop it). */
  send(envelope: SealedEnvelope): void {
    if (this.online && this.raw?.ws.readyState === WebSocket.OPEN) this.transmit(envelope);
    else this.outbox.push(envelope);
  }

  stop(): void {
    this.stopped = true;
    this.raw?.close();
  }

  private transmit(envelope: SealedEnvelope): void {
    this.raw!.send({ type: "send", to: this.peer.publicKey, envelope });
  }

  private onMessage(message: ServerMessage): void {
    if (message.type === "envelope") this.received.push(sequenceOf(message.envelope));
    else if (message.type === "undeliverable") this.undeliverable++;
  }
}

/** The master's name the test Sentinels monitor. */
export const SENTINEL_MASTER = "tbmaster";

/** A data node of a Sentinel setup, stopped by PID. */
export interface SentinelDataNode {
  port: number;
  process: ChildProcess;
  kill(signal?: NodeJS.Signals): Promise<void>;
}

export interface TestSentinelRedis {
  /**
   * redis+sentinel://:PASSWORD@127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/tbmaster (rediss+ with TLS;
   * ?sentinel_password=... when the Sentinels require their own).
   */
  url: string;
  password: string;
  /** The Sentinels' own password, when started with `sentinelPassword`. */
  sentinelPassword?: string;
  master: SentinelDataNode;
  replica: SentinelDataNode;
  sentinelPorts: number[];
  /** With TLS: the self-signed certificate every process serves (for 127.0.0.1), to trust. */
  certFile?: string;
  /**
   * The port the Sentinels name as master now, asked of the first Sentinel that answers. A Sentinel
   * other than a failover's leader learns the new master from hello messages (every 2 s): poll it.
   */
  masterPort(): Promise<number | undefined>;
  /** A connected one-shot client of the data node on `port` (with the password and TLS). */
  dataClient(port: number): Promise<Redis>;
  /** Ends every process it started (SIGKILL by PID) and removes its directory. */
  stop(): Promise<void>;
}

/**
 * One master, one replica and three Sentinels (quorum 2), each a process of the test's own on a free
 * loopback port, with a password (the URL's user part) and their files in a temp dir. The Sentinels
 * take a master for down after 1 s (`downAfterMs`); the replica is promoted a few seconds after the
 * master dies.
 * `tls`: every process listens with TLS only, and replicates and monitors over TLS.
 */
export async function startSentinelRedis(
  options: { tls?: boolean; downAfterMs?: number; sentinelPassword?: boolean } = {},
): Promise<TestSentinelRedis> {
  const dir = await mkdtemp(join(tmpdir(), "tbt-sentinel-"));
  const password = `pw-${randomBytes(8).toString("hex")}`;
  // The Sentinels' own, when they require one (requirepass, and sentinel-pass to reach each other).
  const sentinelPassword = options.sentinelPassword ? `spw-${randomBytes(8).toString("hex")}` : undefined;
  const started: Array<{ process: ChildProcess; exited: Promise<void> }> = [];
  const stop = async () => {
    for (const { process: child } of started)
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await Promise.all(started.map(({ exited }) => exited));
    await rm(dir, { recursive: true, force: true });
  };
  const launch = (args: string[]): ChildProcess => {
    const child = spawn("redis-server", args, { cwd: dir, stdio: "ignore" });
    started.push({ process: child, exited: new Promise((resolve) => child.once("exit", () => resolve())) });
    return child;
  };
  try {
    const certFile = options.tls ? join(dir, "cert.pem") : undefined;
    const keyFile = join(dir, "key.pem");
    if (certFile) selfSignedCertificate(certFile, keyFile);
    const ca = certFile ? await readFile(certFile) : undefined;
    // [directive, value...] for a port: plain, or TLS only (port 0) with the certificate.
    const listen = (port: number): string[][] =>
      certFile
        ? [
            ["port", "0"],
            ["tls-port", String(port)],
            ["tls-cert-file", certFile],
            ["tls-key-file", keyFile],
            ["tls-ca-cert-file", certFile],
            ["tls-auth-clients", "no"],
            ["tls-replication", "yes"],
          ]
        : [["port", String(port)]];
    const client = (port: number, auth?: string) => quietClient({ port, password: auth, ca });
    const dataClient = async (port: number) => {
      const connection = client(port, password);
      await connection.connect();
      return connection;
    };
    const info = (port: number, section: string) => infoOf(client(port, password), section);
    const dataNode = async (extra: string[]): Promise<SentinelDataNode> => {
      const auth = ["--requirepass", password, "--masterauth", password, "--dir", dir];
      const { port, child } = await onOwnPort(
        (candidate) => {
          const tls = listen(candidate).flatMap(([directive, ...values]) => [`--${directive}`, ...values]);
          return launch(redisServerArgs(candidate, ["--loglevel", "warning", ...auth, ...tls, ...extra]));
        },
        (candidate) => info(candidate, "server"),
      );
      const exited = started.find((s) => s.process === child)!.exited;
      return {
        port,
        process: child,
        kill: async (signal = "SIGKILL") => {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
          await exited;
        },
      };
    };
    const master = await dataNode([]); // answering: dataNode waited for its INFO
    const replica = await dataNode(["--replicaof", "127.0.0.1", String(master.port)]);
    await until(async () => (await info(replica.port, "replication")).includes("master_link_status:up"));
    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const conf = join(dir, `sentinel-${i}.conf`);
      const { port } = await onOwnPort(
        (candidate) => {
          writeFileSync(conf, sentinelConf(candidate));
          return launch([conf, "--sentinel", "--loglevel", "warning"]);
        },
        (candidate) => infoOf(client(candidate, sentinelPassword), "server"),
      );
      sentinelPorts.push(port);
    }
    function sentinelConf(port: number): string {
      const lines = [
        ...listen(port).map((directive) => directive.join(" ")),
        "bind 127.0.0.1",
        `dir ${dir}`,
        `sentinel monitor ${SENTINEL_MASTER} 127.0.0.1 ${master.port} 2`,
        `sentinel auth-pass ${SENTINEL_MASTER} ${password}`,
        `sentinel down-after-milliseconds ${SENTINEL_MASTER} ${options.downAfterMs ?? 1_000}`,
        `sentinel failover-timeout ${SENTINEL_MASTER} 3000`,
        `sentinel parallel-syncs ${SENTINEL_MASTER} 1`,
        ...(sentinelPassword
          ? [`requirepass ${sentinelPassword}`, `sentinel sentinel-pass ${sentinelPassword}`]
          : []),
      ];
      return `${lines.join("\n")}\n`;
    }
    const askSentinels = async (question: (sentinel: Redis) => Promise<number | undefined>) => {
      for (const port of sentinelPorts) {
        const sentinel = client(port, sentinelPassword);
        try {
          await sentinel.connect();
          const answer = await question(sentinel);
          if (answer !== undefined) return answer;
        } catch {
          // that Sentinel is away: ask the next
        } finally {
          sentinel.disconnect();
        }
      }
      return undefined;
    };
    // A failover needs the Sentinels to know the replica and each other (hello messages, every 2 s).
    for (const port of sentinelPorts)
      await until(async () => {
        const sentinel = client(port, sentinelPassword);
        try {
          await sentinel.connect();
          const replicas = (await sentinel.call("SENTINEL", "REPLICAS", SENTINEL_MASTER)) as unknown[];
          const others = (await sentinel.call("SENTINEL", "SENTINELS", SENTINEL_MASTER)) as unknown[];
          return replicas.length === 1 && others.length === 2;
        } finally {
          sentinel.disconnect();
        }
      }, 20_000);
    const hosts = sentinelPorts.map((port) => `127.0.0.1:${port}`).join(",");
    return {
      url:
        `${certFile ? "rediss" : "redis"}+sentinel://:${password}@${hosts}/${SENTINEL_MASTER}` +
        (sentinelPassword ? `?sentinel_password=${sentinelPassword}` : ""),
      password,
      ...(sentinelPassword ? { sentinelPassword } : {}),
      master,
      replica,
      sentinelPorts,
      certFile,
      masterPort: () =>
        askSentinels(async (sentinel) => {
          const reply = (await sentinel.call("SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)) as
            | [string, string]
            | null;
          return reply ? Number(reply[1]) : undefined;
        }),
      dataClient,
      stop,
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

/** A certificate for 127.0.0.1 that is its own CA. */
function selfSignedCertificate(certFile: string, keyFile: string): void {
  writeSelfSignedCertificate(
    { cert: certFile, key: keyFile },
    { cn: "127.0.0.1", subjectAltName: "IP:127.0.0.1" },
  );
}

/** A one-shot client of a data node or Sentinel: no reconnection, its failures thrown, not emitted. */
export function quietClient(options: { port: number; password?: string; ca?: Buffer }): Redis {
  const { ca, ...rest } = options;
  const client = new Redis({
    host: "127.0.0.1",
    lazyConnect: true,
    retryStrategy: () => null,
    ...rest,
    ...(ca ? { tls: { ca } } : {}),
  });
  client.on("error", () => {});
  return client;
}

/** INFO `section` through `client` (connected for it, then closed). */
async function infoOf(client: Redis, section: string): Promise<string> {
  try {
    await client.connect();
    return await client.info(section);
  } finally {
    client.disconnect();
  }
}

/**
 * Starts a redis-server (or Sentinel) on a free port and waits until the port answers as that very
 * process (INFO's process_id). A port freePort released can be taken by another test's server before
 * ours binds it: ours then exits while the port still answers, and two test files shared one Redis
 * (a CLIENT KILL in one cut the other's subscribers). Another port is tried then, unless `fixed` was
 * asked for.
 */
async function onOwnPort(
  start: (port: number) => ChildProcess,
  info: (port: number) => Promise<string>,
  fixed?: number,
  output: () => string = () => "",
): Promise<{ port: number; child: ChildProcess }> {
  for (let attempt = 1; ; attempt++) {
    const port = fixed ?? (await freePort());
    const child = start(port);
    const deadline = Date.now() + 10_000;
    let verdict: "ours" | "taken" | "timeout" = "timeout";
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        verdict = "taken";
        break;
      }
      const text = await info(port).catch(() => "");
      const pid = /process_id:(\d+)/.exec(text)?.[1];
      if (pid !== undefined) {
        verdict = Number(pid) === child.pid ? "ours" : "taken";
        break;
      }
      await sleep(50);
    }
    if (verdict === "ours") return { port, child };
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    if (fixed !== undefined || attempt >= 5) {
      throw new Error(
        `redis-server on ${port}: ${verdict === "taken" ? "port taken" : "no answer"}: ${output()}`,
      );
    }
  }
}

/** Polls `check` (a throw counts as false) until it holds, or throws after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (Date.now() > deadline) throw new Error(`not so after ${timeoutMs} ms: ${check.toString()}`);
    await sleep(50);
  }
}
