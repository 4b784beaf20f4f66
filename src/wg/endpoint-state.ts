import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeError } from "../errors.js";

/**
 * The real endpoints Tunnelbore replaced with L(P), kept on disk: after a crash or SIGKILL, WireGuard
 * still points at L(P), and only this file still knows where the peer really is.
 */
export class EndpointState {
  private originals = new Map<string, string>();
  private readonly file: string;

  constructor(
    dir: string,
    readonly interfaceName: string,
  ) {
    this.file = join(dir, `${interfaceName}.endpoints.json`);
  }

  async load(): Promise<void> {
    try {
      const parsed: unknown = JSON.parse(await readFile(this.file, "utf8"));
      const peers = (parsed as { peers?: unknown }).peers;
      if (peers && typeof peers === "object") {
        for (const [key, value] of Object.entries(peers)) {
          if (typeof value === "string") this.originals.set(key, value);
        }
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") {
        throw new RuntimeError("state-unreadable", `cannot read ${this.file}: ${String(err)}`, {
          file: this.file,
        });
      }
    }
  }

  original(publicKey: string): string | undefined {
    return this.originals.get(publicKey);
  }

  entries(): [string, string][] {
    return [...this.originals];
  }

  async set(publicKey: string, endpoint: string): Promise<void> {
    if (this.originals.get(publicKey) === endpoint) return;
    this.originals.set(publicKey, endpoint);
    await this.save();
  }

  async delete(publicKey: string): Promise<void> {
    if (this.originals.delete(publicKey)) await this.save();
  }

  /** Write-then-rename, so a crash never leaves half a file. */
  private async save(): Promise<void> {
    const dir = join(this.file, "..");
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const body = JSON.stringify(
      { interface: this.interfaceName, peers: Object.fromEntries(this.originals) },
      null,
      2,
    );
    await writeFile(tmp, body, { mode: 0o600 });
    await rename(tmp, this.file);
  }
}
