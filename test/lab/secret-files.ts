import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/**
 * Secrets the lab hands to its processes as files (`--turn-password-file`, `--turn-secret-file`), as a
 * deployment should: never in argv, where every user of the host can read them. 0600 files in a 0700
 * directory of their own, removed by `cleanup`.
 */
export class SecretFiles {
  readonly dir = mkdtempSync(join(tmpdir(), "tbt-secrets-"));
  private count = 0;

  /** Writes `value` to a new file and returns its path. */
  write(name: string, value: string): string {
    const file = join(this.dir, `${this.count++}-${name.replace(/[^A-Za-z0-9_-]/g, "_")}`);
    writeFileSync(file, `${value}\n`, { mode: 0o600, flag: "wx" });
    return file;
  }

  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
