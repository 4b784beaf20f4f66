// `wg show IF dump` into one buffer kept between reads. A hub's dump is 1.5 MB at 10,000 peers and is
// read every 2 s: through a pipe it arrived as new 64 KiB buffers each time, memory outside V8's heap
// that an idle process collects only when that memory reaches V8's external limit, which held the
// parent 25-40 MiB above its need (issue 16). wg writes to a new unlinked file, read back in place.
import { spawn } from "node:child_process";
import { closeSync, constants, fstatSync, mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { wgFailure } from "./wg-command.js";

export class DumpFile {
  private buffer = Buffer.alloc(64 * 1024);

  /** The dump of `name`: a view of the kept buffer, valid until the next read. */
  async read(name: string): Promise<Buffer> {
    const fd = openPrivateFile();
    try {
      await wgInto(fd, name);
      const { size } = fstatSync(fd);
      if (size > this.buffer.length) this.buffer = Buffer.alloc(Math.ceil(size * 1.25));
      let got = 0;
      while (got < size) {
        const n = readSync(fd, this.buffer, got, size - got, got);
        if (n === 0) break;
        got += n;
      }
      return this.buffer.subarray(0, got);
    } finally {
      closeSync(fd);
    }
  }
}

/** Whether openPrivateFile works here (a writable temporary directory). */
export function canMakePrivateFiles(): boolean {
  try {
    closeSync(openPrivateFile());
    return true;
  } catch {
    return false;
  }
}

/** A new file only this process holds: made in a private directory, both unlinked at once. */
function openPrivateFile(): number {
  const dir = mkdtempSync(join(tmpdir(), "tunnelbore-dump-"));
  try {
    const { O_RDWR, O_CREAT, O_EXCL } = constants;
    return openSync(join(dir, "dump"), O_RDWR | O_CREAT | O_EXCL, 0o600);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** `wg show NAME dump` with its output into `fd`. */
function wgInto(fd: number, name: string): Promise<void> {
  const args = ["show", name, "dump"];
  return new Promise<void>((resolve, reject) => {
    const child = spawn("wg", args, { stdio: ["ignore", fd, "pipe"] });
    const stderr: Buffer[] = [];
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(wgFailure(name, args, err.code, "", err.message)),
    );
    child.once("close", (code) => {
      if (code === 0) resolve();
      else reject(wgFailure(name, args, code ?? undefined, Buffer.concat(stderr).toString().trim()));
    });
  });
}
