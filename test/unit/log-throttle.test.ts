// Refusals a stranger can trigger at will are logged once per interval per kind, with the count left out.
import { describe, expect, it } from "vitest";
import { LogThrottle } from "../../intro-server/log-throttle.js";
import type { Logger } from "../../src/log.js";

function recorder() {
  const lines: Array<{ fields: Record<string, unknown>; message: string }> = [];
  const log = { warn: (fields: Record<string, unknown>, message: string) => lines.push({ fields, message }) };
  return { lines, log: log as unknown as Logger };
}

describe("LogThrottle", () => {
  it("logs the first of a kind, then at most one per interval with how many were left out", () => {
    const { lines, log } = recorder();
    const throttle = new LogThrottle(log, 10_000);
    for (let i = 0; i < 1_000; i++) throttle.warn("cap", { remote: "a" }, "refused", 1_000 + i);
    throttle.warn("other", {}, "other kind", 2_000);
    expect(lines).toEqual([
      { fields: { remote: "a" }, message: "refused" },
      { fields: {}, message: "other kind" },
    ]);
    throttle.warn("cap", { remote: "b" }, "refused", 11_000);
    expect(lines[2]).toEqual({ fields: { remote: "b", suppressed: 999 }, message: "refused" });
    throttle.warn("cap", { remote: "c" }, "refused", 30_000);
    expect(lines[3]).toEqual({ fields: { remote: "c" }, message: "refused" });
  });
});
