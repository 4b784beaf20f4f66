// The cluster benchmark's stage times (intro-server/cluster/envelope-trace.ts): off unless
// TUNNELBORE_INTRO_TRACE=1, and then each stamp appends the monotonic clock, which other processes share.
import { afterEach, expect, it, vi } from "vitest";

afterEach(() => {
  vi.unstubAllEnvs();
  vi.resetModules();
});

it("leaves envelopes as they are when tracing is off", async () => {
  vi.stubEnv("TUNNELBORE_INTRO_TRACE", "");
  const trace = await import("../../intro-server/cluster/envelope-trace.js");
  const envelope = { n: "bm9uY2U=", c: "Y2lwaGVy" };
  trace.stamp(envelope);
  expect(trace.TRACE).toBe(false);
  expect(envelope).toEqual({ n: "bm9uY2U=", c: "Y2lwaGVy" });
});

it("appends the monotonic clock in ms to the envelope's t when tracing", async () => {
  vi.stubEnv("TUNNELBORE_INTRO_TRACE", "1");
  const trace = await import("../../intro-server/cluster/envelope-trace.js");
  const envelope: { n: string; c: string; t?: number[] } = { n: "bm9uY2U=", c: "Y2lwaGVy" };
  const before = Number(process.hrtime.bigint() / 1000n) / 1000;
  trace.stamp(envelope);
  trace.stamp(envelope);
  const after = Number(process.hrtime.bigint() / 1000n) / 1000;
  expect(envelope.t).toHaveLength(2);
  expect(envelope.t![0]).toBeGreaterThanOrEqual(before);
  expect(envelope.t![1]).toBeGreaterThanOrEqual(envelope.t![0]!);
  expect(envelope.t![1]).toBeLessThanOrEqual(after);
});
