// The fast path program on hand-made packets (BPF_PROG_TEST_RUN through `bpftool prog run`): a relayed
// path's datagrams get their TURN ChannelData header (RFC 8656 section 12) outbound and lose it
// inbound, with addresses, ports, lengths and both checksums right; what is not a transport message
// on a bound channel passes unchanged (TC_ACT_UNSPEC: on to the next filter); an owner whose
// heartbeat is stale forwards nothing. Test runs build a plain skb (no CHECKSUM_PARTIAL), so the UDP
// checksum is checked in full here; the PARTIAL case (lo) is covered end to end with wireguard-go.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FastPathProgram, fastPathObjectPath } from "../../ebpf/loader.js";
import {
  channelData,
  frame,
  parse,
  runProgram,
  TC_ACT_REDIRECT,
  TC_ACT_UNSPEC,
  transport,
} from "../support/kernel-packets.js";

const supported = process.getuid?.() === 0 && existsSync(fastPathObjectPath()) && existsSync("/sys/fs/bpf");

const WG = { address: "127.0.0.1", port: 51820 };
const LOOPBACK = { address: "127.12.34.56", port: 51822 };
const ALLOCATION = { address: "192.0.2.10", port: 50000 };
const TURN_SERVER = { address: "203.0.113.3", port: 3478 };
const CHANNEL = 0x4001;

describe.skipIf(!supported)("fast path program: TURN ChannelData on hand-made packets", () => {
  let program: FastPathProgram;
  let dir = "";
  const pinDir = `/sys/fs/bpf/tbt-k${process.pid}-channel-data`;

  /** Runs the program once on `input`: its verdict and the packet as it left. */
  const runOn = (input: Buffer) => runProgram(program.programPath, dir, input);

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
    // The uplink is lo, whose MTU any datagram here fits (the MTU: kernel-mtu-packets.test.ts).
    program.setOutbound({ ...relayed, ifindex: 1, toLoopback: false });
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
        ifindex: 1,
        toLoopback: false,
      });
      const input = frame(WG, LOOPBACK, transport(100));
      const silent = await runProgram(program.programPath, dir, input);
      expect(silent.verdict).toBe(TC_ACT_UNSPEC);
      expect(silent.output.equals(input)).toBe(true);
      program.beat();
      expect((await runProgram(program.programPath, dir, input)).verdict).toBe(TC_ACT_REDIRECT);
    } finally {
      await program.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
