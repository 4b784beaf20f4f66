// Helpers for the introduction server tests: a real server process, a raw protocol client, keys.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import type { EventEmitter } from "node:events";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { type ServerMessage, serverMessageSchema } from "../../src/signalling/protocol.js";
import {
  authProof,
  publicKeyOf,
  x25519,
  x25519PrivateKeyObject,
} from "../../src/signalling/signalling-crypto.js";

export const projectRoot = fileURLToPath(new URL("../..", import.meta.url));

export interface TestKey {
  privateKey: Buffer;
  publicKey: string;
}

export function newKey(): TestKey {
  const privateKey = randomBytes(32);
  return { privateKey, publicKey: publicKeyOf(privateKey) };
}

/** Resolves with the arguments of the first `event` that passes `filter`; rejects after `timeoutMs`. */
export function waitForEvent<Args extends unknown[]>(
  emitter: EventEmitter,
  event: string,
  filter: (...args: Args) => boolean = () => true,
  timeoutMs = 5_000,
): Promise<Args> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, listener);
      reject(new Error(`timed out after ${timeoutMs} ms waiting for "${event}"`));
    }, timeoutMs);
    const listener = (...args: unknown[]) => {
      if (!filter(...(args as Args))) return;
      clearTimeout(timer);
      emitter.off(event, listener);
      resolve(args as Args);
    };
    emitter.on(event, listener);
  });
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export interface Closed {
  code: number;
  reason: string;
}

/** Speaks the wire protocol by hand, to send what a well-behaved client never would. */
export class RawIntroConnection {
  readonly received: ServerMessage[] = [];
  readonly closed: Promise<Closed>;
  private waiters: Array<() => void> = [];

  private constructor(readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => {
      ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    });
    ws.on("error", () => {});
    ws.on("message", (data) => {
      const parsed = serverMessageSchema.safeParse(JSON.parse(data.toString()));
      if (parsed.success) this.received.push(parsed.data);
      for (const wake of this.waiters.splice(0)) wake();
    });
  }

  static async open(
    url: string,
    options: { ca?: Buffer; autoPong?: boolean } = {},
  ): Promise<RawIntroConnection> {
    const ws = new WebSocket(url, {
      perMessageDeflate: false,
      ca: options.ca,
      autoPong: options.autoPong ?? true,
    });
    const connection = new RawIntroConnection(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
    return connection;
  }

  /** The first received message of `type` not yet taken, waiting for it if need be. */
  async next<T extends ServerMessage["type"]>(
    type: T,
    timeoutMs = 5_000,
  ): Promise<Extract<ServerMessage, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const index = this.received.findIndex((message) => message.type === type);
      if (index >= 0) return this.received.splice(index, 1)[0] as Extract<ServerMessage, { type: T }>;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} message within ${timeoutMs} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  /** Answers the challenge for `claimedKey`, proving with `provingKey` (the same key when honest). */
  async authenticate(provingKey: Buffer, claimedKey = publicKeyOf(provingKey)) {
    const challenge = await this.next("challenge");
    const serverKey = Buffer.from(challenge.serverKey, "base64");
    const shared = x25519(x25519PrivateKeyObject(provingKey), serverKey);
    const proof = authProof(
      shared,
      serverKey,
      Buffer.from(challenge.nonce, "base64"),
      Buffer.from(claimedKey, "base64"),
    );
    this.send({ type: "auth", version: 1, publicKey: claimedKey, proof: proof.toString("base64") });
  }

  close(): void {
    this.ws.terminate();
  }
}

export interface SpawnedIntroServer {
  process: ChildProcess;
  url: string;
  port: number;
  stunPort?: number;
  stdout: string[];
  stderr: string[];
  exited: Promise<number | null>;
  /** SIGTERM (or `signal`) by PID, and wait for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Runs `node --import tsx intro-server/main.ts ARGS` and waits for its "listening" line. */
export function spawnIntroServerProcess(args: string[], timeoutMs = 15_000): Promise<SpawnedIntroServer> {
  const child = spawn(process.execPath, ["--import", "tsx", "intro-server/main.ts", ...args], {
    cwd: projectRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TUNNELBORE_LOG: process.env.TUNNELBORE_LOG ?? "warn" },
  });
  const stdout: string[] = [];
  const stderr: string[] = [];
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.stderr!.on("data", (chunk: Buffer) => stderr.push(chunk.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`intro server did not start: ${stderr.join("")}`));
    }, timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`intro server exited with ${code}: ${stderr.join("")}`));
    });
    child.stdout!.on("data", (chunk: Buffer) => {
      stdout.push(chunk.toString());
      const match = /listening on (wss?:\/\/\S+?:(\d+))(?: \(STUN udp \S+:(\d+)\))?/.exec(stdout.join(""));
      if (!match) return;
      clearTimeout(timer);
      resolve({
        process: child,
        url: match[1]!,
        port: Number(match[2]),
        stunPort: match[3] ? Number(match[3]) : undefined,
        stdout,
        stderr,
        exited,
        stop: async (signal: NodeJS.Signals = "SIGTERM") => {
          if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
          return exited;
        },
      });
    });
  });
}

/** Runs the CLI to completion (for usage errors and the like). */
export function runIntroServerCli(
  args: string[],
  timeoutMs = 15_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", "tsx", "intro-server/main.ts", ...args], {
    cwd: projectRoot,
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, TUNNELBORE_LOG: "warn" },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  child.stderr.on("data", (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  return new Promise((resolve) => {
    const timer = setTimeout(() => process.kill(child.pid!, "SIGKILL"), timeoutMs);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
