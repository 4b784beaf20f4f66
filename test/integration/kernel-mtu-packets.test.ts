// The fast path program against the uplink's MTU, on hand-made packets (BPF_PROG_TEST_RUN through
// `bpftool prog run`, inside a namespace whose lo and tun0, the entries' uplinks, have an MTU of 1500).
// A datagram that fits once rewritten is redirected; one byte more and it goes on to user space
// (TC_ACT_UNSPEC), whose socket fragments it: a redirect cannot, and the uplink would drop it. What it
// grows by counts: ChannelData's 4 bytes, IPv6's 20; for a GSO buffer, the size of its segments. tun0
// has no MAC header (as PPP and other IP-only uplinks): lo's 14 bytes must not count against it.
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FastPathProgram, fastPathObjectPath } from "../../ebpf/loader.js";
import { createNamespace, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import {
  type Endpoint,
  frame,
  parse,
  type RunOptions,
  runProgram,
  TC_ACT_REDIRECT,
  TC_ACT_UNSPEC,
  transport,
} from "../support/kernel-packets.js";

const supported = process.getuid?.() === 0 && existsSync(fastPathObjectPath()) && existsSync("/sys/fs/bpf");

const MTU = 1500;
const WG = { address: "127.0.0.1", port: 51820 };
const CHANNEL = 0x4002;

interface PathCase {
  name: string;
  loopback: Endpoint;
  local: Endpoint;
  remote: Endpoint;
  channel?: number;
  /** The interface the path leaves by (default lo). */
  uplink?: "lo" | "tun0";
  /** IP and UDP headers, and ChannelData's when relayed: what a transport message gains on the wire. */
  overhead: number;
}

const PATHS: PathCase[] = [
  {
    name: "IPv4 direct",
    loopback: { address: "127.12.34.61", port: 51822 },
    local: { address: "192.0.2.10", port: 40000 },
    remote: { address: "192.0.2.7", port: 51820 },
    overhead: 20 + 8,
  },
  {
    name: "IPv4 relayed",
    loopback: { address: "127.12.34.62", port: 51822 },
    local: { address: "192.0.2.10", port: 50000 },
    remote: { address: "203.0.113.3", port: 3478 },
    channel: CHANNEL,
    overhead: 20 + 8 + 4,
  },
  {
    name: "IPv6 direct",
    loopback: { address: "127.12.34.63", port: 51822 },
    local: { address: "2001:db8::10", port: 40000 },
    remote: { address: "2001:db8:1::7", port: 51820 },
    overhead: 40 + 8,
  },
  {
    name: "IPv6 relayed",
    loopback: { address: "127.12.34.64", port: 51822 },
    local: { address: "2001:db8::10", port: 50000 },
    remote: { address: "2001:db8:2::3", port: 3478 },
    channel: CHANNEL,
    overhead: 40 + 8 + 4,
  },
  {
    name: "IPv4 direct out of an interface without a MAC header",
    loopback: { address: "127.12.34.65", port: 51822 },
    local: { address: "192.0.2.10", port: 40001 },
    remote: { address: "192.0.2.8", port: 51820 },
    uplink: "tun0",
    overhead: 20 + 8,
  },
  {
    name: "IPv6 relayed out of an interface without a MAC header",
    loopback: { address: "127.12.34.66", port: 51822 },
    local: { address: "2001:db8::10", port: 50001 },
    remote: { address: "2001:db8:2::4", port: 3478 },
    channel: CHANNEL,
    uplink: "tun0",
    overhead: 40 + 8 + 4,
  },
];

describe.skipIf(!supported)("fast path program: the uplink's MTU", () => {
  let program: FastPathProgram;
  let dir = "";
  let ns = "";
  const run = (input: Buffer, options: RunOptions = {}) =>
    runProgram(program.programPath, dir, input, { netns: ns, ...options });

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tb-mtu-"));
    ns = await createNamespace(`tbt-kmp-${uniqueTag()}`);
    await nsRun(ns, "ip", ["link", "set", "lo", "mtu", String(MTU), "up"]);
    await nsRun(ns, "ip", ["tuntap", "add", "dev", "tun0", "mode", "tun"]);
    await nsRun(ns, "ip", ["link", "set", "tun0", "mtu", String(MTU), "up"]);
    const tunIndex = Number(
      /^(\d+):/.exec(await nsRun(ns, "ip", ["-o", "link", "show", "dev", "tun0"]))?.[1],
    );
    program = await FastPathProgram.open(`/sys/fs/bpf/tbt-k${process.pid}-mtu`);
    for (const p of PATHS) {
      program.setOutbound({
        loopbackAddress: p.loopback.address,
        loopbackPort: p.loopback.port,
        localAddress: p.local.address,
        localPort: p.local.port,
        remoteAddress: p.remote.address,
        remotePort: p.remote.port,
        wireguardPort: WG.port,
        channel: p.channel,
        ifindex: p.uplink === "tun0" ? tunIndex : 1,
        toLoopback: false,
      });
    }
    program.beat();
  });

  afterAll(async () => {
    await program?.close();
    await teardownAll();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  for (const p of PATHS) {
    it(`${p.name}: the largest message that fits is redirected, one byte more goes to user space`, async () => {
      const largest = MTU - p.overhead;
      const fits = await run(frame(WG, p.loopback, transport(largest)));
      expect(fits.verdict).toBe(TC_ACT_REDIRECT);
      const out = parse(fits.output);
      expect(out.from).toEqual(p.local);
      expect(out.lengthsOk).toBe(true);
      expect(fits.output.length - 14).toBe(MTU);

      const input = frame(WG, p.loopback, transport(largest + 1));
      const over = await run(input);
      expect(over.verdict).toBe(TC_ACT_UNSPEC);
      // Untouched: user space gets WireGuard's datagram as WireGuard sent it.
      expect(over.output.equals(input)).toBe(true);
    });
  }

  it("a GSO buffer is redirected when its segments fit, whatever its length, and not otherwise", async () => {
    const direct = PATHS[0]!;
    const largest = MTU - direct.overhead;
    const input = frame(WG, direct.loopback, transport(200));
    expect((await run(input, { gsoSize: largest })).verdict).toBe(TC_ACT_REDIRECT);
    const over = await run(input, { gsoSize: largest + 1 });
    expect(over.verdict).toBe(TC_ACT_UNSPEC);
    expect(over.output.equals(input)).toBe(true);
  });
});
