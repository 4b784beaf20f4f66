// `tunnelbore run --ebpf` between real wireguard-go peers: transport data goes through the tc/eBPF
// program (the kernel's counters carry it, Tunnelbore's sockets see only handshakes and keepalives),
// on a static path, on a direct ICE path behind NATs, and on a relayed path (TURN ChannelData).
import { describe, expect, it } from "vitest";
import { filterPreference } from "../../ebpf/loader.js";
import { formatPair } from "../../src/commands/status.js";
import type { PeerStatus } from "../../src/control/status.js";
import { loopbackAddressOf } from "../../src/proxy/loopback-address.js";
import { createLinkedPair } from "../lab/linked-pair.js";
import { nsRun, spawnInNamespace } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { startTunnelbore, type TunnelboreProcess } from "../lab/tunnelbore.js";
import { labPerTest } from "../support/lab-per-test.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

/** Datagrams Tunnelbore's own sockets carried (everything minus what the kernel carried). */
function userSpaceDatagrams(p: PeerStatus): { tx: number; rx: number } {
  return { tx: p.txDatagrams - p.kernelTxDatagrams, rx: p.rxDatagrams - p.kernelRxDatagrams };
}

/** Our tc filters on `dev` in `ns` (lines of `tc filter show` at our preference). */
async function ourFilters(ns: string, dev: string, wireguardInterface: string): Promise<string[]> {
  const out = await nsRun(ns, "tc", ["filter", "show", "dev", dev, "ingress"]);
  const pref = filterPreference(wireguardInterface);
  return out.split("\n").filter((l) => l.includes(`pref ${pref} `) && l.includes("tunnelbore_fast"));
}

const FORGED = 500;
/** Pings (echo requests one way, replies the other) on the relayed paths. */
const PINGS = 20;
/** Status's reason for a relayed path whose pair is on our own TURN allocation over TCP. */
const ON_OWN_TCP_RELAY = "no UDP to the peer: relayed over TCP";
/**
 * ...and for one from our own socket to the peer's relayed address: the NATs (src/ice/not-direct-reason.ts;
 * "symmetric NAT on both sides" once both NATs' behaviours are known). Not "peer offline at the
 * introduction server", which would hide whether the pair is on our TCP allocation.
 */
const TO_PEERS_RELAY = /^(?:[^:]*NAT[^:]*|direct pairs failed): relayed$/;

