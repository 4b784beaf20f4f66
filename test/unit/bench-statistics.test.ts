import { describe, expect, it } from "vitest";
import { median, pairedRatio, pairedRatioNote } from "../../bench/statistics.js";

describe("pairedRatio", () => {
  it("compares each round's two runs, so a machine that slows down mid-run does not skew the ratio", () => {
    // The case costs 5 % in every round; the machine runs at half speed in rounds 3-5.
    const baselines = [600, 600, 300, 300, 300];
    const cases = baselines.map((b) => b * 0.95);
    const ratio = pairedRatio(cases, baselines);
    expect(ratio.perRound).toEqual(cases.map(() => expect.closeTo(0.95, 10)));
    expect(ratio.paired).toBeCloseTo(0.95, 10);
    expect(ratio.ofMedians).toBeCloseTo(0.95, 10);
    // A slow round in one case only: the medians take it from different rounds, the pairs do not.
    const skewed = pairedRatio([570, 560, 300, 290, 580], [600, 590, 600, 300, 610]);
    expect(skewed.paired).toBeCloseTo(0.95, 2);
    expect(skewed.ofMedians).toBeCloseTo(560 / 600, 10);
  });

  it("takes the median of the per-round ratios (the mean of the middle two for an even count)", () => {
    expect(pairedRatio([1, 2, 3, 8], [1, 1, 1, 1]).paired).toBe(2.5);
    expect(median([3, 1, 2])).toBe(2);
  });

  it("refuses rounds that miss one of the two cases", () => {
    expect(() => pairedRatio([1, 2], [1])).toThrow(/every round needs both/);
  });

  it("notes every round's ratio and the ratio of the medians beside it", () => {
    const ratio = pairedRatio([90, 100, 80], [100, 100, 100]);
    expect(pairedRatioNote(ratio)).toBe(
      "median of the per-round ratios; per round 0.90, 1.00, 0.80; ratio of the medians 0.900",
    );
    expect(pairedRatioNote(ratio, "run")).toMatch(/^median of the per-run ratios; per run 0\.90,/);
  });
});
