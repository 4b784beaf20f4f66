// The fast path program on hand-made packets (BPF_PROG_TEST_RUN through `bpftool prog run`): a relayed
// path's datagrams get their TURN ChannelData header (RFC 8656 section 12) outbound and lose it
// inbound, with addresses, ports, lengths and both checksums right; what is not a transport message
// on a bound channel passes unchanged (TC_ACT_UNSPEC: on to the next filter); an owner whose
// heartbeat is stale forwards nothing. Test runs build a plain skb (no CHECKSUM_PARTIAL), so the UDP
// checksum is checked in full here; the PARTIAL case (lo) is covered end to end with wireguard-go.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FastPathProgram, fastPathObjectPath } from "../../ebpf/loader.js";

const execFileAsync = promisify(execFile);
const supported = process.getuid?.() === 0 && existsSync(fastPathObjectPath()) && existsSync("/sys/fs/bpf");

const TC_ACT_UNSPEC = 0xffffffff;
const TC_ACT_REDIRECT = 7;
const WG = { address: "127.0.0.1", port: 51820 };
const LOOPBACK = { address: "127.12.34.56", port: 51822 };
const ALLOCATION = { address: "192.0.2.10", port: 50000 };
const TURN_SERVER = { address: "203.0.113.3", port: 3478 };
const CHANNEL = 0x4001;

interface Endpoint {
  address: string;
  port: number;
}

function ip4(address: string): Buffer {
  return Buffer.from(address.split(".").map(Number));
}

