/**
 * The `--metrics HOST:PORT` HTTP server of `run` and `intro-server`: Prometheus text at /metrics, health
 * at /healthz, 404 for anything else. What it serves comes from a MetricsSource; the server only speaks
 * HTTP.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Registry } from "prom-client";
import { ConfigError, RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import { formatEndpoint } from "../proxy/endpoint.js";
import type { MetricsAddress } from "./metrics-address.js";

/** 200 with `text` while serving; 503 with why not otherwise. */
export interface Health {
  healthy: boolean;
  text: string;
}

export interface MetricsSource {
  readonly registry: Registry;
  /** Brings the registry up to date just before a scrape (e.g. from the current status). */
  refresh(): Promise<void>;
  health(): Promise<Health>;
}

/** A scrape or health check that takes longer than this answers 503 (e.g. a worker that does not answer). */
const ANSWER_TIMEOUT_MS = 10_000;

export class MetricsServer {
  private constructor(
    private readonly server: Server,
    /** Where it listens, as HOST:PORT (the port the kernel chose when asked for 0). */
    readonly address: string,
  ) {}

  /** Listens on `address`; a busy or unusable address is a ConfigError naming it (exit 2). */
  static async start(address: MetricsAddress, source: MetricsSource, logger: Logger): Promise<MetricsServer> {
    const log = logger.child({ component: "metrics" });
    // Run by the root parent under privilege separation: the HTTP parser (llhttp) is all it exposes,
    // so requests are kept small and short, and connections few (docs/security.md).
    const server = createServer({ maxHeaderSize: 4096, headersTimeout: 5_000 }, (request, response) => {
      answer(request, response, source).catch((err: unknown) => {
        log.debug({ err }, "metrics request failed");
        if (!response.headersSent) response.writeHead(503, { "content-type": "text/plain; charset=utf-8" });
        response.end(`unavailable: ${err instanceof Error ? err.message : String(err)}\n`);
      });
    });
    // A scraper needs no keep-alive; a stuck client must not hold a socket for long.
    server.keepAliveTimeout = 5_000;
    server.requestTimeout = 10_000;
    server.maxConnections = 32;
    const wanted = formatEndpoint(address);
    await new Promise<void>((resolve, reject) => {
      server.once("error", (err: NodeJS.ErrnoException) => {
        const busy = err.code === "EADDRINUSE";
        reject(
          new ConfigError(
            busy ? "metrics-port-busy" : "metrics-listen",
            `--metrics ${wanted}: cannot listen (${err.code ?? err.message})` +
              (busy ? ": the port is in use; choose another --metrics address" : ""),
            { address: wanted },
            { cause: err },
          ),
        );
      });
      server.listen(address.port, address.host, () => resolve());
    });
    server.on("error", (err) => log.warn({ err }, "metrics server error"));
    const bound = server.address();
    const actual =
      typeof bound === "object" && bound ? formatEndpoint({ host: address.host, port: bound.port }) : wanted;
    log.info({ address: actual }, "serving metrics at /metrics and health at /healthz");
    return new MetricsServer(server, actual);
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

async function answer(
  request: IncomingMessage,
  response: ServerResponse,
  source: MetricsSource,
): Promise<void> {
  const path = (request.url ?? "/").split("?")[0];
  if (request.method !== "GET" && request.method !== "HEAD") {
    response.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
    response.end("method not allowed\n");
    return;
  }
  if (path === "/metrics") {
    await withTimeout(source.refresh(), "the status");
    const text = await source.registry.metrics();
    response.writeHead(200, { "content-type": source.registry.contentType });
    response.end(request.method === "HEAD" ? undefined : text);
    return;
  }
  if (path === "/healthz") {
    const health = await withTimeout(source.health(), "the health check");
    response.writeHead(health.healthy ? 200 : 503, { "content-type": "text/plain; charset=utf-8" });
    response.end(request.method === "HEAD" ? undefined : `${health.text}\n`);
    return;
  }
  response.writeHead(404, { "content-type": "text/plain; charset=utf-8" });
  response.end("not found: try /metrics or /healthz\n");
}

function withTimeout<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new RuntimeError("metrics-timeout", `${what} did not come in ${ANSWER_TIMEOUT_MS} ms`)),
      ANSWER_TIMEOUT_MS,
    );
  });
  return Promise.race([work, late]).finally(() => clearTimeout(timer));
}
