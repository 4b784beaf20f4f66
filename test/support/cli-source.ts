// The CLI run from its TypeScript source (tsx), as a user would run it: for tests of help, usage errors
// and exit codes that need no build.
import { execFile } from "node:child_process";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const ROOT = resolve(import.meta.dirname, "../..");
const CLI_SOURCE = join(ROOT, "src/cli.ts");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export async function runCliSource(args: string[]): Promise<CliResult> {
  try {
    const { stdout, stderr } = await execFileAsync(
      process.execPath,
      ["--import", "tsx", CLI_SOURCE, ...args],
      {
        cwd: ROOT,
        timeout: 30_000,
      },
    );
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}
