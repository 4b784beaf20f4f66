// How an introduction server stops (SIGTERM, close()): it stops accepting, tells every client to move
// (4011: any other node of the cluster will do) while still relaying the frames they had sent, lets
// the cluster hold envelopes for the moving keys, and only then closes. docs/protocol.md §8.1.
import type { Server } from "node:http";
import type { WebSocket, WebSocketServer } from "ws";
import type { Logger } from "../src/log.js";

/** What a client is told when its server stops: any other server of the cluster will do. */
export const DRAIN_REASON = "server shutting down: reconnect elsewhere";
/** How long a drain waits for clients to answer the close, and then for envelopes still on their way. */
export const DRAIN_CLOSE_MS = 2_000;
const DRAIN_SETTLE_MS = 300;

export interface ShutdownParts {
  log: Logger;
  httpServer: Server;
  wss: WebSocketServer;
  /** Every open socket, authenticated or not: what must end. */
  sockets: ReadonlySet<WebSocket>;
  /** The keys connected here, which move elsewhere. */
  connectedKeys(): string[];
  /** Tells every connection to move (4011) and keeps relaying what it already sent. */
  drainAll(): void;
  /** The cluster's side: envelopes for the keys held while they move, then its connection closed. */
  cluster?: { markMoving(keys: string[]): Promise<void>; close(): Promise<void> };
  stun?: { close(): Promise<void> };
}

export async function shutDown(parts: ShutdownParts): Promise<void> {
  const { log, httpServer, wss, sockets, cluster } = parts;
  const httpClosed = new Promise<void>((resolve) => httpServer.close(() => resolve()));
  // Envelopes for our clients are held by the cluster from now until they are back elsewhere.
  await cluster?.markMoving(parts.connectedKeys()).catch((error: Error) => {
    log.warn({ err: error.message }, "cluster: cannot mark clients as moving");
  });
  parts.drainAll();
  const deadline = Date.now() + DRAIN_CLOSE_MS;
  while (sockets.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  if (cluster) {
    await new Promise((resolve) => setTimeout(resolve, DRAIN_SETTLE_MS));
    await cluster.close();
  }
  // Give clients a moment to answer the close frames, then cut whatever is left.
  const cutOff = setTimeout(() => {
    for (const ws of sockets) ws.terminate();
    httpServer.closeAllConnections();
  }, 500);
  await new Promise<void>((resolve) => wss.close(() => resolve()));
  await httpClosed;
  clearTimeout(cutOff);
  await parts.stun?.close();
  log.info("introduction server closed");
}
