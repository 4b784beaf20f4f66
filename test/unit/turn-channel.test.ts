// TurnChannelKeeper's schedule and route, with a scripted TURN client and fake timers (the real
// ChannelBinds against coturn are in test/integration/turn-channel.test.ts).
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { RuntimeError } from "../../src/errors.js";
import {
  CHANNEL_REFRESH_MS,
  CHANNEL_RETRY_MS,
  type TurnChannelClient,
  TurnChannelKeeper,
} from "../../src/ice/turn-channel.js";
import type { Address } from "../../src/ice/werift-internals.js";

const PEER: Address = ["203.0.113.9", 50000];
const ROUTE = {
  localAddress: "198.51.100.7",
  localPort: 40000,
  remoteAddress: "192.0.2.1",
  remotePort: 3478,
  channel: 0x4001,
};

/** A TURN client whose answers the test scripts: each bind/rebind takes the next outcome (default: success). */
class ScriptedClient implements TurnChannelClient {
  transport = "udp";
  closed = false;
  readonly server: Address = [ROUTE.remoteAddress, ROUTE.remotePort];
  binds = 0;
  rebinds = 0;
  readonly outcomes: Array<Error | Promise<void>> = [];

  async bind(peer: Address): Promise<number> {
    expect(peer).toEqual(PEER);
    this.binds++;
    await this.next();
    return ROUTE.channel;
  }

  async rebind(channel: number, peer: Address): Promise<void> {
    expect([channel, peer]).toEqual([ROUTE.channel, PEER]);
    this.rebinds++;
    await this.next();
  }

  async localEnd(): Promise<{ address: string; port: number }> {
    return { address: ROUTE.localAddress, port: ROUTE.localPort };
  }

  private async next(): Promise<void> {
    const outcome = this.outcomes.shift();
    if (outcome instanceof Error) throw outcome;
    await outcome;
  }
}

const refreshFailed = () => new RuntimeError("turn-channel-bind-failed", "TURN ChannelBind refresh failed");
const allocationGone = () =>
  new RuntimeError("turn-allocation-gone", "TURN server no longer knows the allocation");

let logs: Array<{ level: number; msg: string }>;

function keeper(client: ScriptedClient, options: { refreshIntervalMs?: number } = {}) {
  const changes = { count: 0 };
  const log = pino(
    { level: "debug" },
    new Writable({
      write(chunk: Buffer, _enc, done) {
        logs.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        done();
      },
    }),
  );
  const k = new TurnChannelKeeper(client, PEER, {
    ...options,
    log,
    onChange: () => {
      changes.count++;
    },
  });
  return { k, changes };
}

const settle = () => vi.advanceTimersByTimeAsync(0);

beforeEach(() => {
  vi.useFakeTimers();
  logs = [];
});

afterEach(() => {
  vi.useRealTimers();
});

