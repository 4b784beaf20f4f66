// The test Redis helpers make sure the server answering on a port is the process they started: two
// test files once shared one Redis when a released free port was taken by the other's server first.
import { afterEach, describe, expect, it } from "vitest";
import { startRedis, type TestRedis } from "./intro-cluster-support.js";

const started: TestRedis[] = [];
afterEach(async () => {
  await Promise.all(started.splice(0).map((r) => r.stop()));
});

describe("startRedis", () => {
  it("refuses a port another redis-server holds instead of taking that server for its own", async () => {
    const first = await startRedis();
    started.push(first);
    await expect(startRedis(first.port)).rejects.toThrow(/port taken/);
    // The first is untouched, and a fresh start finds a port of its own.
    const second = await startRedis();
    started.push(second);
    expect(second.port).not.toBe(first.port);
    expect(second.process.pid).not.toBe(first.process.pid);
  });
});
