import { createRequire } from "node:module";
import { type DestinationStream, type Logger, pino } from "pino";
import { ConfigError } from "./errors.js";

export type { Logger };

export const LOG_LEVELS = ["trace", "debug", "info", "warn", "error", "fatal", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** json: one object a line with the level's name (journald, log shippers); pretty: for a human. */
export const LOG_FORMATS = ["json", "pretty"] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** How a command logs: --log-level and --log-format, already validated. */
export interface LogSettings {
  level: string;
  format: LogFormat;
}

/** --log-level (else TUNNELBORE_LOG, else info), or a ConfigError with `code` naming the choices. */
export function parseLogLevel(text: string | undefined, code: string, env = process.env): string {
  const level = text ?? env.TUNNELBORE_LOG ?? "info";
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(code, `--log-level "${level}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  return level;
}

/** --log-format, else pretty on a terminal and json otherwise (a service's stderr is no terminal). */
export function parseLogFormat(
  text: string | undefined,
  code: string,
  stderrIsTerminal = Boolean(process.stderr.isTTY),
): LogFormat {
  if (text === undefined) return stderrIsTerminal ? "pretty" : "json";
  if (!(LOG_FORMATS as readonly string[]).includes(text)) {
    throw new ConfigError(code, `--log-format "${text}" is not one of ${LOG_FORMATS.join(", ")}`);
  }
  return text as LogFormat;
}

/**
 * The process logger on stderr, synchronous so nothing is lost at exit. JSON lines carry the level's
 * name ("level":"warn"). Level from TUNNELBORE_LOG (default info), format json unless told. Never pass
 * keys.
 */
export function createLogger(
  name: string,
  level = process.env.TUNNELBORE_LOG ?? "info",
  format: LogFormat = "json",
): Logger {
  if (format === "pretty") return pino({ name, level }, prettyStream());
  return pino(
    { name, level, base: { pid: process.pid }, formatters: { level: (label) => ({ level: label }) } },
    pino.destination({ dest: 2, sync: true }),
  );
}

// Loaded only when asked for: the JSON logger of a service never pays for it.
function prettyStream(): DestinationStream {
  const require = createRequire(import.meta.url);
  const pretty = require("pino-pretty") as (options: Record<string, unknown>) => DestinationStream;
  return pretty({ destination: 2, sync: true, translateTime: "SYS:HH:MM:ss.l", ignore: "pid,hostname" });
}
