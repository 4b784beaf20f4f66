/** Base of every error Tunnelbore raises on purpose; `code` is stable for callers and tests. */
export class TunnelboreError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly context: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A problem the user can fix by changing flags or configuration: the CLI exits with 2. */
export class ConfigError extends TunnelboreError {}

/** A failure while running (I/O, a child process, the network): the CLI exits with 1. */
export class RuntimeError extends TunnelboreError {}
