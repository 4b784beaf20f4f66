// Hand-made Ethernet frames for the fast path program (test/integration/kernel-*.test.ts): IPv4 or IPv6
// with UDP, checksums computed here, parsed back with every length and checksum checked; and one run
// of a pinned program on a frame (BPF_PROG_TEST_RUN through `bpftool prog run`).
import { execFile } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { isIPv6 } from "node:net";
import { join } from "node:path";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

export const TC_ACT_UNSPEC = 0xffffffff;
export const TC_ACT_REDIRECT = 7;

export interface Endpoint {
  address: string;
  port: number;
}

/** An address's bytes (IPv6 with "::" expanded). */
export function addressBytes(address: string): Buffer {
  if (!isIPv6(address)) return Buffer.from(address.split(".").map(Number));
  const [head = "", tail = ""] = address.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  const groups = address.includes("::")
    ? [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t]
    : h;
  const b = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) b.writeUInt16BE(Number.parseInt(g, 16), 2 * i);
  return b;
}

function addressText(b: Buffer): string {
  if (b.length === 4) return [...b].join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(":").replace(/(^|:)0(:0)+(:|$)/, "::");
}

function sum16(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += (buf[buf.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

/** The UDP checksum of `udp` (its check field zero) between `src` and `dst` (IPv4 or IPv6). */
function udpChecksum(src: Buffer, dst: Buffer, udp: Buffer): number {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(udp.length);
  const pseudo = Buffer.concat([src, dst, length, Buffer.from([0, 0, 0, 17])]);
  const c = ~sum16(udp, sum16(pseudo)) & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** An Ethernet frame with a UDP datagram, both checksums computed (none for UDP when asked; IPv4 only). */
export function frame(from: Endpoint, to: Endpoint, payload: Buffer, withUdpChecksum = true): Buffer {
  const v6 = isIPv6(from.address);
  const eth = Buffer.alloc(14);
  eth.fill(0x02, 0, 12);
  eth.writeUInt16BE(v6 ? 0x86dd : 0x0800, 12);
  const src = addressBytes(from.address);
  const dst = addressBytes(to.address);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(from.port, 0);
  udp.writeUInt16BE(to.port, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  const datagram = Buffer.concat([udp, payload]);
  if (withUdpChecksum) datagram.writeUInt16BE(udpChecksum(src, dst, datagram), 6);
  let ip: Buffer;
  if (v6) {
    ip = Buffer.alloc(40);
    ip[0] = 0x60;
    ip.writeUInt16BE(datagram.length, 4);
    ip[6] = 17;
    ip[7] = 64;
    src.copy(ip, 8);
    dst.copy(ip, 24);
  } else {
    ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + datagram.length, 2);
    ip[8] = 64;
    ip[9] = 17;
    src.copy(ip, 12);
    dst.copy(ip, 16);
    ip.writeUInt16BE(~sum16(ip) & 0xffff, 10);
  }
  return Buffer.concat([eth, ip, datagram]);
}

export interface Parsed {
  version: 4 | 6;
  from: Endpoint;
  to: Endpoint;
  payload: Buffer;
  /** The IPv4 header's checksum is right (always true for IPv6, which has none). */
  ipChecksumOk: boolean;
  udpChecksum: number;
  udpChecksumOk: boolean;
  /** Ethernet type, IP and UDP lengths agree with the frame. */
  lengthsOk: boolean;
}

export function parse(f: Buffer): Parsed {
  const v6 = f.readUInt16BE(12) === 0x86dd;
  const ipLength = v6 ? 40 : 20;
  const ip = f.subarray(14, 14 + ipLength);
  const total = v6 ? 40 + ip.readUInt16BE(4) : ip.readUInt16BE(2);
  const src = v6 ? ip.subarray(8, 24) : ip.subarray(12, 16);
  const dst = v6 ? ip.subarray(24, 40) : ip.subarray(16, 20);
  const udp = f.subarray(14 + ipLength, 14 + total);
  const check = udp.readUInt16BE(6);
  const zeroed = Buffer.from(udp);
  zeroed.writeUInt16BE(0, 6);
  const versionOk = v6 ? ip[0]! >> 4 === 6 && ip[6] === 17 : ip[0] === 0x45 && ip[9] === 17;
  return {
    version: v6 ? 6 : 4,
    from: { address: addressText(Buffer.from(src)), port: udp.readUInt16BE(0) },
    to: { address: addressText(Buffer.from(dst)), port: udp.readUInt16BE(2) },
    payload: udp.subarray(8),
    ipChecksumOk: v6 || sum16(ip) === 0xffff,
    udpChecksum: check,
    udpChecksumOk: check === udpChecksum(src, dst, zeroed),
    lengthsOk: versionOk && udp.readUInt16BE(4) === udp.length && f.length === 14 + total,
  };
}

/** A transport message (type 4) of `length` bytes. */
export function transport(length: number): Buffer {
  const m = Buffer.alloc(length);
  for (let i = 4; i < length; i++) m[i] = (i * 37 + 11) & 0xff;
  m[0] = 4;
  return m;
}

export function channelData(channel: number, data: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(channel, 0);
  header.writeUInt16BE(data.length, 2);
  return Buffer.concat([header, data]);
}

/** Where and how runProgram runs the program. */
export interface RunOptions {
  /** A namespace (/run/netns/NAME) to run in: its devices are the ones ifindexes name. */
  netns?: string;
  /** The skb's gso_size (a GSO buffer of segments of this many bytes of UDP payload). */
  gsoSize?: number;
}

/** struct __sk_buff's size and its gso_size field's offset (linux/bpf.h, Linux 5.12 on). */
const SKB_CTX_SIZE = 192;
const SKB_GSO_SIZE_OFFSET = 176;

/** Runs the pinned program once on `input` (files in `dir`): its verdict and the frame as it left. */
export async function runProgram(
  programPath: string,
  dir: string,
  input: Buffer,
  options: RunOptions = {},
): Promise<{ verdict: number; output: Buffer }> {
  const inFile = join(dir, "in");
  const outFile = join(dir, "out");
  writeFileSync(inFile, input);
  const args = [
    "prog",
    "run",
    "pinned",
    programPath,
    "data_in",
    inFile,
    "data_out",
    outFile,
    "data_size_out",
    "4096",
  ];
  if (options.gsoSize !== undefined) {
    const ctx = Buffer.alloc(SKB_CTX_SIZE);
    ctx.writeUInt32LE(options.gsoSize, SKB_GSO_SIZE_OFFSET);
    const ctxFile = join(dir, "ctx");
    writeFileSync(ctxFile, ctx);
    args.push("ctx_in", ctxFile);
  }
  // nsenter, not `ip netns exec`: that mounts a new /sys, hiding the pinned program in /sys/fs/bpf.
  const [cmd, cmdArgs] = options.netns
    ? ["nsenter", [`--net=/run/netns/${options.netns}`, "bpftool", ...args]]
    : ["bpftool", args];
  const { stdout } = await execFileAsync(cmd, cmdArgs);
  return { verdict: Number(/Return value: (\d+)/.exec(stdout)?.[1]), output: readFileSync(outFile) };
}
