/**
 * `tunnelbore run` as users run it: the lab helper's test settings (the interface read every 500 ms,
 * debug logs) set back to the CLI's defaults, so a benchmark measures the CPU a user's Tunnelbore takes.
 */
export const RUN_DEFAULTS: readonly string[] = ["--log-level", "info", "--poll-interval", "auto"];
