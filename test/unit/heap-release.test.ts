import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { HEAP_RELEASE_MIN_ITEMS, HeapRelease } from "../../src/heap-release.js";

const silent = pino({ level: "silent" });

describe("HeapRelease", () => {
  beforeEach(() => vi.useFakeTimers());
  afterEach(() => vi.useRealTimers());

  it("collects once a big burst has been quiet for 8 s, not after small ones", () => {
    const collect = vi.fn(async () => undefined);
    const release = new HeapRelease(silent, collect, Date.now);
    release.after(HEAP_RELEASE_MIN_ITEMS - 1);
    vi.advanceTimersByTime(10_000);
    expect(collect).not.toHaveBeenCalled();
    // Reads that handle nothing (every poll) neither count nor put the collection off.
    release.after(0);
    vi.advanceTimersByTime(10_000);
    expect(collect).not.toHaveBeenCalled();
    // A burst in parts: the collection waits for the last one.
    release.after(4096);
    vi.advanceTimersByTime(7000);
    release.after(4096);
    vi.advanceTimersByTime(7999);
    expect(collect).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it("counts small bursts together (peers going dormant a few hundred per sweep)", () => {
    const collect = vi.fn(async () => undefined);
    const release = new HeapRelease(silent, collect, Date.now);
    for (let i = 0; i < 3; i++) {
      release.after(200);
      vi.advanceTimersByTime(2000);
      release.after(0);
      vi.advanceTimersByTime(2000);
    }
    vi.advanceTimersByTime(8000);
    expect(collect).toHaveBeenCalledTimes(1);
    // Counted anew after a collection.
    release.after(400);
    vi.advanceTimersByTime(60_000);
    expect(collect).toHaveBeenCalledTimes(1);
  });

  it("collects at most once per 30 s, however often bursts come, and not after stop()", () => {
    const collect = vi.fn(async () => undefined);
    const release = new HeapRelease(silent, collect, Date.now);
    release.after(1000);
    vi.advanceTimersByTime(8000);
    release.after(1000);
    vi.advanceTimersByTime(29_999);
    expect(collect).toHaveBeenCalledTimes(1);
    vi.advanceTimersByTime(1);
    expect(collect).toHaveBeenCalledTimes(2);
    release.after(1000);
    release.stop();
    vi.advanceTimersByTime(120_000);
    expect(collect).toHaveBeenCalledTimes(2);
  });

  it("gives the garbage of a burst back, in a process started without any flag", async () => {
    vi.useRealTimers();
    const { getHeapSpaceStatistics } = await import("node:v8");
    const oldSpace = () =>
      getHeapSpaceStatistics().find((space) => space.space_name === "old_space")?.space_size ?? 0;
    // Garbage that lives long enough to reach the old space, then dies.
    let kept: object[] = [];
    for (let round = 0; round < 20; round++) {
      for (let i = 0; i < 50_000; i++) kept.push({ round, i, text: `peer ${i}` });
      await new Promise((resolve) => setImmediate(resolve));
    }
    kept = [];
    const before = oldSpace();
    await (new HeapRelease(silent) as unknown as { run(): Promise<void> }).run();
    expect(oldSpace()).toBeLessThan(before - 20 * 2 ** 20);
    expect(kept).toEqual([]);
  });
});
