// The receive and send buffers of another process's UDP sockets, set from outside it (the C helper
// test/lab/socket-buffers.c, built with cc or clang on first use). Debian's wireguard-go (0.0.20220316) keeps
// the kernel's 208 KiB default; wireguard-go has set 7 MiB itself since 2023 (conn.socketBufferSize).
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);
const SOURCE = fileURLToPath(new URL("./socket-buffers.c", import.meta.url));
/**
 * Built once per source (named by its hash) in the project's npm cache folder, shared by every test
 * process: a temporary folder per process was left behind by workers that exit without an 'exit' event.
 */
const BUILD_DIR = fileURLToPath(new URL("../../node_modules/.cache/tunnelbore/", import.meta.url));

/** What wireguard-go asks for since 2023 (7 << 20; the kernel doubles a setsockopt size). */
export const WIREGUARD_GO_SOCKET_BUFFER = 7 << 20;

/** The size a new UDP socket gets (net.core.rmem_default), as setsockopt takes it (halved). */
export function defaultSocketBuffer(): number {
  return Number(readFileSync("/proc/sys/net/core/rmem_default", "utf8").trim()) / 2;
}

let built: Promise<string> | null = null;

function helper(): Promise<string> {
  built ??= (async () => {
    const hash = createHash("sha256").update(readFileSync(SOURCE)).digest("hex").slice(0, 16);
    const binary = join(BUILD_DIR, `socket-buffers-${hash}`);
    if (existsSync(binary)) return binary;
    mkdirSync(BUILD_DIR, { recursive: true });
    // Built under a name of its own, then renamed: test processes building at once never see half a file.
    const partial = `${binary}.${process.pid}.partial`;
    // cc where there is one; clang otherwise (scripts/install-deps.sh installs it for the BPF program).
    for (const compiler of ["cc", "clang"]) {
      try {
        await execFileAsync(compiler, ["-O2", "-Wall", "-o", partial, SOURCE], { timeout: 60_000 });
        renameSync(partial, binary);
        return binary;
      } catch (err) {
        rmSync(partial, { force: true });
        if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      }
    }
    throw new Error(`no C compiler (cc or clang) to build ${SOURCE}`);
  })();
  return built;
}

/**
 * Sets SO_RCVBUF and SO_SNDBUF of every UDP socket of `pid` to `bytes` (as setsockopt takes it: the
 * kernel charges twice that). Needs root (pidfd_getfd). Returns how many sockets it changed.
 */
export async function setUdpSocketBuffers(pid: number, bytes: number): Promise<number> {
  const { stdout } = await execFileAsync(await helper(), [String(pid), String(bytes)], { timeout: 10_000 });
  return Number(stdout.trim());
}
