// SIGHUP and the configuration: `run` reads --config FILE and TUNNELBORE_* once, at start, and wires
// what they say into sockets, sessions and the worker. A reload reads them again only to say what
// changed and that applying it takes a restart (a half-applied configuration would be worse than the
// old one), or why the file no longer reads: an edited file is never silently ignored.
import type { Logger } from "../log.js";
import type { Service } from "../service-lifecycle.js";

/** The options as resolved from argv, the environment and the file: flag name -> value. */
export type ResolvedOptions = Record<string, unknown>;

export type ConfigRecheck =
  | { kind: "unchanged" }
  | { kind: "changed"; options: string[] }
  | { kind: "unreadable"; message: string };

/**
 * Remembers the options resolved at start; each call of the result resolves them again and compares,
 * by flag name (values are never logged: some name secrets' files, none are compared as secrets).
 * `ignore`: options left out (secrets a command reads from the environment and then deletes).
 */
export function configRecheck(
  resolve: () => ResolvedOptions,
  atStart: ResolvedOptions,
  ignore: readonly string[] = [],
): () => ConfigRecheck {
  const keep = (options: ResolvedOptions) =>
    new Map(
      Object.entries(options)
        .filter(([name]) => !ignore.includes(name))
        .map(([name, value]) => [name, JSON.stringify(value)]),
    );
  const before = keep(atStart);
  return () => {
    let now: Map<string, string>;
    try {
      now = keep(resolve());
    } catch (err) {
      return { kind: "unreadable", message: (err as Error).message.split("\n")[0] ?? String(err) };
    }
    const names = new Set([...before.keys(), ...now.keys()]);
    const options = [...names].filter((name) => before.get(name) !== now.get(name)).sort();
    return options.length > 0 ? { kind: "changed", options } : { kind: "unchanged" };
  };
}

/** Logs what a recheck found: a changed option at warn (it needs a restart), an unreadable file at error. */
export function logConfigRecheck(result: ConfigRecheck, log: Logger): void {
  if (result.kind === "changed") {
    log.warn(
      { options: result.options },
      `configuration changed (${result.options.map((o) => `--${o}`).join(", ")}): it takes effect at the next start (restart tunnelbore); reloading reads the interface again only`,
    );
  } else if (result.kind === "unreadable") {
    log.error(
      { reason: result.message },
      `the configuration no longer reads (${result.message}): running on with the one read at start, and a restart would fail`,
    );
  }
}

/** `service` whose reload first rechecks the configuration and says what it found. */
export function withConfigRecheck(service: Service, recheck: () => ConfigRecheck, log: Logger): Service {
  return {
    ...service,
    reload: async () => {
      logConfigRecheck(recheck(), log);
      await service.reload();
    },
  };
}
