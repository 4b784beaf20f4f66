import type { Logger } from "../log.js";
import { RELEASE_HOOK, type WgQuickConfigCheck } from "./wg-quick-config.js";

/**
 * What the wg-quick file's check means for the user: nothing, a note (SaveConfig with the release
 * hook), or a warning for status (SaveConfig would save Tunnelbore's 127.x endpoints). Logs it once.
 */
export function wgQuickWarning(check: WgQuickConfigCheck | null, file: string, log: Logger): string | null {
  if (!check?.saveConfig) return null;
  if (check.releasesBeforeSave) {
    log.info({ file }, "wg-quick SaveConfig is on; its PreDown hook gives WireGuard the real endpoints back");
    return null;
  }
  log.warn(
    { file, fix: RELEASE_HOOK },
    "wg-quick SaveConfig = true: `wg-quick down` would save Tunnelbore's 127.x endpoints into the file; add the PreDown hook to its [Interface] section",
  );
  return `${file} has SaveConfig = true: wg-quick down would save 127.x endpoints; add "${RELEASE_HOOK}" to its [Interface]`;
}