describe("kernel fast path on a static path", () => {
  const fx = useTunnelbores(() => createLinkedPair("kfp"));
  const peerOf = (tb: TunnelboreProcess) => tb.peerStatus(fx.pair.keyB.publicKey);

  it("carries pings in the kernel, keeps handshakes in user space, and detaches on SIGTERM", async () => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    const loopback = `${loopbackAddressOf(Buffer.from(fx.pair.keyB.publicKey, "base64"))}:51822`;
    await waitFor(async () => (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)) === loopback, {
      what: "endpoint at L(P)",
      intervalMs: 100,
    });
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf(tb)).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const before = await peerOf(tb);
    const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 100, interval: 10 });
    expect(result.received).toBe(100);
    // Counters are folded in once a second.
    await waitFor(async () => (await peerOf(tb)).kernelRxDatagrams - before.kernelRxDatagrams >= 100, {
      what: "kernel counters include the pings",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const after = await peerOf(tb);
    expect(after.kernelTxDatagrams - before.kernelTxDatagrams).toBeGreaterThanOrEqual(100);
    // The sockets saw none of the 100 echo requests and replies.
    const userBefore = userSpaceDatagrams(before);
    const userAfter = userSpaceDatagrams(after);
    expect(userAfter.tx - userBefore.tx).toBeLessThan(5);
    expect(userAfter.rx - userBefore.rx).toBeLessThan(5);
    // B sees A at the static path's socket, not at WireGuard's port: the rewrite is Tunnelbore's 5-tuple.
    const seenByB = await fx.pair.wgB.endpointOf(fx.pair.keyA.publicKey);
    expect(seenByB.startsWith(`${fx.pair.linkA}:`)).toBe(true);
    expect(seenByB).not.toBe(`${fx.pair.linkA}:51820`);
    // ...and A's WireGuard still has the peer at L(P): inbound data reached it from L(P).
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(loopback);
    expect(await ourFilters(fx.pair.nsA, "lo", fx.pair.wgA.name)).toHaveLength(1);
    expect(await ourFilters(fx.pair.nsA, "eth0", fx.pair.wgA.name)).toHaveLength(1);
    expect((await tb.status()).forwarding.interfaces.sort()).toEqual(["eth0", "lo"]);

    expect(await tb.stop("SIGTERM")).toBe(0);
    fx.running.length = 0;
    expect(await ourFilters(fx.pair.nsA, "lo", fx.pair.wgA.name)).toHaveLength(0);
    expect(await ourFilters(fx.pair.nsA, "eth0", fx.pair.wgA.name)).toHaveLength(0);
    expect(await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)).toBe(`${fx.pair.linkB}:51820`);
  }, 60_000);

  it("forged transport messages from anyone but the peer's address are not forwarded by the kernel", async () => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(tb);
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf(tb)).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    const seenByB = await fx.pair.wgB.endpointOf(fx.pair.keyA.publicKey);
    const staticPort = Number(seenByB.split(":")[1]);
    const before = await peerOf(tb);
    const beforeDrops = (await tb.status()).drops;
    // From B's address but another port: same local 5-tuple half, wrong remote port.
    const forger = spawnInNamespace(fx.pair.nsB, process.execPath, [
      "-e",
      `const s=require("node:dgram").createSocket("udp4");const m=Buffer.alloc(64);m[0]=4;let n=0;
       const go=()=>{if(n++>=${FORGED}){s.close();return;}s.send(m,${staticPort},"${fx.pair.linkA}",go)};s.bind(0,go);`,
    ]);
    await forger.exited;
    // All of them reached the path's socket in user space, which refused them as foreign.
    await waitFor(
      async () => (await tb.status()).drops["foreign-source"] - beforeDrops["foreign-source"] >= FORGED,
      { what: "the forged datagrams refused in user space", intervalMs: 100 },
    );
    // Pings after the forgery: once the kernel's counters (folded in once a second) include their
    // replies, they include whatever of the forgery, sent before, the kernel forwarded.
    const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 20, interval: 20 });
    expect(result.received).toBe(20);
    const after = await waitFor(
      async () => {
        const p = await peerOf(tb);
        return p.kernelRxDatagrams - before.kernelRxDatagrams >= 20 && p;
      },
      { what: "kernel counters include the replies", intervalMs: 100 },
    );
    expect(after.kernelRxDatagrams - before.kernelRxDatagrams).toBeLessThan(20 + 10);
  }, 60_000);

  it("after SIGKILL, a restart replaces the old filters and the kernel carries the peer again", async () => {
    const first = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    await fx.pair.waitForPing();
    await waitFor(async () => (await peerOf(first)).kernelFastPath, {
      what: "the kernel carries the peer",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    await first.stop("SIGKILL");
    const second = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf"]);
    fx.running.push(second);
    // How long the restart takes is measured in bench/staying-connected.ts (restart gap).
    await waitFor(() => fx.pair.pingOnce(), { what: "ping resumes", intervalMs: 20 });
    await waitFor(async () => (await peerOf(second)).kernelFastPath, {
      what: "the kernel carries the peer again",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    // One filter per interface: the killed instance's were replaced, not stacked.
    expect(await ourFilters(fx.pair.nsA, "lo", fx.pair.wgA.name)).toHaveLength(1);
    expect(await ourFilters(fx.pair.nsA, "eth0", fx.pair.wgA.name)).toHaveLength(1);
    const result = await ping(fx.pair.nsA, fx.pair.tunB, { count: 20, interval: 20 });
    expect(result.received).toBe(20);
    await waitFor(async () => (await peerOf(second)).kernelRxDatagrams >= 20, {
      what: "the new instance counts kernel traffic",
      timeoutMs: 5000,
      intervalMs: 100,
    });
  }, 60_000);
});

describe("kernel fast path on ICE paths", () => {
  const createLab = labPerTest();

  it("a direct path behind two NATs goes through the kernel, and follows a roaming host", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "eim", flags: ["--ebpf"] },
        { name: "b", nat: "eim", flags: ["--ebpf"] },
      ],
      routers: [{ name: "cafe", nat: "eim" }],
    });
    await lab.waitForPing("a", "b");
    // The direct pair (not a relay pair nominated first under load) is what the kernel must carry.
    await lab.waitForDirectPath("a", "b", "before the move");
    await lab.waitForKernelFastPath("a", "b", 10_000);
    const result = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 50, interval: 10 });
    expect(result.received).toBe(50);
    await waitFor(async () => (await lab.peerStatus("b", "a")).kernelRxDatagrams >= 50, {
      what: "b's kernel counters include a's pings",
      timeoutMs: 5000,
      intervalMs: 100,
    });
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("direct");

    // a moves to another NAT: a new pair, and the kernel follows it.
    await lab.lab.moveHost("a", "cafe");
    await waitFor(
      async () => {
        const ba = await lab.peerStatus("b", "a");
        return (ba.remote?.startsWith(`${lab.lab.router("cafe").wanAddress}:`) ?? false) && ba.kernelFastPath;
      },
      { what: "b's path to a through the new NAT, in the kernel", timeoutMs: 30_000, intervalMs: 200 },
    );
    await waitFor(() => lab.ping("a", "b"), {
      what: "ping after the move",
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    const before = await lab.peerStatus("b", "a");
    const again = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 30, interval: 10 });
    expect(again.received).toBe(30);
    await waitFor(
      async () => (await lab.peerStatus("b", "a")).kernelRxDatagrams - before.kernelRxDatagrams >= 30,
      { what: "the kernel carries the new path", timeoutMs: 5000, intervalMs: 100 },
    );
  }, 120_000);

  it("a side relayed on its own TCP TURN allocation stays in user space, and the path works", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--ebpf"] },
        { name: "b", nat: "symmetric", flags: ["--ebpf"] },
      ],
      turn: { transport: "tcp" },
    });
    await lab.waitForPing("a", "b", 40_000);
    // Symmetric NATs on both sides: every datagram crosses a TURN allocation, and every allocation is
    // reached over TCP, which only its owner's user space can handle. Which pairs ICE picks varies (under
    // load too): a side sends either on its own TCP allocation (status says so: it stays in user space,
    // the kernel carries nothing of the peer), or plain UDP from its own socket to the peer's relayed
    // address (udpRoute: the kernel may carry that send), and then the peer receives on its TCP
    // allocation, in user space. Both sides may pick the same pair, each the other's relayed address
    // (both sends in the kernel), or relay to relay. So, each way: every datagram is in the sender's
    // user-space tx or the receiver's user-space rx.
    const names = ["a", "b"] as const;
    const statuses = () => Promise.all([lab.peerStatus("a", "b"), lab.peerStatus("b", "a")]);
    const turnAddress = lab.coturn.address;
    for (let attempt = 1; ; attempt++) {
      const before = await statuses();
      const result = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, {
        count: PINGS,
        interval: 20,
      });
      expect(result.received).toBe(PINGS);
      // Both sides counted the pings' datagrams each way, the kernel's included (a quiet kernel entry's
      // counts are folded in within 5 s).
      const after = await waitFor(
        async () => {
          const now = await statuses();
          const counted = [0, 1].every(
            (i) =>
              now[i]!.txDatagrams - before[i]!.txDatagrams >= PINGS &&
              now[i]!.rxDatagrams - before[i]!.rxDatagrams >= PINGS,
          );
          return counted && now;
        },
        { what: "both sides' counts include the pings", timeoutMs: 15_000, intervalMs: 100 },
      );
      // A side may move to another pair during the pings (it follows the pair the peer sends on): the
      // counts then mix two pairs. Measured again on the pairs both sides keep.
      const onOwnAllocation = (p: PeerStatus) =>
        p.pair?.localType === "relay" && p.pair.relayTransport === "tcp";
      const samePairs = [0, 1].every(
        (i) =>
          after[i]!.remote === before[i]!.remote &&
          formatPair(after[i]!.pair) === formatPair(before[i]!.pair),
      );
      if (!samePairs && attempt < 3) continue;
      const pairs = JSON.stringify(
        [0, 1].map((i) => ({
          side: names[i],
          before: [before[i]!.remote, formatPair(before[i]!.pair), before[i]!.kernelFastPath],
          after: [after[i]!.remote, formatPair(after[i]!.pair), after[i]!.kernelFastPath],
        })),
      );
      expect(samePairs, `pairs kept during one of ${attempt} rounds of pings: ${pairs}`).toBe(true);
      const delta = (i: number) => ({
        userTx: userSpaceDatagrams(after[i]!).tx - userSpaceDatagrams(before[i]!).tx,
        userRx: userSpaceDatagrams(after[i]!).rx - userSpaceDatagrams(before[i]!).rx,
        kernelTx: after[i]!.kernelTxDatagrams - before[i]!.kernelTxDatagrams,
        kernelRx: after[i]!.kernelRxDatagrams - before[i]!.kernelRxDatagrams,
      });
      for (const side of after) {
        expect(side.pathKind, pairs).toBe("relay");
        // Status names the pair; the reason it gives for not being direct agrees with it.
        if (onOwnAllocation(side)) expect(side.notDirectReason, pairs).toBe(ON_OWN_TCP_RELAY);
        else {
          expect(side.pair, pairs).toMatchObject({ remoteType: "relay", relayTransport: null });
          expect(side.notDirectReason, pairs).toMatch(TO_PEERS_RELAY);
        }
      }
      // Echo requests a -> b, replies b -> a.
      for (const [s, r] of [
        [0, 1],
        [1, 0],
      ] as const) {
        const way = `${names[s]} -> ${names[r]}: ${pairs}`;
        const sender = delta(s);
        const receiver = delta(r);
        expect(sender.userTx + receiver.userRx, way).toBeGreaterThanOrEqual(PINGS);
        if (onOwnAllocation(after[s]!)) {
          // On its own TCP allocation: user space sends, and the kernel carries nothing of the peer.
          expect(before[s]!.kernelFastPath, way).toBe(false);
          expect(after[s]!.kernelFastPath, way).toBe(false);
          expect(sender.userTx, way).toBeGreaterThanOrEqual(PINGS);
          expect(sender.kernelTx, way).toBe(0);
          expect(sender.kernelRx, way).toBe(0);
        } else {
          // From its own socket to the peer's relayed address: the peer receives on its TCP allocation.
          expect(after[s]!.remote?.startsWith(`${turnAddress}:`), way).toBe(true);
          expect(receiver.userRx, way).toBeGreaterThanOrEqual(PINGS);
          expect(receiver.kernelRx, way).toBe(0);
          if (before[s]!.kernelFastPath && after[s]!.kernelFastPath) {
            // Carried by the kernel all along: it sent them (its counts may still be on their way).
            await waitFor(
              async () => {
                const now = await lab.peerStatus(names[s], names[r]);
                return now.kernelTxDatagrams - before[s]!.kernelTxDatagrams >= PINGS;
              },
              { what: `${names[s]}'s kernel counts include its pings' datagrams`, timeoutMs: 10_000 },
            );
          }
        }
      }
      break;
    }
  }, 120_000);

  it("a relayed path (symmetric NATs, TURN over UDP) goes through the kernel: ChannelData both ways", async () => {
    const lab = await createLab({
      hosts: [
        { name: "a", nat: "symmetric", flags: ["--ebpf"] },
        { name: "b", nat: "symmetric", flags: ["--ebpf"] },
      ],
    });
    await lab.waitForPing("a", "b", 40_000);
    expect((await lab.peerStatus("a", "b")).pathKind).toBe("relay");
    // Carried once the channel is bound (user space forwards until then).
    await lab.waitForKernelFastPath("a", "b", 15_000);
    const before = { ab: await lab.peerStatus("a", "b"), ba: await lab.peerStatus("b", "a") };
    const result = await ping(lab.host("a").ns, lab.host("b").tunnelAddress, { count: 100, interval: 10 });
    expect(result.received).toBe(100);
    await waitFor(
      async () => {
        const ab = await lab.peerStatus("a", "b");
        const ba = await lab.peerStatus("b", "a");
        return (
          ab.kernelTxDatagrams - before.ab.kernelTxDatagrams >= 100 &&
          ab.kernelRxDatagrams - before.ab.kernelRxDatagrams >= 100 &&
          ba.kernelRxDatagrams - before.ba.kernelRxDatagrams >= 100
        );
      },
      { what: "both sides' kernel counters include the pings", timeoutMs: 5000, intervalMs: 100 },
    );
    // Tunnelbore's sockets saw none of the 100 requests and replies (keepalives and probes aside).
    for (const [now, then] of [
      [await lab.peerStatus("a", "b"), before.ab],
      [await lab.peerStatus("b", "a"), before.ba],
    ] as const) {
      expect(userSpaceDatagrams(now).tx - userSpaceDatagrams(then).tx).toBeLessThan(10);
      expect(userSpaceDatagrams(now).rx - userSpaceDatagrams(then).rx).toBeLessThan(10);
      expect(now.pathKind).toBe("relay");
    }
  }, 120_000);
});
