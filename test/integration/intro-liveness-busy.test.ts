// A check of life must not call a server silent whose pong is waiting in the socket: on a busy event
// loop (a hub with many peers connecting) the check's timer can fall due before the socket is read, and
// a false verdict replaces a live connection, costing every peer its signalling.
import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { WebSocket, WebSocketServer } from "ws";
import { ServerLiveness } from "../../src/intro-client/server-liveness.js";

let wss: WebSocketServer | undefined;
let client: WebSocket | undefined;

afterEach(async () => {
  client?.terminate();
  await new Promise((resolve) => wss?.close(resolve) ?? resolve(undefined));
  wss = undefined;
  client = undefined;
});

/** Blocks the event loop (this process: client and server) for `ms`. */
function busy(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {}
}

describe("ServerLiveness check on a busy event loop", () => {
  it("a pong that arrived while the loop was blocked past the timeout counts", async () => {
    wss = new WebSocketServer({ host: "127.0.0.1", port: 0 });
    await once(wss, "listening");
    // The server answers the ping (the pong is written first), then the process is busy past the
    // check's timeout: the pong waits in the client's socket when the timer falls due.
    wss.on("connection", (ws) => ws.on("ping", () => busy(200)));
    client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    await once(client, "open");
    const liveness = new ServerLiveness();
    client.on("pong", () => liveness.heard());
    let silent = false;
    const alive = await liveness.check(client, 50, () => {
      silent = true;
    });
    expect({ alive, silent }).toEqual({ alive: true, silent: false });
  });

  it("a server that does not answer is still silent", async () => {
    wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: false });
    await once(wss, "listening");
    client = new WebSocket(`ws://127.0.0.1:${(wss.address() as AddressInfo).port}`);
    await once(client, "open");
    const liveness = new ServerLiveness();
    client.on("pong", () => liveness.heard());
    let silent = false;
    const alive = await liveness.check(client, 50, () => {
      silent = true;
    });
    expect({ alive, silent }).toEqual({ alive: false, silent: true });
  });
});
