// Which run and which peer `tunnelbore ping` means: the only running interface unless one is named,
// and a peer named by its public key or a unique prefix of it. `status` shows keys shortened
// ("AbCdEfGhIj…"), so a trailing ellipsis is allowed and ignored.
import { readdir } from "node:fs/promises";
import { ConfigError } from "../errors.js";

/** The interface of the only control socket in `runDir`; a ConfigError naming them when there are several. */
export async function onlyRunningInterface(runDir: string): Promise<string> {
  const names = (await readdir(runDir).catch(() => [] as string[]))
    .filter((f) => f.endsWith(".sock"))
    .map((f) => f.slice(0, -5))
    .sort();
  if (names.length === 1 && names[0]) return names[0];
  throw new ConfigError(
    "bad-usage",
    names.length === 0
      ? `no tunnelbore run is active (no control socket in ${runDir})`
      : `several interfaces are running (${names.join(", ")}): name one with --interface`,
    { runDir },
  );
}

/** The one key of `keys` that `given` names (the whole key, or a prefix of only it); a ConfigError otherwise. */
export function matchPeerPrefix(given: string, keys: readonly string[], interfaceName: string): string {
  const prefix = given.trim().replace(/(…|\.\.\.)$/, "");
  if (prefix === "")
    throw new ConfigError("bad-usage", "PEER is empty: give a public key or a prefix of one");
  if (keys.includes(prefix)) return prefix;
  const matches = keys.filter((key) => key.startsWith(prefix));
  if (matches.length === 1 && matches[0]) return matches[0];
  if (matches.length === 0) {
    throw new ConfigError("unknown-peer", `no peer of ${interfaceName} matches "${prefix}"`, {
      prefix,
      interface: interfaceName,
    });
  }
  throw new ConfigError(
    "ambiguous-peer",
    `"${prefix}" matches ${matches.length} peers of ${interfaceName}: ${[...matches].sort().join(", ")} (give more of the key)`,
    { prefix, interface: interfaceName, matches },
  );
}
