/**
 * Base of every error Tunnelbore raises on purpose; `code` is stable for callers and tests.
 *
 * Codes are kebab-case, lower case words joined by hyphens ("port-busy", "bad-usage", "intro-offline"):
 * what went wrong, with the area first where that helps ("ebpf-…", "control-…", "intro-…"). They are
 * for programs, tests and logs; the user reads `message`. None is sent over the wire: the introduction
 * protocol's close codes and reasons are its own (docs/protocol.md).
 */
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
