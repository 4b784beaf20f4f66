// The fast path program on hand-made packets over IPv6 paths (BPF_PROG_TEST_RUN through `bpftool prog
// run`). Where WireGuard's side is IPv4 loopback (L(P)), an outbound transport message becomes IPv6
// from the path's socket to the peer (ChannelData added first on a relayed path) and an inbound one
// becomes IPv4 from L(P) to WireGuard, with lengths and checksums right (the UDP checksum is mandatory
// in IPv6). Where it is IPv6 loopback (L6(P), [::1]:port), both stay IPv6 and are only rewritten.
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FastPathProgram, fastPathObjectPath } from "../../ebpf/loader.js";
import {
  addressBytes,
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
const DIRECT_LOOPBACK = { address: "127.12.34.56", port: 51822 };
const RELAYED_LOOPBACK = { address: "127.12.34.57", port: 51822 };
const IPV4_LOOPBACK = { address: "127.12.34.58", port: 51822 };
const IPV4_PEER = { address: "192.0.2.7", port: 51820 };
const LOCAL = { address: "2001:db8::10", port: 40000 };
const PEER = { address: "2001:db8:1::7", port: 51820 };
const ALLOCATION = { address: "2001:db8::10", port: 50000 };
const TURN_SERVER = { address: "2001:db8:2::3", port: 3478 };
const CHANNEL = 0x4abc;
/** A plain UDP path whose WireGuard side is L6(P): WireGuard at [::1], its own path and peer. */
const WG6 = { address: "::1", port: WG.port };
const NATIVE_LOOPBACK = { address: "::1", port: 20500 };
const NATIVE_LOCAL = { address: "2001:db8::11", port: 40001 };
const NATIVE_PEER = { address: "2001:db8:1::8", port: 51820 };
/** The direct IPv6 path's next hop (a router's link-local address, as `ip route get` names it). */
const NEXT_HOP6 = "fe80::1";
const OUT_NEXT_HOP = 4;

const execFileAsync = promisify(execFile);

describe.skipIf(!supported)("fast path program: IPv6 paths on hand-made packets", () => {
  let program: FastPathProgram;
  let dir = "";
  const run = (input: Buffer) => runProgram(program.programPath, dir, input);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tb-ipv6-"));
    program = await FastPathProgram.open(`/sys/fs/bpf/tbt-k${process.pid}-ipv6`);
    const entry = (loopback: typeof WG, local: typeof WG, remote: typeof WG, channel?: number) => ({
      loopbackAddress: loopback.address,
      loopbackPort: loopback.port,
      localAddress: local.address,
      localPort: local.port,
      remoteAddress: remote.address,
      remotePort: remote.port,
      wireguardPort: WG.port,
      channel,
    });
    const direct = entry(DIRECT_LOOPBACK, LOCAL, PEER);
    const relayed = entry(RELAYED_LOOPBACK, ALLOCATION, TURN_SERVER, CHANNEL);
    const ipv4 = entry(IPV4_LOOPBACK, { address: "192.0.2.10", port: 40000 }, IPV4_PEER);
    // The relayed path without a next hop: the redirect looks the route up, as before next hops. The
    // uplink is lo (ifindex 1), whose MTU any datagram here fits (the MTU: kernel-mtu-packets.test.ts).
    const native = entry(NATIVE_LOOPBACK, NATIVE_LOCAL, NATIVE_PEER);
    program.setOutbound({ ...native, ifindex: 1, toLoopback: false });
    program.setInbound({ ...native, loopbackIfindex: 99 });
    for (const e of [direct, relayed, ipv4]) {
      program.setOutbound({
        ...e,
        ifindex: 1,
        toLoopback: false,
        nextHop: e === direct ? NEXT_HOP6 : undefined,
      });
      program.setInbound({ ...e, loopbackIfindex: 99 });
    }
    program.beat();
  });

  afterAll(async () => {
    await program?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const length of [32, 1421, 1452]) {
    it(`outbound: WireGuard's IPv4 datagram (${length}-byte message) leaves as IPv6 from the path's socket`, async () => {
      const message = transport(length);
      const { verdict, output } = await run(frame(WG, DIRECT_LOOPBACK, message));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p).toMatchObject({ version: 6, from: LOCAL, to: PEER, udpChecksumOk: true, lengthsOk: true });
      expect(p.payload.equals(message)).toBe(true);
    });

    it(`inbound: the peer's IPv6 datagram (${length}-byte message) reaches WireGuard as IPv4 from L(P)`, async () => {
      const message = transport(length);
      const { verdict, output } = await run(frame(PEER, LOCAL, message));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p).toMatchObject({
        version: 4,
        from: DIRECT_LOOPBACK,
        to: WG,
        ipChecksumOk: true,
        udpChecksumOk: true,
        lengthsOk: true,
      });
      expect(p.payload.equals(message)).toBe(true);
    });

    it(`relayed over IPv6: ChannelData added outbound and stripped inbound (${length} bytes)`, async () => {
      const message = transport(length);
      const out = await run(frame(WG, RELAYED_LOOPBACK, message));
      expect(out.verdict).toBe(TC_ACT_REDIRECT);
      const o = parse(out.output);
      expect(o).toMatchObject({
        version: 6,
        from: ALLOCATION,
        to: TURN_SERVER,
        udpChecksumOk: true,
        lengthsOk: true,
      });
      expect(o.payload.equals(channelData(CHANNEL, message))).toBe(true);
      const inb = await run(frame(TURN_SERVER, ALLOCATION, channelData(CHANNEL, message)));
      expect(inb.verdict).toBe(TC_ACT_REDIRECT);
      const i = parse(inb.output);
      expect(i).toMatchObject({
        version: 4,
        from: RELAYED_LOOPBACK,
        to: WG,
        ipChecksumOk: true,
        udpChecksumOk: true,
        lengthsOk: true,
      });
      expect(i.payload.equals(message)).toBe(true);
    });
  }

  for (const length of [32, 1452]) {
    it(`outbound from L6(P): WireGuard's IPv6 datagram (${length}-byte message) is only rewritten`, async () => {
      const message = transport(length);
      const { verdict, output } = await run(frame(WG6, NATIVE_LOOPBACK, message));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p).toMatchObject({
        version: 6,
        from: NATIVE_LOCAL,
        to: NATIVE_PEER,
        udpChecksumOk: true,
        lengthsOk: true,
      });
      expect(p.payload.equals(message)).toBe(true);
      expect(output.length).toBe(frame(WG6, NATIVE_LOOPBACK, message).length);
    });

    it(`inbound to L6(P): the peer's IPv6 datagram (${length}-byte message) reaches WireGuard from [::1]`, async () => {
      const message = transport(length);
      const { verdict, output } = await run(frame(NATIVE_PEER, NATIVE_LOCAL, message));
      expect(verdict).toBe(TC_ACT_REDIRECT);
      const p = parse(output);
      expect(p).toMatchObject({
        version: 6,
        from: NATIVE_LOOPBACK,
        to: WG6,
        udpChecksumOk: true,
        lengthsOk: true,
      });
      expect(p.payload.equals(message)).toBe(true);
    });
  }

  it("counts L6(P)'s datagrams, and names its entries [::1] when asked what moved", async () => {
    program.countersMoved(true);
    const out = program.outboundCounters(NATIVE_LOOPBACK.address, NATIVE_LOOPBACK.port);
    const flow = {
      localAddress: NATIVE_LOCAL.address,
      localPort: NATIVE_LOCAL.port,
      remoteAddress: NATIVE_PEER.address,
      remotePort: NATIVE_PEER.port,
    };
    const inb = program.inboundCounters(flow);
    await run(frame(WG6, NATIVE_LOOPBACK, transport(100)));
    await run(frame(NATIVE_PEER, NATIVE_LOCAL, transport(100)));
    expect(program.outboundCounters(NATIVE_LOOPBACK.address, NATIVE_LOOPBACK.port)?.packets).toBe(
      (out?.packets ?? -1n) + 1n,
    );
    expect(program.inboundCounters(flow)?.packets).toBe((inb?.packets ?? -1n) + 1n);
    const moved = program.countersMoved(false).map((m) => `${m.direction} ${m.loopback}`);
    expect(moved.sort()).toEqual(["inbound ::1:20500", "outbound ::1:20500"]);
    const many = program.countersMany(
      [{ loopbackAddress: "::1", loopbackPort: NATIVE_LOOPBACK.port }],
      [flow],
    );
    expect(many.outbound[0]?.packets).toBe((out?.packets ?? -1n) + 1n);
    expect(many.inbound[0]?.packets).toBe((inb?.packets ?? -1n) + 1n);
  });

  const notOursAtL6: Array<[string, Buffer]> = [
    [
      "WireGuard's datagram to L6(P) from another port",
      frame({ ...WG6, port: 51821 }, NATIVE_LOOPBACK, transport(100)),
    ],
    [
      "a datagram to a [::1] port without an entry",
      frame(WG6, { ...NATIVE_LOOPBACK, port: 20501 }, transport(100)),
    ],
    [
      "a handshake to L6(P)",
      frame(WG6, NATIVE_LOOPBACK, Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)])),
    ],
    [
      "what the program delivered to WireGuard, passing lo again",
      frame(NATIVE_LOOPBACK, WG6, transport(100)),
    ],
    [
      "ChannelData for a flow whose entry is L6(P)'s",
      frame(NATIVE_PEER, NATIVE_LOCAL, channelData(CHANNEL, transport(100))),
    ],
  ];
  for (const [what, input] of notOursAtL6) {
    it(`passes ${what} on unchanged`, async () => {
      const { verdict, output } = await run(input);
      expect(verdict).toBe(TC_ACT_UNSPEC);
      expect(output.equals(input)).toBe(true);
    });
  }

  it("refuses an L6(P) entry for anything but plain UDP to an IPv6 remote", () => {
    const e = {
      loopbackAddress: "::1",
      loopbackPort: 20502,
      localAddress: NATIVE_LOCAL.address,
      localPort: NATIVE_LOCAL.port,
      remoteAddress: NATIVE_PEER.address,
      remotePort: NATIVE_PEER.port,
      wireguardPort: WG.port,
      ifindex: 1,
      toLoopback: false,
    };
    expect(() => program.setOutbound({ ...e, channel: CHANNEL })).toThrow(/plain UDP to an IPv6 remote/);
    expect(() => program.setOutbound({ ...e, nextHop: NEXT_HOP6 })).toThrow(/plain UDP to an IPv6 remote/);
    expect(() => program.setOutbound({ ...e, toLoopback: true })).toThrow(/plain UDP to an IPv6 remote/);
    const ipv4 = { ...e, localAddress: "192.0.2.10", remoteAddress: IPV4_PEER.address };
    expect(() => program.setOutbound(ipv4)).toThrow(/plain UDP to an IPv6 remote/);
    expect(() => program.setInbound({ ...ipv4, loopbackIfindex: 1 })).toThrow(/plain UDP to an IPv6 remote/);
    expect(() => program.setInbound({ ...e, loopbackAddress: "::2", loopbackIfindex: 1 })).toThrow(
      /plain UDP to an IPv6 remote/,
    );
    expect(program.outboundCounters("::1", 20502)).toBeNull();
  });

  // lo's egress program: the outbound translation only, while the datagram is WireGuard's socket's.
  const runEgress = (input: Buffer) => runProgram(program.egressProgramPath, dir, input);

  it("at lo's egress, WireGuard's datagrams to IPv6 paths are translated as at ingress, relayed too", async () => {
    const message = transport(1452);
    const direct = await runEgress(frame(WG, DIRECT_LOOPBACK, message));
    expect(direct.verdict).toBe(TC_ACT_REDIRECT);
    expect(direct.output.equals((await run(frame(WG, DIRECT_LOOPBACK, message))).output)).toBe(true);
    expect(parse(direct.output)).toMatchObject({ version: 6, from: LOCAL, to: PEER, udpChecksumOk: true });
    const relayed = await runEgress(frame(WG, RELAYED_LOOPBACK, message));
    expect(relayed.verdict).toBe(TC_ACT_REDIRECT);
    expect(parse(relayed.output).payload.equals(channelData(CHANNEL, message))).toBe(true);
  });

  it("at lo's egress, WireGuard's IPv6 datagrams to L6(P) are rewritten as at ingress; ours to WireGuard are not", async () => {
    const message = transport(1452);
    const native = await runEgress(frame(WG6, NATIVE_LOOPBACK, message));
    expect(native.verdict).toBe(TC_ACT_REDIRECT);
    expect(native.output.equals((await run(frame(WG6, NATIVE_LOOPBACK, message))).output)).toBe(true);
    expect(parse(native.output)).toMatchObject({ version: 6, from: NATIVE_LOCAL, to: NATIVE_PEER });
    const delivered = frame(NATIVE_LOOPBACK, WG6, transport(100));
    const back = await runEgress(delivered);
    expect(back.verdict).toBe(TC_ACT_UNSPEC);
    expect(back.output.equals(delivered)).toBe(true);
  });

  /** One outbound map as the kernel's BTF names its fields (bpftool formats values by the C struct). */
  const dumpOutbound = async (
    map: "tb_outbound" | "tb_outbound6",
  ): Promise<Array<{ key: Record<string, unknown>; value: Record<string, unknown> }>> => {
    const maps = join(dirname(dirname(program.programPath)), "maps", map);
    const { stdout } = await execFileAsync("bpftool", ["-j", "map", "dump", "pinned", maps]);
    return (
      JSON.parse(stdout) as Array<{
        formatted: { key: Record<string, unknown>; value: Record<string, unknown> };
      }>
    ).map((e) => e.formatted);
  };
  const loopbackAddressOf = (address: string) => addressBytes(address).readUInt32LE(0);

  it("the next hop lands in the C struct's next_hop field, flagged; none where none was given", async () => {
    const v6 = await dumpOutbound("tb_outbound6");
    const byLoopback6 = (l: typeof WG) =>
      v6.find((e) => e.key.loopback_addr === loopbackAddressOf(l.address))?.value;
    const direct = byLoopback6(DIRECT_LOOPBACK);
    expect(direct?.next_hop).toEqual([...addressBytes(NEXT_HOP6)]);
    expect(Number(direct?.flags) & OUT_NEXT_HOP).toBe(OUT_NEXT_HOP);
    expect(direct?.local_addr).toEqual([...addressBytes(LOCAL.address)]);
    expect(direct?.ifindex).toBe(1);
    const relayed = byLoopback6(RELAYED_LOOPBACK);
    expect(relayed?.next_hop).toEqual(Array(16).fill(0));
    expect(Number(relayed?.flags) & OUT_NEXT_HOP).toBe(0);
    // The counters keep their place in front of it (what the counter readers read).
    expect(direct?.packets).toEqual(expect.any(Number));
    const [ipv4] = await dumpOutbound("tb_outbound");
    expect(ipv4?.value).not.toHaveProperty("next_hop");
    expect(ipv4?.value.remote_addr).toBe(addressBytes(IPV4_PEER.address).readUInt32LE(0));
  });

  it("refuses a next hop for an IPv4 path, and an IPv4 one for an IPv6 path", () => {
    const e = {
      loopbackAddress: "127.12.34.59",
      loopbackPort: 51822,
      ...{
        localAddress: LOCAL.address,
        localPort: LOCAL.port,
        remoteAddress: PEER.address,
        remotePort: PEER.port,
      },
      wireguardPort: WG.port,
      ifindex: 1,
      toLoopback: false,
    };
    expect(() => program.setOutbound({ ...e, nextHop: "192.0.2.1" })).toThrow(/IPv6 paths only/);
    const ipv4 = { ...e, localAddress: "192.0.2.10", remoteAddress: IPV4_PEER.address };
    expect(() => program.setOutbound({ ...ipv4, nextHop: "192.0.2.1" })).toThrow(/IPv6 paths only/);
  });

  const leftToIngress: Array<[string, Buffer]> = [
    ["WireGuard's datagram to an IPv4 path", frame(WG, IPV4_LOOPBACK, transport(100))],
    ["the peer's IPv6 datagram", frame(PEER, LOCAL, transport(100))],
    ["the peer's IPv4 datagram", frame(IPV4_PEER, { address: "192.0.2.10", port: 40000 }, transport(100))],
    [
      "a handshake to an IPv6 path",
      frame(WG, DIRECT_LOOPBACK, Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)])),
    ],
  ];
  for (const [what, input] of leftToIngress) {
    it(`at lo's egress, leaves ${what} alone`, async () => {
      const { verdict, output } = await runEgress(input);
      expect(verdict).toBe(TC_ACT_UNSPEC);
      expect(output.equals(input)).toBe(true);
    });
  }
  it("the IPv4 path's datagram is still rewritten at ingress (the egress program left it)", async () => {
    const { verdict, output } = await run(frame(WG, IPV4_LOOPBACK, transport(100)));
    expect(verdict).toBe(TC_ACT_REDIRECT);
    expect(parse(output)).toMatchObject({ version: 4, to: IPV4_PEER });
  });

  const untouched: Array<[string, Buffer]> = [
    ["a datagram without a UDP checksum (IPv6 needs one)", frame(WG, DIRECT_LOOPBACK, transport(100), false)],
    ["an IPv6 datagram from another port", frame({ ...PEER, port: 51821 }, LOCAL, transport(100))],
    ["an IPv6 handshake", frame(PEER, LOCAL, Buffer.concat([Buffer.from([1, 0, 0, 0]), Buffer.alloc(144)]))],
    [
      "IPv6 ChannelData on another channel",
      frame(TURN_SERVER, ALLOCATION, channelData(0x4001, transport(100))),
    ],
  ];
  for (const [what, input] of untouched) {
    it(`passes ${what} on unchanged`, async () => {
      const { verdict, output } = await run(input);
      expect(verdict).toBe(TC_ACT_UNSPEC);
      expect(output.equals(input)).toBe(true);
    });
  }
});
