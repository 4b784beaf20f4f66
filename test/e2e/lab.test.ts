// Self-test of the NAT lab: the NAT kinds behave as their names say, hole punching succeeds and fails
// where it should, coturn relays, wireguard-go talks across a NAT, and nothing is left behind.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startCoturn, turnAllocateUdp } from "../lab/coturn.js";
import { measureThroughput } from "../lab/iperf.js";
import { cleanupStale, labSupported } from "../lab/lab-housekeeping.js";
import { holePunch, mappedAddress, startUdpReflector, UdpAgent } from "../lab/nat.js";
import { createNamespace, generateKeyPair, run, spawnInNamespace, teardownAll } from "../lab/netns.js";
import { ContinuousPing, ping } from "../lab/ping.js";
import { Lab } from "../lab/topology.js";
import { startWireGuard } from "../lab/wireguard.js";
import { waitFor } from "../support/wait-for.js";

const supported = await labSupported();

async function namespacesNow(): Promise<string[]> {
  return (await run("ip", ["netns", "list"])).split("\n").map((l) => l.split(" ")[0] ?? "");
}

describe.skipIf(!supported)("NAT lab", () => {
  let lab: Lab;
  let reflectors: string[];
  const agents: UdpAgent[] = [];
  const agent = async (host: string) => {
    const a = await UdpAgent.open(lab.host(host).ns);
    agents.push(a);
    return a;
  };

  beforeAll(async () => {
    await cleanupStale();
    const t0 = Date.now();
    lab = await Lab.create({
      hosts: [
        { name: "a", nat: "eim" },
        { name: "b", nat: "eim" },
        { name: "s1", nat: "symmetric" },
        { name: "s2", nat: "symmetric" },
        { name: "c", nat: "none" },
        { name: "d", router: "a" },
      ],
      routers: [{ name: "spare", nat: "eim" }],
    });
    console.log(`lab with 6 hosts, 5 routers: ${Date.now() - t0} ms`);
    // Three destinations: two ports on the server, one on another public host.
    const refl = await Promise.all([
      startUdpReflector(lab.server.ns, lab.server.address, 3490),
      startUdpReflector(lab.server.ns, lab.server.address, 3491),
      startUdpReflector(lab.host("c").ns, lab.host("c").lanAddress, 3490),
    ]);
    agents.push(...refl);
    reflectors = refl.map((r) => `${r.address}:${r.port}`);
  });

  afterAll(async () => {
    await Promise.all(agents.map((a) => a.close()));
    await teardownAll();
  });

  it("lays out hosts, routers and the server as specified", () => {
    const a = lab.host("a");
    const d = lab.host("d");
    expect(a.ns).toMatch(/^tbt-/);
    expect(a.lanAddress).toMatch(/^192\.168\.\d+\.\d+$/);
    expect(a.publicAddress).toBe(lab.router("a").wanAddress);
    expect(d.publicAddress).toBe(a.publicAddress);
    expect(d.lanAddress).not.toBe(a.lanAddress);
    expect(lab.host("c").publicAddress).toBe(lab.host("c").lanAddress);
    expect(lab.host("c").nat).toBe("none");
    expect(lab.host("s1").nat).toBe("symmetric");
    expect(lab.server.address).toMatch(/^203\.0\.113\./);
  });

  it("EIM NAT: one internal socket gets the same public address:port towards every destination", async () => {
    const sock = await agent("a");
    const seen = [];
    for (const r of reflectors) seen.push(await mappedAddress(sock, r));
    expect(new Set(seen).size).toBe(1);
    expect(seen[0]).toBe(`${lab.host("a").publicAddress}:${sock.port}`); // masquerade kept the port
  });

  it("symmetric NAT: each destination sees a different public port", async () => {
    const sock = await agent("s1");
    const seen = [];
    for (const r of reflectors) seen.push(await mappedAddress(sock, r));
    expect(seen.every((s) => s.startsWith(`${lab.host("s1").publicAddress}:`))).toBe(true);
    // Fully random ports: at least two of three must differ (all three do but for a 1-in-40k draw).
    expect(new Set(seen).size).toBeGreaterThan(1);
  });

  it("two EIM NATs: simultaneous send punches a direct UDP path", async () => {
    const [a, b] = [await agent("a"), await agent("b")];
    const aPub = await mappedAddress(a, reflectors[0]!);
    const bPub = await mappedAddress(b, reflectors[0]!);
    expect(await holePunch(a, aPub, b, bPub)).toEqual({ aReceived: true, bReceived: true });
    // Replies came from the peer's public mapping, not from some relay.
    expect(a.messages.some((m) => m.from === bPub)).toBe(true);
  });

  it("two symmetric NATs (and symmetric vs EIM): hole punching fails", async () => {
    const [s1, s2, a] = [await agent("s1"), await agent("s2"), await agent("a")];
    const s1Pub = await mappedAddress(s1, reflectors[0]!);
    const s2Pub = await mappedAddress(s2, reflectors[0]!);
    const aPub = await mappedAddress(a, reflectors[0]!);
    expect(await holePunch(s1, s1Pub, s2, s2Pub, 800)).toEqual({ aReceived: false, bReceived: false });
    expect(await holePunch(a, aPub, s1, s1Pub, 800)).toEqual({ aReceived: false, bReceived: false });
  });

  it("setNat switches a router at runtime; flushConntrack forgets its mappings", async () => {
    await lab.setNat("b", "symmetric");
    await lab.flushConntrack("b");
    const sock = await agent("b");
    const seen = [await mappedAddress(sock, reflectors[0]!), await mappedAddress(sock, reflectors[1]!)];
    expect(seen[0]).not.toBe(seen[1]);
    expect(await lab.conntrack("b")).toContain(`dport=${reflectors[1]!.split(":")[1]}`);
    await lab.flushConntrack("b");
    expect(await lab.conntrack("b")).not.toContain("dport=");
    await lab.setNat("b", "eim");
    const again = await agent("b");
    expect(await mappedAddress(again, reflectors[0]!)).toBe(await mappedAddress(again, reflectors[1]!));
    expect(lab.host("b").nat).toBe("eim");
  });

  it("moveHost roams a host to another NAT; ContinuousPing measures the outage", async () => {
    const c = lab.host("c").lanAddress;
    const pinger = new ContinuousPing(lab.host("d").ns, c);
    await waitFor(() => pinger.receivedCount >= 3, {
      what: "first replies",
      timeoutMs: 5000,
      intervalMs: 50,
    });
    const before = lab.host("d").lanAddress;
    const movedAt = Date.now();
    const d = await lab.moveHost("d", "spare");
    expect(d.lanAddress).not.toBe(before);
    expect(d.publicAddress).toBe(lab.router("spare").wanAddress);
    await waitFor(() => pinger.receivedSince(movedAt + 50) >= 3, {
      what: "replies after the move",
      timeoutMs: 5000,
      intervalMs: 50,
    });
    await pinger.stop();
    // How long the outage is depends on the machine's load; here only that it was measured.
    console.log(`roaming outage seen by ping: ${pinger.largestGapMs()} ms, ${pinger.lostCount} lost`);
    expect(pinger.largestGapMs()).toBeGreaterThan(0);
    const sock = await agent("d");
    expect(await mappedAddress(sock, reflectors[0]!)).toBe(`${lab.router("spare").wanAddress}:${sock.port}`);
    const back = await lab.moveHost("d", "a");
    expect(back.publicAddress).toBe(lab.host("a").publicAddress);
    expect((await ping(back.ns, c, { count: 1, timeout: 2000 })).ok).toBe(true);
  });

  it("blockUdp drops UDP on the uplink; exceptTcpTo leaves only TCP to the given endpoint", async () => {
    const sock = await agent("b");
    await lab.blockUdp("b");
    await expect(mappedAddress(sock, reflectors[0]!, 600)).rejects.toThrow(/no answer/);
    expect((await ping(lab.host("b").ns, lab.server.address, { count: 1 })).ok).toBe(true);

    const turn = await startCoturn(lab.server.ns, { address: lab.server.address });
    try {
      await lab.blockUdp("b", { exceptTcpTo: `${turn.address}:${turn.port}` });
      expect((await ping(lab.host("b").ns, lab.server.address, { count: 1, timeout: 1000 })).ok).toBe(false);
      const tcp = (port: number) =>
        lab
          .exec("b", "timeout", ["1", "bash", "-c", `exec 3<>/dev/tcp/${turn.address}/${port}`])
          .then(() => true)
          .catch(() => false);
      expect(await tcp(turn.port)).toBe(true);
      expect(await tcp(3480)).toBe(false);
    } finally {
      await turn.stop();
    }
    await lab.unblock("b");
    expect(await mappedAddress(sock, reflectors[0]!)).toMatch(/^203\.0\.113\./);
  });

  it("coturn listens on UDP and TCP and relays for REST credentials from behind a NAT", async () => {
    const turn = await startCoturn(lab.server.ns, { address: lab.server.address });
    try {
      // TCP: a STUN Binding request over the TCP listener gets a Binding success (0x0101).
      const reply = await lab.exec("a", "timeout", [
        "3",
        "bash",
        "-c",
        `exec 3<>/dev/tcp/${turn.address}/${turn.port}; printf '\\x00\\x01\\x00\\x00\\x21\\x12\\xa4\\x42abcdefghijkl' >&3; head -c 2 <&3 | od -An -tx1`,
      ]);
      expect(reply.replace(/\s/g, "")).toBe("0101");

      // UDP: a real Allocate; the relay carries a datagram to a peer and its answer back.
      const server = `${turn.address}:${turn.port}`;
      await expect(
        turnAllocateUdp(await agent("a"), server, { username: turn.credentials().username, password: "bad" }),
      ).rejects.toThrow(/401/);
      const alloc = await turnAllocateUdp(await agent("a"), server, turn.credentials("alice", 600));
      expect(alloc.relayed).toMatch(new RegExp(`^${turn.address.replaceAll(".", "\\.")}:\\d+$`));
      expect(alloc.mapped.startsWith(`${lab.host("a").publicAddress}:`)).toBe(true);
      const peer = reflectors[2]!; // on host c
      await alloc.permit(peer);
      alloc.send(peer, Buffer.from("via-turn"));
      await waitFor(() => alloc.received().length > 0, {
        what: "data indication",
        timeoutMs: 3000,
        intervalMs: 20,
      });
      const back = JSON.parse(alloc.received()[0]!.data.toString()) as { seen: string; probe: string };
      expect(back).toEqual({ seen: alloc.relayed, probe: "via-turn" });
    } finally {
      await turn.stop();
    }
  });

  it("wireguard-go peers talk across the NAT (EIM host to public host), and iperf3 measures it", async () => {
    const [ka, kc] = [await generateKeyPair(), await generateKeyPair()];
    const c = lab.host("c");
    const wgC = await startWireGuard(c.ns, {
      privateKey: kc.privateKey,
      listenPort: 51820,
      address: "10.99.0.2/24",
      peers: [{ publicKey: ka.publicKey, allowedIps: "10.99.0.1/32" }],
    });
    await startWireGuard(lab.host("a").ns, {
      privateKey: ka.privateKey,
      listenPort: 51820,
      address: "10.99.0.1/24",
      peers: [{ publicKey: kc.publicKey, allowedIps: "10.99.0.2/32", endpoint: `${c.lanAddress}:51820` }],
    });
    const result = await ping(lab.host("a").ns, "10.99.0.2", { count: 3, timeout: 5000 });
    expect(result.received).toBeGreaterThan(0);
    // c learned a's endpoint as the NAT's public address: the tunnel really crosses the NAT.
    expect(await wgC.endpointOf(ka.publicKey)).toMatch(new RegExp(`^${lab.host("a").publicAddress}:\\d+$`));
    const perf = await measureThroughput(c.ns, "10.99.0.2", lab.host("a").ns, { duration: 1 });
    console.log(
      `iperf3 through wireguard-go across the NAT: ${(perf.bitsPerSecond / 1e6).toFixed(0)} Mbit/s`,
    );
    // It measured traffic through the tunnel; how much is for the benchmarks (bench/iperf-static.ts).
    expect(perf.bitsPerSecond).toBeGreaterThan(0);
  });

  it("a 2-host lab sets up and tears down completely, also after a failed create", async () => {
    const t0 = Date.now();
    const small = await Lab.create({
      hosts: [
        { name: "x", nat: "eim" },
        { name: "y", nat: "symmetric" },
      ],
    });
    console.log(`2-host lab: setup ${Date.now() - t0} ms`);
    const proc = small.spawn("x", "sleep", ["60"]);
    const mine = (await namespacesNow()).filter((n) => n.includes(small.tag));
    expect(mine.length).toBe(6); // pub, srv, 2 routers, 2 hosts
    const t1 = Date.now();
    await small.teardown();
    console.log(`2-host lab: teardown ${Date.now() - t1} ms`);
    expect(await proc.exited).toBeDefined();
    expect((await namespacesNow()).filter((n) => n.includes(small.tag))).toEqual([]);

    const before = await namespacesNow();
    await expect(
      Lab.create({
        hosts: [
          { name: "x", nat: "eim" },
          { name: "z", router: "nope" },
        ],
      }),
    ).rejects.toThrow(/no router nope/);
    expect(await namespacesNow()).toEqual(before);
  });

  it("cleanupStale removes a dead run's namespaces and ends what ran in them, and nothing else", async () => {
    // A PID that certainly belonged to a process that has exited.
    const dead = spawnInNamespace(lab.server.ns, "true", []);
    await dead.exited;
    const stale = `tbt-l${dead.child.pid}-abcdef-pub`;
    await createNamespace(stale);
    const leftover = spawnInNamespace(stale, "sleep", ["60"]);
    // In the namespace (not only spawned): cleanupStale finds what to end by `ip netns pids`.
    await waitFor(
      async () =>
        (await run("ip", ["netns", "pids", stale])).split(/\s+/).includes(String(leftover.child.pid)),
      { what: "the leftover process in the stale namespace" },
    );
    const removed = await cleanupStale();
    expect(removed).toContain(stale);
    expect(await leftover.exited).toBe("SIGTERM");
    expect(await namespacesNow()).not.toContain(stale);
    expect(await namespacesNow()).toContain(lab.host("a").ns); // the live lab is untouched
  });
});
