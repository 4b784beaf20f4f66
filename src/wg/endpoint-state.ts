import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { RuntimeError } from "../errors.js";
import { ensureSecureDirectory } from "../files/secure-directory.js";

/** Far more than thousands of peers take; a bigger file is not ours. */
const MAX_STATE_BYTES = 4 << 20;

/**
 * The real endpoints Tunnelbore replaced with L(P), kept on disk: after a crash or SIGKILL, WireGuard
 * still points at L(P), and only this file still knows where the peer really is.
 *
 * Root reads and writes it, so it lives only in a directory nobody else can write (checked), is never
 * reached through a symlink (O_NOFOLLOW), and is replaced through a fresh random temporary file
 * (O_EXCL), never written in place. Errors name the file, never quote its content.
 */
export class EndpointState {
  private originals = new Map<string, string>();
  private readonly file: string;
  private readonly dir: string;
  /** Saves run one at a time, so an older snapshot never lands after a newer one. */
  private saving: Promise<void> = Promise.resolve();

  constructor(
    dir: string,
    readonly interfaceName: string,
  ) {
    this.dir = dir;
    this.file = join(dir, `${interfaceName}.endpoints.json`);
  }

  /** Reads the file, if any; fails (before anything is changed) when the directory is unsafe. */
  async load(): Promise<void> {
    await ensureSecureDirectory(this.dir, "state directory", 0o700);
    let handle: FileHandle;
    try {
      handle = await open(this.file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT") return;
      throw this.unreadable(code === "ELOOP" ? "is a symbolic link" : `cannot be opened (${code})`, err);
    }
    let text: string;
    try {
      const info = await handle.stat();
      if (!info.isFile()) throw this.unreadable("is not a regular file");
      if (info.size > MAX_STATE_BYTES) throw this.unreadable(`is larger than ${MAX_STATE_BYTES} bytes`);
      text = await handle.readFile("utf8");
    } catch (err) {
      if (err instanceof RuntimeError) throw err;
      throw this.unreadable(`cannot be read (${(err as NodeJS.ErrnoException).code})`, err);
    } finally {
      await handle.close();
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      // No cause: V8's message quotes the first bytes of the file.
      throw this.unreadable("is not valid JSON");
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
    const saved = this.saving.then(() => this.replaceFile(body));
    this.saving = saved.catch(() => undefined);
    return saved;
  }

  /** Write a fresh temporary file, fsync, rename: a crash never leaves half a file. */
  private async replaceFile(body: string): Promise<void> {
    await ensureSecureDirectory(this.dir, "state directory", 0o700);
    const tmp = join(this.dir, `.${basename(this.file)}.${randomBytes(12).toString("hex")}.tmp`);
    try {
      const handle = await open(
        tmp,
        constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
        0o600,
      );
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, this.file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new RuntimeError(
        "state-unwritable",
        `cannot write ${this.file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
        { file: this.file },
        { cause: err },
      );
    }
    await syncDirectory(dirname(this.file));
  }

  private unreadable(problem: string, cause?: unknown): RuntimeError {
    return new RuntimeError(
      "state-unreadable",
      `state file ${this.file} ${problem}: move it away to start without the remembered endpoints`,
      { file: this.file },
      cause === undefined ? undefined : { cause },
    );
  }
}

/** Makes the rename durable; best effort (some file systems refuse fsync on a directory). */
async function syncDirectory(dir: string): Promise<void> {
  try {
    const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY);
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // durability only
  }
}
