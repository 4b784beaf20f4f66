/** The middle value (the mean of the two middle ones for an even count); NaN for none. */
export function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((x, y) => x - y);
  const mid = sorted.length >> 1;
  return sorted.length % 2
    ? (sorted[mid] as number)
    : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** The nearest-rank p-th percentile (0-100); NaN for none. */
export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((x, y) => x - y);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

/** Two cases measured in rounds, both in every round: their ratio per round, and two summaries. */
export interface PairedRatio {
  /** case / baseline of each round. */
  perRound: number[];
  /** The median of the per-round ratios: what the targets are judged by. */
  paired: number;
  /** The median of the case over the median of the baseline. */
  ofMedians: number;
}

/**
 * `cases[i] / baselines[i]` per round and summarised. The machine's speed drifts within a run (direct
 * WireGuard alone 341-693 Mbit/s over one run's rounds on this VM), and the ratio of medians can take
 * its two medians from rounds of different speeds; the per-round ratio compares runs seconds apart, and
 * its median is the steadier estimate when the rounds alternate which case goes first.
 */
export function pairedRatio(cases: number[], baselines: number[]): PairedRatio {
  if (cases.length !== baselines.length) throw new Error("pairedRatio: every round needs both cases");
  const perRound = cases.map((value, i) => value / (baselines[i] as number));
  return { perRound, paired: median(perRound), ofMedians: median(cases) / median(baselines) };
}

/** A ratio row's note: every round's ratio, and the ratio of the medians beside the median of those. */
export function pairedRatioNote(ratio: PairedRatio, round = "round"): string {
  const perRound = ratio.perRound.map((x) => x.toFixed(2)).join(", ");
  return `median of the per-${round} ratios; per ${round} ${perRound}; ratio of the medians ${ratio.ofMedians.toFixed(3)}`;
}
