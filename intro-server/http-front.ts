/**
 * The introduction server's HTTP side: timeouts and a header size cap for every request, and the
 * cap on connections not yet authenticated, counted from TCP accept per address and in total. A
 * connection over the cap is answered `503` with the reason when its upgrade request arrives (and
 * cut off soon if none does), so it never costs a WebSocket or a challenge key pair.
 */
import { createServer as createHttpServer, type Server as HttpServer, type IncomingMessage } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import type { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { RuntimeError } from "../src/errors.js";
import { AddressCounter, addressBucket } from "./connection-caps.js";
import type { IntroServerLimits } from "./limits.js";
import type { LogThrottle } from "./log-throttle.js";

/**
 * Connections the kernel may hold before we accept them (capped by net.core.somaxconn). Node's 511
 * overflows when a cluster node dies and its clients all arrive at once: the SYNs dropped are sent
 * again after 1, 3 and 7 s, which is most of a failover (measured: 3,000 clients back after 7 s).
 */
const LISTEN_BACKLOG = 4_096;

/** A refused connection that sends no request is closed after this. */
const REFUSED_SOCKET_TIMEOUT_MS = 2_000;

export interface HttpFront {
  server: HttpServer;
  /** The connection authenticated (or is gone): it no longer counts as unauthenticated. Idempotent. */
  leavePreAuth(socket: Socket): void;
  /** Unauthenticated connections counted now. */
  preAuthCount(): number;
}

/** Raw TCP and TLS sockets of one connection share these; a tuple is unique among live connections. */
const socketKey = (socket: { remoteAddress?: string; remotePort?: number }) =>
  `${socket.remoteAddress}|${socket.remotePort}`;

export function createHttpFront(options: {
  tls?: { cert: string | Buffer; key: string | Buffer };
  limits: IntroServerLimits;
  throttle: LogThrottle;
  onUpgrade: (request: IncomingMessage, socket: Duplex, head: Buffer) => void;
}): HttpFront {
  const { limits, throttle } = options;
  const requestTimeoutMs = Math.max(limits.requestTimeoutMs, limits.headersTimeoutMs);
  const httpOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: requestTimeoutMs,
    maxHeaderSize: limits.maxHeaderBytes,
    // Node checks the two timeouts above this often (default 30 s, longer than they are).
    connectionsCheckingInterval: Math.min(1_000, limits.headersTimeoutMs),
    keepAliveTimeout: 5_000,
  };
  const server: HttpServer = options.tls
    ? createHttpsServer({
        ...httpOptions,
        cert: options.tls.cert,
        key: options.tls.key,
        handshakeTimeout: limits.headersTimeoutMs,
      })
    : createHttpServer(httpOptions);
  // Hard ceiling on sockets: every cap full, plus room for refused ones waiting for their answer.
  server.maxConnections = 2 * limits.maxPreAuthTotal + limits.maxAuthenticatedTotal;

  const preAuth = new AddressCounter(limits.maxPreAuthPerAddress, limits.maxPreAuthTotal);
  const counted = new Map<string, string>();
  const refused = new Map<string, string>();

  function leavePreAuth(socket: Socket): void {
    const key = socketKey(socket);
    const bucket = counted.get(key);
    if (bucket === undefined) return;
    counted.delete(key);
    preAuth.remove(bucket);
    socket.removeListener("close", onCountedSocketClose);
  }
  // One listener for every socket (a `once` closure each would outlive authentication).
  function onCountedSocketClose(this: Socket): void {
    leavePreAuth(this);
  }

  server.on("connection", (socket: Socket) => {
    const key = socketKey(socket);
    const bucket = addressBucket(socket.remoteAddress);
    const verdict = preAuth.tryAdd(bucket);
    if (verdict === "ok") {
      counted.set(key, bucket);
      socket.on("close", onCountedSocketClose);
      return;
    }
    const reason =
      verdict === "address"
        ? "too many unauthenticated connections from your address"
        : "too many unauthenticated connections to this server";
    throttle.warn(
      `pre-auth-${verdict}`,
      {
        remote: bucket,
        cap: verdict === "address" ? limits.maxPreAuthPerAddress : limits.maxPreAuthTotal,
      },
      `refusing connection: ${reason}`,
    );
    refused.set(key, reason);
    socket.once("close", () => refused.delete(key));
    socket.setTimeout(REFUSED_SOCKET_TIMEOUT_MS, () => socket.destroy());
  });

  server.on("upgrade", (request: IncomingMessage, socket: Duplex, head: Buffer) => {
    const reason = refused.get(socketKey(request.socket));
    if (reason === undefined) {
      options.onUpgrade(request, socket, head);
      return;
    }
    const body = `${reason}\n`;
    socket.on("error", () => {});
    socket.end(
      "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\n" +
        `Retry-After: 10\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  });

  server.on("request", (request, response) => {
    const reason = refused.get(socketKey(request.socket));
    if (reason !== undefined) {
      response.writeHead(503, { "content-type": "text/plain", connection: "close", "retry-after": "10" });
      response.end(`${reason}\n`);
      return;
    }
    response.writeHead(426, { "content-type": "text/plain", upgrade: "websocket" });
    response.end("Tunnelbore introduction server: connect with a WebSocket.\n");
  });
  server.on("clientError", (error: NodeJS.ErrnoException, socket: Duplex) => {
    // Node answers a header block over the cap itself when it can; we only make sure the socket goes.
    if (error.code === "HPE_HEADER_OVERFLOW" && socket.writable) {
      socket.end("HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n");
      return;
    }
    socket.destroy();
  });

  return { server, leavePreAuth, preAuthCount: () => preAuth.size };
}

/** Listens on host:port; a failure is a RuntimeError naming the address (and a busy port as such). */
export async function listenHttp(server: HttpServer, host: string, port: number): Promise<void> {
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ port, host, backlog: LISTEN_BACKLOG }, () => {
        server.off("error", reject);
        resolve();
      });
    });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new RuntimeError(
      "intro-listen",
      `cannot listen on ${host}:${port}: ${code ?? String(error)}` +
        (code === "EADDRINUSE" ? " (port busy: choose another --listen port)" : ""),
      { host, port },
      { cause: error },
    );
  }
}
