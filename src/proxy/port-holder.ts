import { readdir, readFile, readlink } from "node:fs/promises";
import { endianness } from "node:os";

/**
 * Who holds a UDP address:port we could not bind: the uid from /proc/net/udp{,6} (always there), and
 * the processes whose file descriptors are that socket (found as root; best effort).
 */
export interface UdpPortHolder {
  uid: number;
  user: string | null;
  processes: { pid: number; program: string }[];
}

interface SocketEntry {
  address: string;
  port: number;
  uid: number;
  inode: number;
}

/** The sockets of this network namespace that keep `address:port` (IPv4) from being bound. */
export async function findUdpPortHolders(address: string, port: number): Promise<UdpPortHolder[]> {
  const entries = [
    ...parseProcNetUdp(await readFile("/proc/net/udp", "utf8").catch(() => ""), 4),
    ...parseProcNetUdp(await readFile("/proc/net/udp6", "utf8").catch(() => ""), 6),
  ].filter((e) => e.port === port && conflicts(e.address, address));
  if (entries.length === 0) return [];
  const owners = await socketOwners(new Set(entries.map((e) => e.inode)));
  const users = await userNames();
  return entries.map((e) => ({
    uid: e.uid,
    user: users.get(e.uid) ?? null,
    processes: owners.get(e.inode) ?? [],
  }));
}

/** "uid 65534 (nobody), pid 4242 (node)"; "an unknown holder" when /proc tells nothing. Never throws. */
export async function describeUdpPortHolder(address: string, port: number): Promise<string> {
  let holders: UdpPortHolder[];
  try {
    holders = await findUdpPortHolders(address, port);
  } catch {
    holders = [];
  }
  if (holders.length === 0) return "an unknown holder";
  return holders
    .map((h) => {
      const who = `uid ${h.uid}${h.user ? ` (${h.user})` : ""}`;
      const pids = h.processes.map((p) => `pid ${p.pid} (${p.program})`);
      return [who, ...pids].join(", ");
    })
    .join("; ");
}

/** The compressed form ("::1"), so that an address from /proc compares equal to one from --listen. */
function canonicalIPv6(address: string): string {
  try {
    return new URL(`http://[${address}]/`).hostname.slice(1, -1);
  } catch {
    return address;
  }
}

/** A socket bound to `held` blocks a bind to `wanted` when either is a wildcard or they are equal. */
function conflicts(held: string, wanted: string): boolean {
  if (wanted.includes(":")) return held === "::" || held === canonicalIPv6(wanted);
  return (
    held === wanted ||
    held === "0.0.0.0" ||
    held === "::" ||
    wanted === "0.0.0.0" ||
    held === `::ffff:${wanted}`
  );
}

/**
 * /proc/net/udp lines: "sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...",
 * the local address in hex as the kernel's 32-bit words print on this host (little-endian: reversed).
 */
export function parseProcNetUdp(text: string, family: 4 | 6): SocketEntry[] {
  const entries: SocketEntry[] = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10) continue;
    const [hexAddress, hexPort] = (fields[1] ?? "").split(":");
    if (!hexAddress || !hexPort) continue;
    const address = family === 4 ? ipv4FromHex(hexAddress) : ipv6FromHex(hexAddress);
    const port = Number.parseInt(hexPort, 16);
    const uid = Number(fields[7]);
    const inode = Number(fields[9]);
    if (address === null || !Number.isInteger(port) || !Number.isInteger(uid) || !Number.isInteger(inode))
      continue;
    entries.push({ address, port, uid, inode });
  }
  return entries;
}

function wordBytes(hex: string): number[] | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  const n = Number.parseInt(hex, 16);
  const bytes = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255];
  return endianness() === "LE" ? bytes.reverse() : bytes;
}

function ipv4FromHex(hex: string): string | null {
  return wordBytes(hex)?.join(".") ?? null;
}

function ipv6FromHex(hex: string): string | null {
  if (hex.length !== 32) return null;
  const bytes: number[] = [];
  for (let i = 0; i < 32; i += 8) {
    const word = wordBytes(hex.slice(i, i + 8));
    if (!word) return null;
    bytes.push(...word);
  }
  if (bytes.every((b) => b === 0)) return "::";
  if (bytes.slice(0, 10).every((b) => b === 0) && bytes[10] === 255 && bytes[11] === 255) {
    return `::ffff:${bytes.slice(12).join(".")}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  return canonicalIPv6(groups.join(":"));
}

/** inode -> the processes with a file descriptor on that socket (only what we may read in /proc). */
async function socketOwners(inodes: Set<number>): Promise<Map<number, { pid: number; program: string }[]>> {
  const owners = new Map<number, { pid: number; program: string }[]>();
  const pids = (await readdir("/proc").catch(() => [] as string[])).filter((name) => /^\d+$/.test(name));
  for (const pid of pids) {
    const fds = await readdir(`/proc/${pid}/fd`).catch(() => [] as string[]);
    for (const fd of fds) {
      const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
      const match = /^socket:\[(\d+)\]$/.exec(target);
      const inode = match ? Number(match[1]) : -1;
      if (!inodes.has(inode)) continue;
      // The holder names itself (prctl): printable ASCII only, for our logs and messages.
      const comm = await readFile(`/proc/${pid}/comm`, "utf8").catch(() => "?");
      const program = comm.trim().replace(/[^\x20-\x7e]/g, "?");
      const list = owners.get(inode) ?? [];
      if (!list.some((p) => p.pid === Number(pid))) list.push({ pid: Number(pid), program });
      owners.set(inode, list);
    }
  }
  return owners;
}

async function userNames(): Promise<Map<number, string>> {
  const names = new Map<number, string>();
  const passwd = await readFile("/etc/passwd", "utf8").catch(() => "");
  for (const line of passwd.split("\n")) {
    const [name, , uid] = line.split(":");
    if (name && uid && /^\d+$/.test(uid)) names.set(Number(uid), name);
  }
  return names;
}
