// `wg show IF dump` into one buffer kept between reads. A hub's dump is 1.5 MB at 10,000 peers and is
// read every 2 s: through a pipe it arrived as new 64 KiB buffers each time, memory outside V8's heap
// that an idle process collects only when that memory reaches V8's external limit, which held the
// parent 25-40 MiB above its need (issue 16). wg writes to a new unlinked file, read back in place.
// Its errors go there too: no pipe to set up per read (a userspace WireGuard is read without `wg`
// at all, uapi-socket.ts; this is for the kernel's).
import { spawn } from "node:child_process";
import {
  closeSync,
  constants,
  fstatSync,
  mkdtempSync,
  openSync,
  readSync,
  rmdirSync,
  unlinkSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dumpArgs, wgFailure } from "./wg-command.js";

export class DumpFile {
  private buffer = Buffer.alloc(64 * 1024);

  /** The dump of `name`: a view of the kept buffer, valid until the next read. */
  async read(name: string): Promise<Buffer> {
    const fd = openPrivateFile();
    try {
      const code = await wgInto(fd, name);
      const { size } = fstatSync(fd);
      if (size > this.buffer.length) this.buffer = Buffer.alloc(Math.ceil(size * 1.25));
      let got = 0;
      while (got < size) {
        const n = readSync(fd, this.buffer, got, size - got, got);
        if (n === 0) break;
        got += n;
      }
      const output = this.buffer.subarray(0, got);
      if (code !== 0) throw wgFailure(name, dumpArgs(name), code, output.toString().trim());
      return output;
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
  const path = join(dir, "dump");
  try {
    const { O_RDWR, O_CREAT, O_EXCL } = constants;
    return openSync(path, O_RDWR | O_CREAT | O_EXCL, 0o600);
  } finally {
    // Two system calls, where a recursive rm cost a few ms a read at a hub.
    try {
      unlinkSync(path);
    } catch {
      // Not made.
    }
    rmdirSync(dir);
  }
}

/** `wg show NAME dump` with its output and errors into `fd`; resolves with its exit code. */
function wgInto(fd: number, name: string): Promise<number> {
  const args = dumpArgs(name);
  return new Promise<number>((resolve, reject) => {
    const child = spawn("wg", args, { stdio: ["ignore", fd, fd] });
    child.once("error", (err: NodeJS.ErrnoException) =>
      reject(wgFailure(name, args, err.code, "", err.message)),
    );
    child.once("close", (code) => resolve(code ?? 1));
  });
}
