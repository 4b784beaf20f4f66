// A small file root keeps in its state directory (the endpoints it replaced, the interfaces' catch-all
// ports). Only a directory nobody else can write holds it (checked); it is read without following a
// symlink and only when it is a small regular file; it is replaced through a fresh random temporary
// file (O_EXCL, 0600), fsynced and renamed, never written in place, so a crash never leaves half a
// file. Errors name the file and never quote its content.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { RuntimeError } from "../errors.js";
import { ensureSecureDirectory } from "./secure-directory.js";

export interface StateFile {
  /** The state directory, checked (and created 0700) before every read and write. */
  dir: string;
  file: string;
  /** A bigger file is not ours. */
  maxBytes: number;
  /** What the user can do about an unreadable file, e.g. "move it away to start afresh". */
  remedy: string;
}

/** The file's text, or null when there is none; a RuntimeError "state-unreadable" otherwise. */
export async function readStateFile(state: StateFile): Promise<string | null> {
  await ensureSecureDirectory(state.dir, "state directory", 0o700);
  let handle: FileHandle;
  try {
    handle = await open(state.file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return null;
    throw unreadable(state, code === "ELOOP" ? "is a symbolic link" : `cannot be opened (${code})`, err);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw unreadable(state, "is not a regular file");
    if (info.size > state.maxBytes) throw unreadable(state, `is larger than ${state.maxBytes} bytes`);
    return await handle.readFile("utf8");
  } catch (err) {
    if (err instanceof RuntimeError) throw err;
    throw unreadable(state, `cannot be read (${(err as NodeJS.ErrnoException).code})`, err);
  } finally {
    await handle.close();
  }
}

/** The error for a file that is there but not usable (bad content included: say so, not what). */
export function unreadable(state: StateFile, problem: string, cause?: unknown): RuntimeError {
  return new RuntimeError(
    "state-unreadable",
    `state file ${state.file} ${problem}: ${state.remedy}`,
    { file: state.file },
    cause === undefined ? undefined : { cause },
  );
}

/** Replaces the file with `body` (temporary file, fsync, rename, directory fsync). */
export async function replaceStateFile(state: StateFile, body: string): Promise<void> {
  await ensureSecureDirectory(state.dir, "state directory", 0o700);
  const tmp = join(state.dir, `.${basename(state.file)}.${randomBytes(12).toString("hex")}.tmp`);
  try {
    const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
    const handle = await open(tmp, flags, 0o600);
    try {
      await handle.writeFile(body);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, state.file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new RuntimeError(
      "state-unwritable",
      `cannot write ${state.file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      { file: state.file },
      { cause: err },
    );
  }
  await syncDirectory(dirname(state.file));
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