describe("TurnChannelKeeper", () => {
  it("binds at start and reports the route once; re-binds every interval while open, never after close", async () => {
    const client = new ScriptedClient();
    const { k, changes } = keeper(client);
    expect(k.route).toBeNull();
    k.start();
    await settle();
    expect(k.route).toEqual(ROUTE);
    expect(k.state).toBe("bound");
    expect(changes.count).toBe(1);
    expect([client.binds, client.rebinds]).toEqual([1, 0]);

    await vi.advanceTimersByTimeAsync(CHANNEL_REFRESH_MS * 3);
    expect(client.rebinds).toBe(3);
    expect(changes.count).toBe(1); // the route did not change
    expect(CHANNEL_REFRESH_MS).toBeLessThan(300_000 / 2); // two chances within a permission's life

    k.close();
    expect(k.route).toBeNull();
    await vi.advanceTimersByTimeAsync(CHANNEL_REFRESH_MS * 3);
    expect(client.rebinds).toBe(3);
  });

  it("a failed refresh withdraws the route and says so; a retry that succeeds brings it back", async () => {
    const client = new ScriptedClient();
    const { k, changes } = keeper(client, { refreshIntervalMs: 1000 });
    k.start();
    await settle();
    client.outcomes.push(refreshFailed());
    await vi.advanceTimersByTimeAsync(1000);
    expect(k.route).toBeNull();
    expect(k.state).toBe("unbound");
    expect(changes.count).toBe(2);
    expect(logs.filter((l) => l.level === 40).map((l) => l.msg)).toEqual([
      "turn channel refresh failed: user space carries the path",
    ]);

    // After a failure the next try comes after the retry interval, whatever the refresh interval.
    await vi.advanceTimersByTimeAsync(CHANNEL_RETRY_MS - 1);
    expect(client.rebinds).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(client.rebinds).toBe(2);
    expect(k.route).toEqual(ROUTE);
    expect(changes.count).toBe(3);
    expect(logs.some((l) => l.msg === "turn channel bound again")).toBe(true);
  });

  it("a server that no longer knows the allocation (437) ends it: no route, no more ChannelBinds", async () => {
    const client = new ScriptedClient();
    const { k, changes } = keeper(client, { refreshIntervalMs: 1000 });
    k.start();
    await settle();
    client.outcomes.push(allocationGone());
    await vi.advanceTimersByTimeAsync(1000);
    expect(k.state).toBe("gone");
    expect(k.route).toBeNull();
    expect(changes.count).toBe(2);
    expect(logs.some((l) => l.level === 40 && l.msg.startsWith("turn allocation gone"))).toBe(true);
    await vi.advanceTimersByTimeAsync(CHANNEL_RETRY_MS * 4);
    expect(client.rebinds).toBe(1);
  });

  it("a closed TURN client (its agent closed) is the allocation gone, even before a refresh fails", async () => {
    const client = new ScriptedClient();
    const { k, changes } = keeper(client, { refreshIntervalMs: 1000 });
    k.start();
    await settle();
    client.closed = true;
    expect(k.route).toBeNull();
    await vi.advanceTimersByTimeAsync(1000);
    expect(k.state).toBe("gone");
    expect(client.rebinds).toBe(0);
    expect(changes.count).toBe(2);
  });

  it("a first bind that fails is retried quietly; the route appears once it succeeds", async () => {
    const client = new ScriptedClient();
    client.outcomes.push(refreshFailed(), refreshFailed());
    const { k, changes } = keeper(client);
    k.start();
    await settle();
    expect(k.state).toBe("binding");
    await vi.advanceTimersByTimeAsync(CHANNEL_RETRY_MS * 2);
    expect(client.binds).toBe(3);
    expect(k.route).toEqual(ROUTE);
    expect(changes.count).toBe(1);
    expect(logs.filter((l) => l.level >= 40)).toEqual([]);
  });

  it("TURN over TCP: the channel is kept bound (for werift's own sends), but there is never a route", async () => {
    const client = new ScriptedClient();
    client.transport = "tcp";
    const { k, changes } = keeper(client, { refreshIntervalMs: 1000 });
    k.start();
    await vi.advanceTimersByTimeAsync(3000);
    expect(k.state).toBe("bound");
    expect(client.rebinds).toBe(3);
    expect(k.route).toBeNull();
    expect(changes.count).toBe(0);
  });

  it("closed while the first bind is under way: no route and no change reported when it completes", async () => {
    const client = new ScriptedClient();
    let answer: () => void = () => {};
    client.outcomes.push(
      new Promise<void>((resolve) => {
        answer = resolve;
      }),
    );
    const { k, changes } = keeper(client);
    k.start();
    await settle();
    k.close();
    answer();
    await vi.advanceTimersByTimeAsync(CHANNEL_REFRESH_MS * 2);
    expect(k.route).toBeNull();
    expect(k.state).toBe("closed");
    expect(changes.count).toBe(0);
    expect(client.rebinds).toBe(0);
  });

  it("a channel number outside 0x4000-0x7FFF is never reported", async () => {
    const client = new ScriptedClient();
    client.bind = async () => 0x3fff;
    const { k, changes } = keeper(client);
    k.start();
    await settle();
    expect(k.route).toBeNull();
    expect(changes.count).toBe(0);
  });
});
