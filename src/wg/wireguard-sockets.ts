// A userspace WireGuard's own UDP sockets (IPv4 and IPv6, on the interface's listen port), as the
// kernel's sock_diag shows them: their receive buffer and the datagrams they dropped. Debian 12's
// wireguard-go keeps the default 208 KiB and drops 13-17 % at 400 Mbit/s (docs/benchmarks.md); the
// kernel module has no such socket, so a kernel interface has nothing to show.
// Read through `ss -uanmH` (iproute2): Node has no netlink socket (sock_diag directly would need native
// code), /proc/net/udp has the drops but not the buffer size, and getsockopt would mean taking
// WireGuard's file descriptor.
import { execFile } from "node:child_process";
import { access } from "node:fs/promises";
import { promisify } from "node:util";
import { INTERFACE_NAME } from "./interface-set.js";

const execFileAsync = promisify(execFile);

/** One socket of WireGuard's, as `ss -m` shows it. */
export interface WireGuardSocketMemory {
  /** Its local address as ss prints it ("0.0.0.0:51820", "[::]:51820"). */
  local: string;
  /** The receive buffer the kernel gives it (ss's rb: what SO_RCVBUF reads, twice what was set). */
  receiveBufferBytes: number;
  /** Datagrams dropped since it was opened (ss's d), mostly for a full buffer; null when not shown. */
  drops: number | null;
}

/** What `status` shows of a userspace WireGuard's sockets. */
export interface WireGuardSocketStatus {
  /** The listen port they were found by. */
  port: number;
  /** The smallest of their receive buffers; null when unknown. */
  receiveBufferBytes: number | null;
  /** Their drops together; null when unknown. */
  drops: number | null;
  sockets: WireGuardSocketMemory[];
  /** Why the figures are unknown (no ss, its output not understood, no socket found); null when known. */
  unknown: string | null;
}

/** WireGuard's sockets on `port` could not be read, for `reason`. */
export function unknownSocketStatus(port: number, reason: string): WireGuardSocketStatus {
  return { port, receiveBufferBytes: null, drops: null, sockets: [], unknown: reason };
}

/** Runs `ss ARGS` and answers its output. */
export type SsCommand = (args: string[]) => Promise<string>;

const SS_TIMEOUT_MS = 5000;

const runSs: SsCommand = async (args) =>
  (await execFileAsync("ss", args, { timeout: SS_TIMEOUT_MS, maxBuffer: 1 << 20 })).stdout;

/** A tun device is a userspace WireGuard's (wireguard-go, boringtun); the kernel module's is not one. */
export async function isUserspaceInterface(name: string): Promise<boolean> {
  if (!INTERFACE_NAME.test(name)) return false;
  return access(`/sys/class/net/${name}/tun_flags`).then(
    () => true,
    () => false,
  );
}

/**
 * The interface's WireGuard sockets, or null when WireGuard is the kernel's (no socket of its own).
 * Never throws: what cannot be read is `unknown`, with the reason.
 */
export async function readWireGuardSockets(
  name: string,
  port: number,
  deps: { ss?: SsCommand; isUserspace?: (name: string) => Promise<boolean> } = {},
): Promise<WireGuardSocketStatus | null> {
  const { ss = runSs, isUserspace = isUserspaceInterface } = deps;
  if (!(await isUserspace(name))) return null;
  const unknown = (reason: string) => unknownSocketStatus(port, reason);
  if (!Number.isInteger(port) || port < 1 || port > 65535) return unknown("the interface has no listen port");
  let text: string;
  try {
    // The filter runs in the kernel: only this port's sockets are dumped, whatever else the host has.
    text = await ss(["-uanmH", `sport = :${port}`]);
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") return unknown("ss (iproute2) is not installed");
    return unknown(`ss failed: ${(e.stderr?.trim() || e.message).slice(0, 200)}`);
  }
  const sockets = parseSocketMemory(text, port);
  if (sockets === "unknown") return unknown("unexpected output of ss -m");
  if (sockets.length === 0) return unknown(`no UDP socket on port ${port} in this network namespace`);
  const drops = sockets.map((s) => s.drops);
  return {
    port,
    receiveBufferBytes: Math.min(...sockets.map((s) => s.receiveBufferBytes)),
    drops: drops.every((d) => d !== null) ? drops.reduce((sum: number, d) => sum + (d ?? 0), 0) : null,
    sockets,
    unknown: null,
  };
}

/** "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*": state, the two queues, local and peer address. */
const SOCKET_LINE = /^([A-Z][A-Z0-9-]*)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)(?:\s|$)/;
/** "skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)" */
const SKMEM = /(?:^|\s)skmem:\(([^)]*)\)/;
const SKMEM_FIELD = /^([a-z]+)(\d+)$/;

/**
 * The UDP sockets on `port` in `ss -uanmH` output, or "unknown" when it is not what ss prints: a
 * socket's line, then (indented, or on the same line with -O) its skmem. Sockets on other ports are
 * left out; a socket without a readable rb makes the whole "unknown", never a guess.
 */
export function parseSocketMemory(text: string, port: number): WireGuardSocketMemory[] | "unknown" {
  // A record is a line that starts a socket and the indented lines that continue it.
  const records: string[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    if (/^\s/.test(line)) {
      if (records.length === 0) return "unknown";
      records[records.length - 1] += ` ${line.trim()}`;
    } else records.push(line);
  }
  const sockets: WireGuardSocketMemory[] = [];
  for (const record of records) {
    const head = SOCKET_LINE.exec(record);
    const skmem = SKMEM.exec(record)?.[1];
    if (!head || skmem === undefined) return "unknown";
    const local = head[4] as string;
    const localPort = /:(\d{1,5})$/.exec(local)?.[1];
    if (localPort === undefined) return "unknown";
    if (Number(localPort) !== port) continue;
    const fields = new Map<string, number>();
    for (const item of skmem.split(",")) {
      const field = SKMEM_FIELD.exec(item);
      if (!field) return "unknown";
      fields.set(field[1] as string, Number(field[2]));
    }
    const receiveBufferBytes = fields.get("rb");
    if (receiveBufferBytes === undefined || !Number.isSafeInteger(receiveBufferBytes)) return "unknown";
    const drops = fields.get("d");
    sockets.push({
      local,
      receiveBufferBytes,
      drops: drops !== undefined && Number.isSafeInteger(drops) ? drops : null,
    });
  }
  return sockets;
}