function sum16(buf: Buffer, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i);
  if (buf.length % 2) sum += (buf[buf.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function udpChecksum(src: Buffer, dst: Buffer, udp: Buffer): number {
  const pseudo = Buffer.concat([src, dst, Buffer.from([0, 17]), Buffer.alloc(2)]);
  pseudo.writeUInt16BE(udp.length, 10);
  const c = ~sum16(udp, sum16(pseudo)) & 0xffff;
  return c === 0 ? 0xffff : c;
}

/** An Ethernet frame with an IPv4/UDP datagram, both checksums computed (none for UDP when asked). */
function frame(from: Endpoint, to: Endpoint, payload: Buffer, withUdpChecksum = true): Buffer {
  const eth = Buffer.alloc(14);
  eth.fill(0x02, 0, 12);
  eth.writeUInt16BE(0x0800, 12);
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + 8 + payload.length, 2);
  ip[8] = 64;
  ip[9] = 17;
  ip4(from.address).copy(ip, 12);
  ip4(to.address).copy(ip, 16);
  ip.writeUInt16BE(~sum16(ip) & 0xffff, 10);
  const udp = Buffer.alloc(8);
  udp.writeUInt16BE(from.port, 0);
  udp.writeUInt16BE(to.port, 2);
  udp.writeUInt16BE(8 + payload.length, 4);
  const datagram = Buffer.concat([udp, payload]);
  if (withUdpChecksum) datagram.writeUInt16BE(udpChecksum(ip4(from.address), ip4(to.address), datagram), 6);
  return Buffer.concat([eth, ip, datagram]);
}

interface Parsed {
  from: Endpoint;
  to: Endpoint;
  payload: Buffer;
  ipChecksumOk: boolean;
  udpChecksum: number;
  udpChecksumOk: boolean;
  lengthsOk: boolean;
}

function parse(f: Buffer): Parsed {
  const ip = f.subarray(14, 34);
  const totalLength = ip.readUInt16BE(2);
  const udp = f.subarray(34, 14 + totalLength);
  const address = (b: Buffer) => [...b].join(".");
  const check = udp.readUInt16BE(6);
  const zeroed = Buffer.from(udp);
  zeroed.writeUInt16BE(0, 6);
  return {
    from: { address: address(ip.subarray(12, 16)), port: udp.readUInt16BE(0) },
    to: { address: address(ip.subarray(16, 20)), port: udp.readUInt16BE(2) },
    payload: udp.subarray(8),
    ipChecksumOk: sum16(ip) === 0xffff,
    udpChecksum: check,
    udpChecksumOk: check === udpChecksum(ip.subarray(12, 16), ip.subarray(16, 20), zeroed),
    lengthsOk: udp.readUInt16BE(4) === udp.length && f.length === 14 + totalLength,
  };
}

/** A transport message (type 4) of `length` bytes. */
function transport(length: number): Buffer {
  const m = Buffer.alloc(length);
  for (let i = 4; i < length; i++) m[i] = (i * 37 + 11) & 0xff;
  m[0] = 4;
  return m;
}

function channelData(channel: number, data: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(channel, 0);
  header.writeUInt16BE(data.length, 2);
  return Buffer.concat([header, data]);
}

describe.skipIf(!supported)("fast path program: TURN ChannelData on hand-made packets", () => {
  let program: FastPathProgram;
  let dir = "";
  const pinDir = `/sys/fs/bpf/tbt-k${process.pid}-channel-data`;

  /** Runs the program once on `input`: its verdict and the packet as it left. */
  const runOn = async (input: Buffer): Promise<{ verdict: number; output: Buffer }> => {
    const inFile = join(dir, "in");
    const outFile = join(dir, "out");
    writeFileSync(inFile, input);
    const { stdout } = await execFileAsync("bpftool", [
      "prog",
      "run",
      "pinned",
      program.programPath,
      "data_in",
      inFile,
      "data_out",
      outFile,
      "data_size_out",
      "4096",
    ]);
    const verdict = Number(/Return value: (\d+)/.exec(stdout)?.[1]);
    return { verdict, output: readFileSync(outFile) };
  };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tb-channel-data-"));
    // Pinned only: attached nowhere, so no interface of this host sees it.
    program = await FastPathProgram.open(pinDir);
    const relayed = {
      loopbackAddress: LOOPBACK.address,
      loopbackPort: LOOPBACK.port,
      localAddress: ALLOCATION.address,
      localPort: ALLOCATION.port,
      remoteAddress: TURN_SERVER.address,
      remotePort: TURN_SERVER.port,
      wireguardPort: WG.port,
      channel: CHANNEL,
    };
    program.setOutbound({ ...relayed, ifindex: 7, toLoopback: false });
    // Not the test run's own device: the program redirects into lo as it would from an uplink.
    program.setInbound({ ...relayed, loopbackIfindex: 99 });
    program.beat();
  });

  afterAll(async () => {
    await program?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const length of [32, 148, 1421, 1452]) {
    it(`outbound: a ${length}-byte transport message gets the header and goes to the TURN server`, async () => {
      const message = transport(length);
      const { verdict, output } = await runOn(frame(WG, LOOPBACK, message));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p.from).toEqual(ALLOCATION);
      expect(p.to).toEqual(TURN_SERVER);
      expect(p.payload.equals(channelData(CHANNEL, message))).toBe(true);
      expect(p).toMatchObject({ ipChecksumOk: true, udpChecksumOk: true, lengthsOk: true });
    });

    it(`inbound: ChannelData with a ${length}-byte transport message loses the header and goes to WireGuard from L(P)`, async () => {
      const message = transport(length);
      const { verdict, output } = await runOn(frame(TURN_SERVER, ALLOCATION, channelData(CHANNEL, message)));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p.from).toEqual(LOOPBACK);
      expect(p.to).toEqual(WG);
      expect(p.payload.equals(message)).toBe(true);
      expect(p).toMatchObject({ ipChecksumOk: true, udpChecksumOk: true, lengthsOk: true });
    });
  }

  it("a datagram without a UDP checksum keeps none, both ways", async () => {
    const message = transport(100);
    const out = parse((await runOn(frame(WG, LOOPBACK, message, false))).output);
    expect(out.payload.equals(channelData(CHANNEL, message))).toBe(true);
    expect(out).toMatchObject({ udpChecksum: 0, ipChecksumOk: true, lengthsOk: true });
    const inb = parse(
      (await runOn(frame(TURN_SERVER, ALLOCATION, channelData(CHANNEL, message), false))).output,
    );
    expect(inb.payload.equals(message)).toBe(true);
    expect(inb).toMatchObject({ udpChecksum: 0, ipChecksumOk: true, lengthsOk: true });
  });

  const untouched: Array<[string, Buffer]> = [
    ["ChannelData on another channel", frame(TURN_SERVER, ALLOCATION, channelData(0x4002, transport(100)))],
    [
      "ChannelData carrying a handshake initiation",
      frame(
        TURN_SERVER,
        ALLOCATION,
        channelData(CHANNEL, Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)])),
      ),
    ],
    [
      "ChannelData from another address",
      frame({ ...TURN_SERVER, port: 3479 }, ALLOCATION, channelData(CHANNEL, transport(100))),
    ],
    [
      "ChannelData with padding after the data",
      frame(TURN_SERVER, ALLOCATION, Buffer.concat([channelData(CHANNEL, transport(102)), Buffer.alloc(2)])),
    ],
    [
      "a STUN Data indication",
      frame(
        TURN_SERVER,
        ALLOCATION,
        Buffer.concat([Buffer.from([0x00, 0x17, 0x00, 0x50, 0x21, 0x12, 0xa4, 0x42]), Buffer.alloc(92)]),
      ),
    ],
    ["a transport message too large to move", frame(WG, LOOPBACK, transport(2100))],
    [
      "a handshake from WireGuard",
      frame(WG, LOOPBACK, Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)])),
    ],
  ];
  for (const [what, input] of untouched) {
    it(`passes ${what} on unchanged (TC_ACT_UNSPEC)`, async () => {
      const { verdict, output } = await runOn(input);
      expect(verdict).toBe(TC_ACT_UNSPEC);
      expect(output.equals(input)).toBe(true);
    });
  }
});

