import { type Logger, pino } from "pino";

export type { Logger };

/** The process logger: structured JSON on stderr (synchronous, so nothing is lost at exit), level from TUNNELBORE_LOG (default info). Never pass keys. */
export function createLogger(name: string, level = process.env.TUNNELBORE_LOG ?? "info"): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ dest: 2, sync: true }));
}
