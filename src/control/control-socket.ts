import { rm } from "node:fs/promises";
import { connect, createServer, type Server } from "node:net";
import { dirname, join } from "node:path";
import { ConfigError, RuntimeError } from "../errors.js";
import { ensureSecureDirectory } from "../files/secure-directory.js";
import type { IceServersAnswer } from "../netcheck/ice-servers.js";
import { formatPingRequest, type PingAnswer, type PingRequest, parsePingRequest } from "./path-probe.js";
import type { StatusReport } from "./status.js";

export const DEFAULT_RUN_DIR = "/run/tunnelbore";

export function controlSocketPath(runDir: string, interfaceName: string): string {
  return join(runDir, `${interfaceName}.sock`);
}

const MAX_REQUEST = 256;

/** What `tunnelbore release` gets back. */
export interface ReleaseAnswer {
  /** Peers whose real endpoint WireGuard got back. */
  restored: number;
}

/** The commands `tunnelbore run` answers on its control socket. */
export interface ControlHandlers {
  status(): StatusReport | Promise<StatusReport>;
  /** Gives WireGuard its real endpoints back and leaves them alone until the interface is recreated. */
  release(): Promise<ReleaseAnswer>;
  /** Probes a peer's path once (`tunnelbore ping`: one request per probe). */
  ping?(request: PingRequest): Promise<PingAnswer>;
  /** The STUN/TURN servers and TURN credentials in use (`tunnelbore netcheck`; root only, like the socket). */
  iceServers?(): IceServersAnswer | Promise<IceServersAnswer>;
}

/**
 * The local control socket of `tunnelbore run`: a client writes a command ("status", "release", or
 * "ping KEY TIMEOUT_MS") and a newline, and reads one JSON line. A Unix socket with mode 0600
 * (whatever the umask) in a directory only root (or the owner) can write, so only they can ask, and
 * nobody can swap the socket.
 */
export class ControlServer {
  private server: Server | null = null;

  constructor(
    private readonly path: string,
    private readonly handlers: ControlHandlers,
  ) {}

  async listen(): Promise<void> {
    await ensureSecureDirectory(dirname(this.path), "run directory", 0o755);
    // A stale socket of a process that was killed would make listen fail with EADDRINUSE.
    if (await isAlive(this.path)) {
      throw new ConfigError("already-running", `another tunnelbore already serves ${this.path}`, {
        path: this.path,
      });
    }
    await rm(this.path, { force: true });
    const server = createServer((conn) => {
      let buffered = "";
      conn.setTimeout(5000, () => conn.destroy());
      conn.on("error", () => conn.destroy());
      conn.on("data", (chunk) => {
        buffered += chunk.toString("utf8");
        if (buffered.length > MAX_REQUEST) return void conn.destroy();
        const nl = buffered.indexOf("\n");
        if (nl < 0) return;
        const command = buffered.slice(0, nl).trim();
        void this.answer(command).then((answer) => conn.end(`${JSON.stringify(answer)}\n`));
      });
    });
    // The socket is created 0600 by bind(2) itself: a chmod afterwards would leave a moment in which
    // anyone could connect. Node binds a Unix socket within listen(), so the process's umask is put
    // back at once, before any other code runs.
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      const umask = process.umask(0o177);
      try {
        server.listen(this.path, () => {
          server.off("error", reject);
          resolve();
        });
      } finally {
        process.umask(umask);
      }
    });
    server.on("error", () => undefined);
    this.server = server;
  }

  private async answer(command: string): Promise<unknown> {
    try {
      if (command === "status") return await this.handlers.status();
      if (command === "release") return await this.handlers.release();
      if (command === "ice-servers" && this.handlers.iceServers) return await this.handlers.iceServers();
      if (command.startsWith("ping ") && this.handlers.ping)
        return await this.handlers.ping(parsePingRequest(command));
      return { error: `unknown command "${command.slice(0, 32)}"` };
    } catch (err) {
      return { error: `${command} failed: ${(err as Error).message}` };
    }
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
    await rm(this.path, { force: true });
  }
}

async function isAlive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const conn = connect(path);
    conn.once("connect", () => {
      conn.destroy();
      resolve(true);
    });
    conn.once("error", () => resolve(false));
  });
}

/** Asks a running `tunnelbore run` for its status. */
export function requestStatus(path: string, timeoutMs = 5000): Promise<StatusReport> {
  return request<StatusReport>(path, "status", timeoutMs);
}

/** Asks a running `tunnelbore run` to give WireGuard its real endpoints back (wg-quick's PreDown). */
export function requestRelease(path: string, timeoutMs = 10_000): Promise<ReleaseAnswer> {
  return request<ReleaseAnswer>(path, "release", timeoutMs);
}

/** Asks a running `tunnelbore run` to probe a peer's path once; waits a little longer than the probe. */
export function requestPing(path: string, ping: PingRequest): Promise<PingAnswer> {
  return request<PingAnswer>(path, formatPingRequest(ping), ping.timeoutMs + 2000);
}

/** Asks a running `tunnelbore run` which STUN/TURN servers (and TURN credentials) it uses; unvalidated. */
export function requestIceServers(path: string, timeoutMs = 5000): Promise<object> {
  return request<object>(path, "ice-servers", timeoutMs);
}

async function request<T extends object>(path: string, command: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const conn = connect(path);
    let body = "";
    const timer = setTimeout(() => {
      conn.destroy();
      reject(new RuntimeError("control-timeout", `no answer from ${path} within ${timeoutMs} ms`, { path }));
    }, timeoutMs);
    conn.on("connect", () => conn.write(`${command}\n`));
    conn.on("data", (chunk) => {
      body += chunk.toString("utf8");
    });
    conn.on("end", () => {
      clearTimeout(timer);
      try {
        const parsed = JSON.parse(body) as T | { error: string };
        if ("error" in parsed) reject(new RuntimeError("control-error", parsed.error, { path }));
        else resolve(parsed);
      } catch {
        reject(new RuntimeError("control-bad-answer", `unreadable answer from ${path}`, { path }));
      }
    });
    conn.on("error", (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(
        err.code === "ENOENT" || err.code === "ECONNREFUSED"
          ? new ConfigError(
              "not-running",
              `no tunnelbore run is serving ${path} (is it running? see --interface)`,
              {
                path,
              },
            )
          : new RuntimeError("control-failed", `cannot reach ${path}: ${err.message}`, { path }),
      );
    });
  });
}