describe.skipIf(!supported)("fast path program: an owner that stopped beating forwards nothing", () => {
  it("with no heartbeat written, transport data passes on unchanged", async () => {
    const pinDir = `/sys/fs/bpf/tbt-k${process.pid}-silent-owner`;
    const dir = mkdtempSync(join(tmpdir(), "tb-silent-owner-"));
    const program = await FastPathProgram.open(pinDir);
    try {
      program.setOutbound({
        loopbackAddress: LOOPBACK.address,
        loopbackPort: LOOPBACK.port,
        localAddress: ALLOCATION.address,
        localPort: ALLOCATION.port,
        remoteAddress: TURN_SERVER.address,
        remotePort: TURN_SERVER.port,
        wireguardPort: WG.port,
        ifindex: 7,
        toLoopback: false,
      });
      const input = frame(WG, LOOPBACK, transport(100));
      writeFileSync(join(dir, "in"), input);
      const { stdout } = await execFileAsync("bpftool", [
        "prog",
        "run",
        "pinned",
        program.programPath,
        "data_in",
        join(dir, "in"),
        "data_out",
        join(dir, "out"),
        "data_size_out",
        "4096",
      ]);
      expect(Number(/Return value: (\d+)/.exec(stdout)?.[1])).toBe(TC_ACT_UNSPEC);
      expect(readFileSync(join(dir, "out")).equals(input)).toBe(true);
      program.beat();
      const { stdout: fresh } = await execFileAsync("bpftool", [
        "prog",
        "run",
        "pinned",
        program.programPath,
        "data_in",
        join(dir, "in"),
        "data_out",
        join(dir, "out"),
        "data_size_out",
        "4096",
      ]);
      expect(Number(/Return value: (\d+)/.exec(fresh)?.[1])).toBe(TC_ACT_REDIRECT);
    } finally {
      await program.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
