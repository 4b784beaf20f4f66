// A Debian coturn on loopback for integration tests (TURN REST shared secret, its own relay port
// range), started by PID and ended by PID. The namespace lab has its own (test/lab/coturn.ts).
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { waitFor } from "./wait-for.js";

export interface LoopbackCoturn {
  readonly port: number;
  readonly secret: string;
  /** The ports its relayed addresses take (min-port, max-port): datagrams from them were relayed. */
  readonly relayPorts: readonly [number, number];
  /** Its log (the last 200 kB), e.g. with "verbose" among the extra lines. */
  readonly output: () => string;
  /** SIGKILL and start again on the same port: every allocation, permission and nonce is forgotten. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export interface LoopbackCoturnOptions {
  /** Configuration lines added to the defaults (e.g. "verbose", lifetimes). */
  extra?: string[];
  /** How long it may take to answer its first STUN request (default 10 s). */
  stunTimeoutMs?: number;
}

async function freeUdpPort(): Promise<number> {
  const socket = createSocket("udp4");
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const { port } = socket.address();
  await new Promise<void>((r) => socket.close(() => r()));
  return port;
}

/** Resolves once a STUN binding request to 127.0.0.1:port is answered. */
async function waitForStun(port: number, timeoutMs: number): Promise<void> {
  const socket = createSocket("udp4");
  const request = Buffer.alloc(20);
  request.writeUInt16BE(0x0001, 0);
  request.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(request, 8);
  let answered = false;
  socket.on("message", (msg) => {
    answered ||= msg.readUInt16BE(0) === 0x0101;
  });
  try {
    await waitFor(
      () => {
        socket.send(request, port, "127.0.0.1");
        return answered;
      },
      { what: `coturn answering STUN on ${port}`, timeoutMs, intervalMs: 100 },
    );
  } finally {
    socket.close();
  }
}

export async function startLoopbackCoturn(options: LoopbackCoturnOptions = {}): Promise<LoopbackCoturn> {
  const stunTimeoutMs = options.stunTimeoutMs ?? 10_000;
  const dir = await mkdtemp(join(tmpdir(), "tbt-coturn-"));
  const port = await freeUdpPort();
  const minPort = 20000 + Math.floor(Math.random() * 400) * 100;
  const secret = randomBytes(16).toString("hex");
  const config = [
    "listening-ip=127.0.0.1",
    "relay-ip=127.0.0.1",
    `listening-port=${port}`,
    `min-port=${minPort}`,
    `max-port=${minPort + 99}`,
    "use-auth-secret",
    `static-auth-secret=${secret}`,
    "realm=tunnelbore.test",
    "no-cli",
    "no-tls",
    "no-dtls",
    "allow-loopback-peers",
    "no-multicast-peers",
    `userdb=${join(dir, "turndb")}`,
    `pidfile=${join(dir, "turnserver.pid")}`,
    "log-file=stdout",
    "simple-log",
    "no-software-attribute",
    ...(options.extra ?? []),
  ];
  await writeFile(join(dir, "turnserver.conf"), `${config.join("\n")}\n`, { mode: 0o600 });
  let out = "";
  const collect = (chunk: Buffer) => {
    out = (out + chunk.toString()).slice(-200_000);
  };
  const launch = () => {
    const child: ChildProcess = spawn("turnserver", ["-c", join(dir, "turnserver.conf")], {
      stdio: ["ignore", "pipe", "pipe"],
    });
    child.stdout?.on("data", collect);
    child.stderr?.on("data", collect);
    return { child, exited: new Promise<void>((r) => child.once("exit", () => r())) };
  };
  let running = launch();
  const end = async (signal: NodeJS.Signals) => {
    const { child, exited } = running;
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal); // this PID only
      const timer = setTimeout(() => child.kill("SIGKILL"), 3000);
      await exited;
      clearTimeout(timer);
    }
  };
  const stop = async () => {
    await end("SIGTERM");
    await rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForStun(port, stunTimeoutMs);
  } catch (err) {
    await stop();
    throw new Error(`${String(err)}\n${out}`);
  }
  return {
    port,
    secret,
    relayPorts: [minPort, minPort + 99],
    output: () => out,
    async restart() {
      await end("SIGKILL");
      running = launch();
      await waitForStun(port, stunTimeoutMs);
    },
    stop,
  };
}
