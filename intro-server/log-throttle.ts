/**
 * Log lines an attacker can trigger at will (refused connections, caps reached) are rate limited:
 * the first of a kind is logged at once, then at most one per interval with the count left out.
 */
import type { Logger } from "../src/log.js";

export class LogThrottle {
  private readonly kinds = new Map<string, { lastAt: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 10_000,
  ) {}

  warn(kind: string, fields: Record<string, unknown>, message: string, now = Date.now()): void {
    const state = this.kinds.get(kind);
    if (state && now - state.lastAt < this.intervalMs) {
      state.suppressed++;
      return;
    }
    const suppressed = state?.suppressed ?? 0;
    this.kinds.set(kind, { lastAt: now, suppressed: 0 });
    this.log.warn(suppressed > 0 ? { ...fields, suppressed } : fields, message);
  }
}
