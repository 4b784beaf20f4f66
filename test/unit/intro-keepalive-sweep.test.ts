// The introduction server's keepalive sweep: every connection pinged (or closed if idle), a slice of
// them a turn of the event loop, so that 14,000 connections do not hold the loop for seconds.

import { expect, it } from "vitest";
import { WebSocket } from "ws";
import { KeepaliveSweep, type SweptConnection } from "../../intro-server/keepalive-sweep.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

it("pings every open connection in slices of a turn each and closes the idle ones", async () => {
  let pinged = 0;
  let firstTurn = 0;
  let sweep: KeepaliveSweep<SweptConnection> | undefined;
  const ping = () => {
    // Runs once the sweep's current turn has ended.
    if (pinged++ === 0) queueMicrotask(() => (firstTurn = pinged));
    if (pinged === 1_000) sweep?.stop(); // one sweep only
  };
  const connection = (state: string, lastSeen: number, readyState: number = WebSocket.OPEN) =>
    ({ state, lastSeen, ws: { readyState, ping } as unknown as WebSocket }) satisfies SweptConnection;
  const now = Date.now();
  const live = new Set<SweptConnection>();
  for (let i = 0; i < 1_000; i++) live.add(connection("authenticated", now));
  const idle = connection("authenticated", now - 120_000);
  live.add(idle);
  live.add(connection("closing", now));
  live.add(connection("authenticated", now, WebSocket.CLOSING));
  const closed: SweptConnection[] = [];
  sweep = new KeepaliveSweep(live, { pingIntervalMs: 50, idleTimeoutMs: 60_000 }, (c) => closed.push(c));
  try {
    for (let waited = 0; pinged < 1_000 && waited < 5_000; waited += 10) await sleep(10);
    expect(pinged).toBe(1_000);
    expect(firstTurn).toBe(256);
    expect(closed).toEqual([idle]);
  } finally {
    sweep?.stop();
  }
});
