// The outbound redirect's next hop in a real kernel: WireGuard's datagram to L(P) in namespace A is
// rewritten at A's lo (an IPv6 path's translated at lo's egress, as the loader attaches it) and leaves
// by a veth to B, where the remote is routed via B's link address (a gateway). An IPv6 path given the
// gateway as next hop (what `ip route get` answers): the datagrams arrive, the first one too, held while
// the neighbour is resolved (the neighbour table is flushed before each case); given no next hop, the
// kernel looks the route up and they arrive as well; given an address nobody on the link answers for,
// none does: the program hands the next hop to bpf_redirect_neigh, which skips its route lookup and asks
// the neighbour table for exactly that address. An IPv4 path takes no next hop (ebpf/fast-path.bpf.c):
// given one, the first datagram was lost here, held while the neighbour was resolved and then sent by
// the route it still had on lo. Without, it arrives.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { FastPathProgram, fastPathObjectPath, type OutboundEntry } from "../../ebpf/loader.js";
import { createNamespace, nsRun, run, teardownAll, trackChild, uniqueTag } from "../lab/netns.js";

const supported = process.getuid?.() === 0 && existsSync(fastPathObjectPath()) && existsSync("/sys/fs/bpf");

const WG_PORT = 51820;
const LOOPBACK = { address: "127.12.34.56", port: 51822 };
const LOCAL_PORT = 40000;
const FAMILIES = {
  ipv4: { local: "10.9.0.1", gateway: "10.9.0.2", nobody: "10.9.0.3", remote: "198.51.100.7", prefix: 24 },
  ipv6: {
    local: "fd00:9::1",
    gateway: "fd00:9::2",
    nobody: "fd00:9::3",
    remote: "2001:db8:7::7",
    prefix: 64,
  },
} as const;

/** Receives on `address`:51820 in `ns` for `ms`: the datagrams' sources (printed as JSON at the end). */
function receive(
  ns: string,
  address: string,
  ms: number,
): { ready: Promise<void>; sources: Promise<string[]> } {
  const script = `
    const s = require("node:dgram").createSocket(${JSON.stringify(address.includes(":") ? "udp6" : "udp4")});
    const from = [];
    s.on("message", (m, r) => from.push(r.address + ":" + r.port));
    s.bind(${WG_PORT}, ${JSON.stringify(address)}, () => {
      process.stdout.write("ready\\n");
      setTimeout(() => { process.stdout.write(JSON.stringify(from) + "\\n"); s.close(); }, ${ms});
    });`;
  const child = spawn("ip", ["netns", "exec", ns, process.execPath, "-e", script], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  trackChild(child);
  let out = "";
  let markReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    markReady = resolve;
  });
  child.stdout.on("data", (chunk: Buffer) => {
    out += chunk.toString();
    if (out.startsWith("ready\n")) markReady();
  });
  const sources = new Promise<string[]>((resolve, reject) => {
    child.on("exit", (code) => {
      const line = out.trim().split("\n").at(-1) ?? "";
      if (code === 0 && line.startsWith("[")) resolve(JSON.parse(line) as string[]);
      else reject(new Error(`receiver exited ${code}: ${out}`));
    });
  });
  return { ready, sources };
}

/** WireGuard's side: a transport message from 127.0.0.1:51820 to L(P), sent in `ns`. */
async function sendTransport(ns: string): Promise<void> {
  const script = `
    const s = require("node:dgram").createSocket("udp4");
    const m = Buffer.alloc(64); m[0] = 4;
    s.bind(${WG_PORT}, "127.0.0.1", () => s.send(m, ${LOOPBACK.port}, ${JSON.stringify(LOOPBACK.address)}, () => s.close()));`;
  await nsRun(ns, process.execPath, ["-e", script]);
}

