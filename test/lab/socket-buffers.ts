// The receive and send buffers of another process's UDP sockets, set from outside it (the C helper
// test/lab/socket-buffers.c, built with cc or clang on first use). Debian's wireguard-go (0.0.20220316) keeps
// the kernel's 208 KiB default; wireguard-go has set 7 MiB itself since 2023 (conn.socketBufferSize).
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { cHelper } from "./c-helper.js";

const execFileAsync = promisify(execFile);
const SOURCE = fileURLToPath(new URL("./socket-buffers.c", import.meta.url));

/** What wireguard-go asks for since 2023 (7 << 20; the kernel doubles a setsockopt size). */
export const WIREGUARD_GO_SOCKET_BUFFER = 7 << 20;

/** The size a new UDP socket gets (net.core.rmem_default), as setsockopt takes it (halved). */
export function defaultSocketBuffer(): number {
  return Number(readFileSync("/proc/sys/net/core/rmem_default", "utf8").trim()) / 2;
}

/**
 * Sets SO_RCVBUF and SO_SNDBUF of every UDP socket of `pid` to `bytes` (as setsockopt takes it: the
 * kernel charges twice that). Needs root (pidfd_getfd). Returns how many sockets it changed.
 */
export async function setUdpSocketBuffers(pid: number, bytes: number): Promise<number> {
  const { stdout } = await execFileAsync(await cHelper(SOURCE), [String(pid), String(bytes)], {
    timeout: 10_000,
  });
  return Number(stdout.trim());
}
