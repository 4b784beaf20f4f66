import { join } from "node:path";
import { readStateFile, replaceStateFile, type StateFile, unreadable } from "../files/state-file.js";

/** Far more than thousands of peers take; a bigger file is not ours. */
const MAX_STATE_BYTES = 4 << 20;

/**
 * The real endpoints Tunnelbore replaced with L(P), kept on disk: after a crash or SIGKILL, WireGuard
 * still points at L(P), and only this file still knows where the peer really is. Root reads and writes
 * it as a state file (src/files/state-file.ts: a safe directory, no symlinks, replaced atomically).
 */
export class EndpointState {
  private originals = new Map<string, string>();
  private readonly state: StateFile;
  /** Saves run one at a time, so an older snapshot never lands after a newer one. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    dir: string,
    readonly interfaceName: string,
  ) {
    this.state = {
      dir,
      file: join(dir, `${interfaceName}.endpoints.json`),
      maxBytes: MAX_STATE_BYTES,
      remedy: "move it away to start without the remembered endpoints",
    };
  }

  /** Reads the file, if any; fails (before anything is changed) when the directory is unsafe. */
  async load(): Promise<void> {
    const text = await readStateFile(this.state);
    if (text === null) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // No cause: V8's message quotes the first bytes of the file.
      throw unreadable(this.state, "is not valid JSON");
    }
    const peers = (parsed as { peers?: unknown } | null)?.peers;
    if (peers && typeof peers === "object") {
      for (const [key, value] of Object.entries(peers)) {
        if (typeof value === "string") this.originals.set(key, value);
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

  /**
   * Remembers many real endpoints with one write of the file (none when nothing changed). Answers the
   * keys not remembered, as a validating keeper would (privileged-server.ts): none here.
   */
  async setMany(entries: Iterable<[publicKey: string, endpoint: string]>): Promise<string[]> {
    let changed = false;
    for (const [publicKey, endpoint] of entries) {
      if (this.originals.get(publicKey) === endpoint) continue;
      this.originals.set(publicKey, endpoint);
      changed = true;
    }
    if (changed) await this.save();
    return [];
  }

  /** Forgets many peers with one write of the file (none when none was remembered). */
  async deleteMany(publicKeys: Iterable<string>): Promise<void> {
    let changed = false;
    for (const publicKey of publicKeys) if (this.originals.delete(publicKey)) changed = true;
    if (changed) await this.save();
  }

  private save(): Promise<void> {
    const body = JSON.stringify(
      { interface: this.interfaceName, peers: Object.fromEntries(this.originals) },
      null,
      2,
    );
    const saved = this.saving.then(() => replaceStateFile(this.state, body));
    this.saving = saved.catch(() => undefined);
    return saved;
  }
}
