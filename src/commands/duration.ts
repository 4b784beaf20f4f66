// A duration as a flag gives it: `90s`, `15m`, `1h`, `500ms`, a bare number of seconds, or `0`/`off`.
import { ConfigError } from "../errors.js";

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds (0 for `0` or `off`), or a ConfigError naming the flag and the forms it takes. */
export function parseDuration(flag: string, text: string, maxMs: number): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  const ms = text.trim() === "off" ? 0 : match ? Number(match[1]) * UNIT_MS[match[2] ?? "s"]! : Number.NaN;
  if (!Number.isFinite(ms) || ms > maxMs) {
    throw new ConfigError(
      "bad-usage",
      `${flag} "${text}" must be a duration such as 90s, 15m or 1h (at most ${maxMs / 3_600_000} h), or 0/off`,
    );
  }
  return Math.round(ms);
}
