// The lab's small C helpers (test/lab/*.c), built with cc or clang on first use.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
/**
 * Built once per source (named by its hash) in the project's npm cache folder, shared by every test
 * process: a temporary folder per process was left behind by workers that exit without an 'exit' event.
 */
const BUILD_DIR = fileURLToPath(new URL("../../node_modules/.cache/tunnelbore/", import.meta.url));

const built = new Map<string, Promise<string>>();

/** The path of the helper built from `source` (an absolute path to a .c file). */
export function cHelper(source: string): Promise<string> {
  let binary = built.get(source);
  if (!binary) {
    binary = build(source);
    built.set(source, binary);
  }
  return binary;
}

async function build(source: string): Promise<string> {
  const hash = createHash("sha256").update(readFileSync(source)).digest("hex").slice(0, 16);
  const binary = join(BUILD_DIR, `${basename(source, ".c")}-${hash}`);
  if (existsSync(binary)) return binary;
  mkdirSync(BUILD_DIR, { recursive: true });
  // Built under a name of its own, then renamed: test processes building at once never see half a file.
  const partial = `${binary}.${process.pid}.partial`;
  // cc where there is one; clang otherwise (scripts/install-deps.sh installs it for the BPF program).
  for (const compiler of ["cc", "clang"]) {
    try {
      await execFileAsync(compiler, ["-O2", "-Wall", "-o", partial, source], { timeout: 60_000 });
      renameSync(partial, binary);
      return binary;
    } catch (err) {
      rmSync(partial, { force: true });
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
  }
  throw new Error(`no C compiler (cc or clang) to build ${source}`);
}
