import { mkdir, realpath, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { ConfigError } from "../errors.js";

/**
 * A directory root may write into only when nobody else can swap what is in it: it and every directory
 * above it are owned by root (or by us) and writable by nobody else, unless sticky (like /tmp: others
 * may add names there, but not rename or remove ours). Otherwise a planted symlink or a renamed
 * directory would make root write (or read) a file of the attacker's choosing.
 */
export async function checkSecureDirectory(dir: string, what: string): Promise<void> {
  let path: string;
  try {
    path = await realpath(dir);
  } catch (err) {
    throw new ConfigError(
      "unsafe-directory",
      `${what} ${dir} cannot be resolved (${(err as NodeJS.ErrnoException).code})`,
      { dir },
      { cause: err },
    );
  }
  const euid = process.geteuid?.() ?? 0;
  for (;;) {
    const info = await stat(path);
    const problem = !info.isDirectory()
      ? "is not a directory"
      : info.uid !== 0 && info.uid !== euid
        ? `is owned by uid ${info.uid}, not root`
        : (info.mode & 0o022) !== 0 && (info.mode & 0o1000) === 0
          ? `is writable by others (mode ${(info.mode & 0o7777).toString(8).padStart(4, "0")}) without the sticky bit`
          : null;
    if (problem) {
      const where = path === dir ? dir : `${dir}: ${path}`;
      throw new ConfigError(
        "unsafe-directory",
        `${what} ${where} ${problem}: anyone else could plant files there that root would follow (chown root and chmod go-w, or choose another directory)`,
        { dir, path },
      );
    }
    const parent = dirname(path);
    if (parent === path) return;
    path = parent;
  }
}

/** Creates `dir` (mode `mode` for what it creates) and checks it with checkSecureDirectory. */
export async function ensureSecureDirectory(dir: string, what: string, mode: number): Promise<void> {
  await mkdir(dir, { recursive: true, mode });
  await checkSecureDirectory(dir, what);
}