describe.skipIf(!supported)(
  "fast path: the outbound redirect's next hop (namespaces A -> B over a veth)",
  () => {
    let program: FastPathProgram;
    let nsA = "";
    let nsB = "";
    let ifindexA = 0;
    const pinDir = `/sys/fs/bpf/tbt-k${process.pid}-next-hop`;

    beforeAll(async () => {
      const tag = uniqueTag();
      nsA = await createNamespace(`tbt-nha-${tag}`);
      nsB = await createNamespace(`tbt-nhb-${tag}`);
      const [a, b] = [`tbt-nha${tag}`, `tbt-nhb${tag}`];
      await run("ip", ["link", "add", a, "netns", nsA, "type", "veth", "peer", "name", b, "netns", nsB]);
      for (const ns of [nsA, nsB]) await nsRun(ns, "sysctl", ["-qw", "net.ipv6.conf.all.disable_ipv6=0"]);
      for (const f of Object.values(FAMILIES)) {
        await nsRun(nsA, "ip", ["addr", "add", `${f.local}/${f.prefix}`, "dev", a, "nodad"]);
        await nsRun(nsB, "ip", ["addr", "add", `${f.gateway}/${f.prefix}`, "dev", b, "nodad"]);
        await nsRun(nsB, "ip", ["addr", "add", f.remote, "dev", "lo"]);
      }
      await nsRun(nsA, "ip", ["link", "set", a, "up"]);
      await nsRun(nsB, "ip", ["link", "set", b, "up"]);
      for (const f of Object.values(FAMILIES)) {
        await nsRun(nsA, "ip", ["route", "add", f.remote, "via", f.gateway]);
      }
      ifindexA = Number((await nsRun(nsA, "cat", [`/sys/class/net/${a}/ifindex`])).trim());
      // Pinned in this mount namespace; attached to A's lo from A's network namespace only (nsenter
      // --net keeps /sys/fs/bpf, which `ip netns exec` remounts away).
      program = await FastPathProgram.open(pinDir);
      const inA = [`--net=/run/netns/${nsA}`, "tc"];
      await run("nsenter", [...inA, "qdisc", "add", "dev", "lo", "clsact"]);
      for (const [direction, path] of [
        ["ingress", program.programPath],
        ["egress", program.egressProgramPath],
      ]) {
        await run("nsenter", [
          ...inA,
          ...["filter", "add", "dev", "lo", direction ?? "", "pref", "1", "handle", "1"],
          ...["bpf", "direct-action", "object-pinned", path ?? ""],
        ]);
      }
    });

    afterAll(async () => {
      await teardownAll();
      await program?.close();
    });

    const cases: Array<
      [
        keyof typeof FAMILIES,
        string,
        (f: (typeof FAMILIES)[keyof typeof FAMILIES]) => string | undefined,
        number,
      ]
    > = [
      ["ipv6", "the route's gateway", (f) => f.gateway, 2],
      ["ipv6", "none (the kernel looks the route up)", () => undefined, 2],
      ["ipv6", "an address nobody on the link answers for", (f) => f.nobody, 0],
      ["ipv4", "none (the kernel looks the route up)", () => undefined, 2],
    ];
    for (const [family, what, nextHopOf, arriving] of cases) {
      it(`${family}, next hop ${what}: ${arriving} of 2 datagrams arrive (the first held while the neighbour is resolved)`, async () => {
        const f = FAMILIES[family];
        const entry: OutboundEntry = {
          loopbackAddress: LOOPBACK.address,
          loopbackPort: LOOPBACK.port,
          localAddress: f.local,
          localPort: LOCAL_PORT,
          remoteAddress: f.remote,
          remotePort: WG_PORT,
          wireguardPort: WG_PORT,
          ifindex: ifindexA,
          toLoopback: false,
          nextHop: nextHopOf(f),
        };
        program.setOutbound(entry);
        program.beat();
        await nsRun(nsA, "ip", ["neigh", "flush", "all"]);
        const receiver = receive(nsB, f.remote, 1500);
        await receiver.ready;
        const before = program.outboundCounters(LOOPBACK.address, LOOPBACK.port)?.packets ?? 0n;
        // The first one waits for the neighbour's answer; the second goes after it.
        await sendTransport(nsA);
        await new Promise((resolve) => setTimeout(resolve, 300));
        await sendTransport(nsA);
        const sources = await receiver.sources;
        // The program took both each time (counted, redirected); only where they arrive differs.
        expect(program.outboundCounters(LOOPBACK.address, LOOPBACK.port)?.packets).toBe(before + 2n);
        expect(sources).toEqual(Array(arriving).fill(`${f.local}:${LOCAL_PORT}`));
      });
    }
  },
);
