/**
 * `--allowed-keys FILE`: the WireGuard public keys an introduction server serves, one base64 key a
 * line, `#` starting a comment, blank lines ignored. Re-read when its directory changes (so editors
 * that rename a new file over the old one are seen too) and on request (SIGHUP); a file that fails
 * to parse is reported and the previous list kept.
 */
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname } from "node:path";
import { ConfigError } from "../src/errors.js";
import type { Logger } from "../src/log.js";
import { publicKeySchema } from "../src/signalling/protocol.js";
import { isCanonicalPublicKey, NON_CANONICAL_KEY_REASON } from "./canonical-key.js";

/** Parses the file's text; ConfigError names the first bad line. */
export function parseAllowedKeys(text: string, source: string): Set<string> {
  const keys = new Set<string>();
  const lines = text.split(/\r?\n/);
  for (const [index, line] of lines.entries()) {
    const content = line.replace(/#.*$/, "").trim();
    if (content === "") continue;
    const where = `${source} line ${index + 1}`;
    if (!publicKeySchema.safeParse(content).success) {
      const shown = content.length > 60 ? `${content.slice(0, 60)}...` : content;
      throw new ConfigError(
        "intro-allowed-keys",
        `${where}: not a WireGuard public key (base64 of 32 bytes): ${JSON.stringify(shown)}`,
        { source, line: index + 1 },
      );
    }
    if (!isCanonicalPublicKey(content)) {
      throw new ConfigError("intro-allowed-keys", `${where}: ${NON_CANONICAL_KEY_REASON}`, {
        source,
        line: index + 1,
      });
    }
    keys.add(content);
  }
  return keys;
}

export async function loadAllowedKeys(file: string): Promise<Set<string>> {
  let text: string;
  try {
    text = await readFile(file, "utf8");
  } catch (error) {
    throw new ConfigError(
      "intro-allowed-keys",
      `cannot read --allowed-keys ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      { file },
      { cause: error },
    );
  }
  return parseAllowedKeys(text, file);
}

export interface AllowedKeysWatcher {
  /** Reads the file again now (SIGHUP); resolves once the new list is applied or rejected. */
  reload(): Promise<void>;
  close(): void;
}

/** Editors write in bursts (truncate, write, rename): one read after the burst settles. */
const SETTLE_MS = 100;

/**
 * Watches `file` and calls `onChange` with each new, valid and different list. `initial` is the list
 * the caller loaded at start.
 */
export function watchAllowedKeys(
  file: string,
  initial: ReadonlySet<string>,
  onChange: (keys: ReadonlySet<string>) => void,
  log: Logger,
): AllowedKeysWatcher {
  let current = initial;
  let timer: NodeJS.Timeout | undefined;
  let reading: Promise<void> = Promise.resolve();
  let closed = false;

  async function readAndApply(): Promise<void> {
    if (closed) return;
    let next: Set<string>;
    try {
      next = await loadAllowedKeys(file);
    } catch (error) {
      log.error(
        { file, err: (error as Error).message },
        "allowed keys not reloaded; keeping the previous list",
      );
      return;
    }
    if (closed) return;
    const added = [...next].filter((key) => !current.has(key)).length;
    const removed = [...current].filter((key) => !next.has(key)).length;
    if (added === 0 && removed === 0) return;
    current = next;
    log.info({ file, keys: next.size, added, removed }, "allowed keys reloaded");
    onChange(next);
  }

  // Reads run one after another, so a slow read cannot apply an older list over a newer one.
  const reload = () => {
    reading = reading.then(readAndApply);
    return reading;
  };

  let watcher: FSWatcher | undefined;
  try {
    // Any change in the directory, not only to this name: editors rename a new file over the old
    // one, Kubernetes swaps a `..data` symlink; reading again and comparing is cheap.
    watcher = watch(dirname(file), { persistent: false }, () => {
      clearTimeout(timer);
      timer = setTimeout(() => void reload(), SETTLE_MS);
    });
    watcher.on("error", (error) =>
      log.warn({ file, err: error.message }, "cannot watch allowed keys; SIGHUP still reloads"),
    );
  } catch (error) {
    log.warn({ file, err: (error as Error).message }, "cannot watch allowed keys; SIGHUP still reloads");
  }

  return {
    reload,
    close() {
      closed = true;
      clearTimeout(timer);
      watcher?.close();
    },
  };
}
