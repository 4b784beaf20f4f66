// `tunnelbore run --ebpf` on an IPv6 static path between real wireguard-go peers. WireGuard hears the
// peer from L6(P), [::1]:port, once the kernel carries the path: WireGuard sends IPv6 itself and the tc
// program only rewrites (the kernel's counters carry the data; Tunnelbore's sockets see handshakes and
// keepalives), across a crash and restart of Tunnelbore too. Where lo has no ::1, WireGuard's side stays
// IPv4 loopback (L(P)) and the program translates both ways. And a direct ICE pair between global IPv6
// addresses in the NAT lab, one side translating, the other not.

import { afterAll, describe, expect, it } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createLinkedPair } from "../lab/linked-pair.js";
import { generateKeyPair, nsRun, teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { Lab } from "../lab/topology.js";
import { CLI, startTunnelbore, type TunnelboreProcess, tunnelboreDirs } from "../lab/tunnelbore.js";
import { startIntroServer } from "../lab/tunnelbore-lab.js";
import { startWireGuard } from "../lab/wireguard.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

/** How much of a peer's traffic went through Tunnelbore's own sockets. */
const userSpaceDatagrams = (p: PeerStatus) =>
  p.txDatagrams - p.kernelTxDatagrams + p.rxDatagrams - p.kernelRxDatagrams;

/** 100 pings A -> B pass, and the kernel's counters (not Tunnelbore's sockets) carried them both ways. */
async function expectPingsInKernel(
  pair: { nsA: string; tunB: string },
  peerOf: () => Promise<PeerStatus>,
): Promise<void> {
  const before = await peerOf();
  expect((await ping(pair.nsA, pair.tunB, { count: 100, interval: 10 })).received).toBe(100);
  await waitFor(
    async () => {
      const p = await peerOf();
      return (
        p.kernelRxDatagrams - before.kernelRxDatagrams >= 100 &&
        p.kernelTxDatagrams - before.kernelTxDatagrams >= 100
      );
    },
    { what: "kernel counters include the pings", timeoutMs: 5000, intervalMs: 100 },
  );
  expect(userSpaceDatagrams(await peerOf()) - userSpaceDatagrams(before)).toBeLessThan(10);
}

describe("kernel fast path on an IPv6 static path, WireGuard on [::1]", () => {
  const fx = useTunnelbores(() => createLinkedPair("k6n", "ipv6"));

  it("WireGuard hears the peer from L6(P): pings carried by the kernel, unchanged across a crash and restart", async () => {
    await fx.pair.waitForPing();
    const { keyB, wgA, wgB } = fx.pair;
    let tb = await startTunnelbore(fx.pair.nsA, wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    const peerOf = () => tb.peerStatus(keyB.publicKey);
    const loopback = `${loopbackAddressOf(Buffer.from(keyB.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await wgA.endpointOf(keyB.publicKey)) === loopback, {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf()).wireguardHearsLoopback6, {
      what: "the kernel carries the peer, from L6(P)",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const loopback6 = (await peerOf()).loopback6 ?? "none";
    expect(loopback6).toMatch(/^\[::1\]:\d+$/);
    // WireGuard roams to where it hears the peer from: the next datagram from B comes from L6(P).
    await fx.pair.waitForPing();
    await waitFor(async () => (await wgA.endpointOf(keyB.publicKey)) === loopback6, {
      what: "WireGuard A's endpoint for B at L6(P)",
      intervalMs: 100,
    });
    expect(await peerOf()).toMatchObject({ kernelFastPath: true, loopback, loopback6 });
    await expectPingsInKernel(fx.pair, peerOf);
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(loopback6);
    const on = tb.logs().filter((l) => l.msg === "kernel fast path on");
    expect(on.at(-1)?.loopback6).toBe(loopback6);
    // The next hop (B, on A's link) is L(P)'s translating entry's, for what WireGuard still sends there;
    // from [::1] none is given: such a datagram carries lo's route, which only a lookup replaces.
    expect(nextHopsLogged(tb).at(-1)).toBe(fx.pair.linkB);
    // WireGuard B is charged per datagram what WireGuard A sending to it directly costs (nothing grows).
    const carried = await queuedBytesPerDatagram(fx.pair.nsB, wgB.process.child.pid ?? 0, () =>
      sendPings(fx.pair.nsA, fx.pair.tunB),
    );

    // A crash: WireGuard keeps L6(P), and the next run binds it again rather than point WireGuard away.
    await tb.stop("SIGKILL");
    fx.running.length = 0;
    tb = await startTunnelbore(fx.pair.nsA, wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    await waitFor(async () => (await peerOf()).wireguardHearsLoopback6, {
      what: "the restarted run carries the peer from L6(P)",
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    expect((await peerOf()).loopback6).toBe(loopback6);
    expect((await ping(fx.pair.nsA, fx.pair.tunB, { count: 20, interval: 10 })).received).toBe(20);
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(loopback6);
    expect(tb.logs().some((l) => l.msg === "pointed WireGuard endpoint at loopback")).toBe(false);

    // Stopped, it gives WireGuard back B's own endpoint: L6(P) is ours, as L(P) is.
    expect(await tb.stop("SIGTERM")).toBe(0);
    fx.running.length = 0;
    await waitFor(async () => !(await wgA.endpointOf(keyB.publicKey)).startsWith("[::1]"), {
      what: "WireGuard A back at B's own endpoint",
      intervalMs: 100,
    });
    expect(await wgA.endpointOf(keyB.publicKey)).toBe(`[${fx.pair.linkB}]:51820`);
    await fx.pair.waitForPing();
    const direct = await queuedBytesPerDatagram(fx.pair.nsB, wgB.process.child.pid ?? 0, () =>
      sendPings(fx.pair.nsA, fx.pair.tunB),
    );
    expect(direct).toBeGreaterThan(1300);
    expect(carried).toBe(direct);
  }, 90_000);
});

describe("kernel fast path on an IPv6 static path, lo without ::1", () => {
  const fx = useTunnelbores(async () => {
    const pair = await createLinkedPair("k6", "ipv6");
    // No ::1 on A's lo: L6(P) cannot be bound, and WireGuard's side stays IPv4 loopback.
    await nsRun(pair.nsA, "sysctl", ["-qw", "net.ipv6.conf.lo.disable_ipv6=1"]);
    return pair;
  });

  it("carries pings in the kernel, translating IPv4 loopback <-> the IPv6 path", async () => {
    await fx.pair.waitForPing();
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    const peerOf = () => tb.peerStatus(fx.pair.keyB.publicKey);
    const loopback = `${loopbackAddressOf(Buffer.from(fx.pair.keyB.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)) === loopback, {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf()).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    await expectPingsInKernel(fx.pair, peerOf);
    expect(await peerOf()).toMatchObject({ loopback6: null, wireguardHearsLoopback6: false });
    expect(
      tb.logs().some((l) => l.msg === "lo has no ::1: IPv6 paths reach WireGuard from 127.x, translated"),
    ).toBe(true);
    // B sees A at the static path's IPv6 socket; A's WireGuard still has B at L(P).
    const seenByB = await fx.pair.wgB.endpointOf(fx.pair.keyA.publicKey);
    expect(seenByB.startsWith(`[${fx.pair.linkA}]:`)).toBe(true);
    expect(seenByB).not.toBe(`[${fx.pair.linkA}]:51820`);
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(loopback);
    // B is on A's link: the redirect's next hop is B itself (no route lookup per datagram).
    expect(nextHopsLogged(tb).length).toBeGreaterThan(0);
    expect(new Set(nextHopsLogged(tb))).toEqual(new Set([fx.pair.linkB]));

    // The receiver is charged for a translated datagram what it is charged for one WireGuard sends
    // directly (translated at lo's ingress, the kernel's larger head doubled it, and wireguard-go's
    // socket buffer held half as many: the IPv6 path's throughput gap).
    const translated = await queuedBytesPerDatagram(fx.pair.nsB, fx.pair.wgB.process.child.pid ?? 0, () =>
      sendPings(fx.pair.nsA, fx.pair.tunB),
    );
    expect((await peerOf()).kernelFastPath).toBe(true);
    expect(await tb.stop("SIGTERM")).toBe(0);
    fx.running.length = 0;
    await waitFor(async () => (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)) !== loopback, {
      what: "WireGuard A back at B's own endpoint",
      intervalMs: 100,
    });
    await fx.pair.waitForPing();
    const direct = await queuedBytesPerDatagram(fx.pair.nsB, fx.pair.wgB.process.child.pid ?? 0, () =>
      sendPings(fx.pair.nsA, fx.pair.tunB),
    );
    expect(direct).toBeGreaterThan(1300);
    expect(translated).toBe(direct);
  }, 60_000);
});

const QUEUED = 20;

/** QUEUED pings of 1,300 bytes, 10 ms apart, without waiting for replies that cannot come. */
const sendPings = (ns: string, address: string) =>
  nsRun(ns, "ping", [
    "-q",
    "-n",
    "-c",
    String(QUEUED),
    "-s",
    "1300",
    "-i",
    "0.01",
    "-W",
    "0.2",
    address,
  ]).catch(() => "");

/**
 * What B's UDP sockets hold per datagram (their receive queues' memory, the kernel's truesize) after
 * `send` delivered QUEUED datagrams to them while B's wireguard-go was stopped and read none.
 */
async function queuedBytesPerDatagram(
  ns: string,
  wireguardPid: number,
  send: () => Promise<unknown>,
): Promise<number> {
  const queued = async () => {
    let bytes = 0;
    for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
      for (const line of (await nsRun(ns, "cat", [file])).split("\n").slice(1)) {
        const rxQueue = line.trim().split(/\s+/)[4]?.split(":")[1];
        if (rxQueue) bytes += Number.parseInt(rxQueue, 16);
      }
    }
    return bytes;
  };
  process.kill(wireguardPid, "SIGSTOP");
  try {
    const before = await queued();
    await send();
    return ((await queued()) - before) / QUEUED;
  } finally {
    process.kill(wireguardPid, "SIGCONT");
  }
}

/** The next hops of the "kernel fast path on" lines a Tunnelbore logged (null: none given). */
function nextHopsLogged(tb: TunnelboreProcess): Array<string | null> {
  return tb
    .logs()
    .filter((l) => l.msg === "kernel fast path on")
    .map((l) => (typeof l.nextHop === "string" ? l.nextHop : null));
}

describe("kernel fast path on an IPv6 ICE path", () => {
  let lab: Lab | null = null;
  const running: TunnelboreProcess[] = [];
  const dirs = [tunnelboreDirs(), tunnelboreDirs()] as const;
  afterAll(async () => {
    for (const tb of running.splice(0)) await tb.stop("SIGTERM");
    for (const d of dirs) d.cleanup();
    await lab?.teardown();
    await teardownAll();
  });

  it("a direct pair between global IPv6 addresses goes through the kernel", async () => {
    // a and b behind IPv4 NATs with global IPv6 addresses; IPv4 UDP between them is dropped on a, so
    // the only direct pair is IPv6 host to IPv6 host (no TURN in this lab). a's lo has no ::1: a
    // translates (and gives its redirects their next hop), b's WireGuard hears a from L6(P).
    const l = await Lab.create({
      ipv6: true,
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
      ],
    });
    lab = l;
    await nsRun(l.host("a").ns, "sysctl", ["-qw", "net.ipv6.conf.lo.disable_ipv6=1"]);
    const server = l.server.address;
    await startIntroServer(l.server.ns, [
      CLI,
      "intro-server",
      "--listen",
      `${server}:8443`,
      "--stun-port",
      "3478",
    ]);
    const keys = { a: await generateKeyPair(), b: await generateKeyPair() };
    const tunnel = { a: "10.95.0.1", b: "10.95.0.2" };
    const wg = {
      a: await startWireGuard(l.host("a").ns, {
        privateKey: keys.a.privateKey,
        listenPort: 51820,
        address: `${tunnel.a}/24`,
        peers: [{ publicKey: keys.b.publicKey, allowedIps: `${tunnel.b}/32` }],
      }),
      b: await startWireGuard(l.host("b").ns, {
        privateKey: keys.b.privateKey,
        listenPort: 51820,
        address: `${tunnel.b}/24`,
        peers: [{ publicKey: keys.a.publicKey, allowedIps: `${tunnel.a}/32` }],
      }),
    };
    await nsRun(
      l.host("a").ns,
      "nft",
      ["-f", "-"],
      `table ip tb_kernel_ipv6 {
  chain output { type filter hook output priority filter; policy accept; ip daddr ${l.host("b").publicAddress} meta l4proto udp drop; }
  chain input { type filter hook input priority filter; policy accept; ip saddr ${l.host("b").publicAddress} meta l4proto udp drop; }
}
`,
    );
    const intro = ["--ebpf", "on", "--intro", `ws://${server}:8443`];
    const tbA = await startTunnelbore(l.host("a").ns, wg.a.name, dirs[0], intro);
    running.push(tbA);
    const tbB = await startTunnelbore(l.host("b").ns, wg.b.name, dirs[1], intro);
    running.push(tbB);
    const pingOnce = () =>
      nsRun(l.host("a").ns, "ping", ["-c", "1", "-W", "1", tunnel.b]).then(
        () => true,
        () => false,
      );
    await waitFor(pingOnce, { what: "ping a -> b", timeoutMs: 40_000, intervalMs: 200 });
    const peerOf = (tb: TunnelboreProcess, key: string) => tb.peerStatus(key);
    await waitFor(
      async () =>
        (await peerOf(tbA, keys.b.publicKey)).kernelFastPath &&
        (await peerOf(tbB, keys.a.publicKey)).kernelFastPath,
      { what: "a and b carry each other in the kernel", timeoutMs: 10_000, intervalMs: 100 },
    );
    const bBefore = await peerOf(tbB, keys.a.publicKey);
    const before = await peerOf(tbA, keys.b.publicKey);
    expect(before.pathKind).toBe("direct");
    expect(before.remote).toContain(l.host("b").address6 ?? "no IPv6 address");
    // b is behind a's router: the redirect's next hop is the router, as `ip route get` says.
    const routeToB = JSON.parse(
      await nsRun(l.host("a").ns, "ip", ["-j", "route", "get", l.host("b").address6 ?? "::"]),
    ) as Array<{ gateway?: string }>;
    expect(routeToB[0]?.gateway).toMatch(/:/);
    expect(nextHopsLogged(tbA).at(-1)).toBe(routeToB[0]?.gateway);
    const result = await ping(l.host("a").ns, tunnel.b, { count: 50, interval: 10 });
    expect(result.received).toBe(50);
    await waitFor(
      async () => {
        const p = await peerOf(tbA, keys.b.publicKey);
        return (
          p.kernelTxDatagrams - before.kernelTxDatagrams >= 50 &&
          p.kernelRxDatagrams - before.kernelRxDatagrams >= 50
        );
      },
      { what: "a's kernel counters include the pings", timeoutMs: 5000, intervalMs: 100 },
    );
    await waitFor(
      async () => (await peerOf(tbB, keys.a.publicKey)).kernelRxDatagrams - bBefore.kernelRxDatagrams >= 50,
      { what: "b's kernel counters include the pings", timeoutMs: 5000, intervalMs: 100 },
    );
    expect(userSpaceDatagrams(await peerOf(tbA, keys.b.publicKey)) - userSpaceDatagrams(before)).toBeLessThan(
      10,
    );
    expect(await peerOf(tbA, keys.b.publicKey)).toMatchObject({
      wireguardHearsLoopback6: false,
      loopback6: null,
    });
    const atB = await peerOf(tbB, keys.a.publicKey);
    expect(atB.wireguardHearsLoopback6).toBe(true);
    expect(await wg.b.endpointOf(keys.a.publicKey)).toBe(atB.loopback6);

    // A more specific route to b through another address of a's router (a route change that leaves a's
    // addresses and default routes alone): the entry takes the new next hop, and the kernel carries on.
    const gateway = routeToB[0]?.gateway ?? "";
    const other = gateway.replace(/:[0-9a-f]+$/, ":fe");
    const routerNs = l.host("a").router?.ns ?? "no router";
    await nsRun(routerNs, "ip", ["-6", "addr", "add", `${other}/64`, "dev", "lan", "nodad"]);
    const bRoute = [`${l.host("b").address6}/128`, "via", other, "dev", "eth0"];
    await nsRun(l.host("a").ns, "ip", ["-6", "route", "add", ...bRoute]);
    await waitFor(() => nextHopsLogged(tbA).at(-1) === other, {
      what: "a's entry for b through the new next hop",
      timeoutMs: 10_000,
      intervalMs: 100,
    });
    const moved = await peerOf(tbA, keys.b.publicKey);
    expect((await ping(l.host("a").ns, tunnel.b, { count: 20, interval: 10 })).received).toBe(20);
    await waitFor(
      async () => (await peerOf(tbA, keys.b.publicKey)).kernelTxDatagrams - moved.kernelTxDatagrams >= 20,
      { what: "the kernel carries a's pings by the new next hop", timeoutMs: 5000, intervalMs: 100 },
    );
    // The route gone, the entry goes back to the default route's gateway.
    await nsRun(l.host("a").ns, "ip", ["-6", "route", "del", ...bRoute]);
    await waitFor(() => nextHopsLogged(tbA).at(-1) === gateway, {
      what: "a's entry for b back on the default gateway",
      timeoutMs: 10_000,
      intervalMs: 100,
    });
  }, 120_000);
});
