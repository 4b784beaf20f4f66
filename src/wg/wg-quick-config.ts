// What Tunnelbore must know of a wg-quick configuration file: wg-quick's `SaveConfig = true` writes the
// interface's current endpoints (our 127.x loopback addresses) into the file at `wg-quick down`, after
// running its PreDown hooks. `PreDown = tunnelbore release --interface %i` gives WireGuard the real
// endpoints back first.
import { readFile } from "node:fs/promises";

export interface WgQuickConfigCheck {
  /** `SaveConfig = true` in [Interface]. */
  saveConfig: boolean;
  /** A PreDown hook runs `tunnelbore release`. */
  releasesBeforeSave: boolean;
}

/** The hook users add to [Interface], as the warning and the README say. */
export const RELEASE_HOOK = "PreDown = tunnelbore release --interface %i";

/** Reads the [Interface] section's SaveConfig and PreDown lines (wg-quick's own syntax: `Key = value`). */
export function checkWgQuickConfig(text: string): WgQuickConfigCheck {
  let section = "";
  let saveConfig = false;
  let releasesBeforeSave = false;
  for (const raw of text.split("\n")) {
    const line = raw.replace(/#.*$/, "").trim();
    const header = /^\[(\w+)\]$/.exec(line);
    if (header) {
      section = (header[1] ?? "").toLowerCase();
      continue;
    }
    const kv = /^(\w+)\s*=\s*(.*)$/.exec(line);
    if (!kv || section !== "interface") continue;
    const key = (kv[1] ?? "").toLowerCase();
    const value = kv[2] ?? "";
    if (key === "saveconfig") saveConfig = value.toLowerCase() === "true";
    if (key === "predown" && /\btunnelbore\b.*\brelease\b/.test(value)) releasesBeforeSave = true;
  }
  return { saveConfig, releasesBeforeSave };
}

/** The check of a configuration file, or null when there is none (or it cannot be read). */
export async function checkWgQuickConfigFile(path: string): Promise<WgQuickConfigCheck | null> {
  try {
    return checkWgQuickConfig(await readFile(path, "utf8"));
  } catch {
    return null;
  }
}
