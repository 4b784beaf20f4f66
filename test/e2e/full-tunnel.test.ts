// Full tunnels: the real `wg-quick up` of a configuration with `AllowedIPs = 0.0.0.0/0, ::/0` (wireguard-go,
// fwmark 51820, policy routing), and Tunnelbore in front of it. Everything unmarked then goes into the
// tunnel, Tunnelbore's own traffic included unless its sockets carry the fwmark as WireGuard's do
// (src/wg/tunnel-bypass.ts). Each case first checks that premise with the kernel's route lookup, then
// that pings pass: a static peer over IPv4 and over IPv6, one given by a hostname (the DNS lookup),
// an fwmark changed and one set after start, and an ICE peer used as the exit node. Where a remote
// routes into the tunnel whatever the mark, status says so.
//
//   on the public segment: [s] plain WireGuard, the static peer; [x] Tunnelbore, the exit node;
//                          [server] 203.0.113.2, the introduction server and a DNS server
//   [a], [b], [c], [d], [e]: each behind an endpoint-independent NAT of its own (IPv6: routed, firewalled)
import { readdir } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { PeerStatus, StatusReport } from "../../src/control/status.js";
import { testCgroup } from "../lab/cgroup.js";
import { type LabDnsServer, startDnsServer } from "../lab/dns.js";
import { generateKeyPair, nsRun, type SpawnedProcess, teardownAll } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { Lab, type LabHost } from "../lab/topology.js";
import {
  CLI,
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { startIntroServer } from "../lab/tunnelbore-lab.js";
import { type WgQuickInterface, wgQuickUp } from "../lab/wg-quick.js";
import { waitFor } from "../support/wait-for.js";

const WG_PORT = 51820;
const FWMARK = 51820; // wg-quick's default for a full tunnel
const FULL = ["0.0.0.0/0", "::/0"];
const S_TUNNEL = ["10.77.0.100", "fd77::100"];
const X_TUNNEL = ["10.78.0.100", "fd78::100"];

type Keys = { privateKey: string; publicKey: string };

let lab: Lab;
let intro: SpawnedProcess;
let introUrl: string;
let dns: LabDnsServer;
const S_NAME = "s.tbt.test";
const keys = new Map<string, Keys>();
const wg = new Map<string, WgQuickInterface>();
const tunnelbores = new Map<string, TunnelboreProcess>();
const stateDirs = new Map<string, TunnelboreDirs>();

function host(name: string): LabHost {
  return lab.host(name);
}

function key(name: string): Keys {
  const k = keys.get(name);
  if (!k) throw new Error(`no keys for ${name}`);
  return k;
}

function iface(name: string): WgQuickInterface {
  const i = wg.get(name);
  if (!i) throw new Error(`no interface on ${name}`);
  return i;
}

/** The interface the kernel routes `address` out of from host `name` (with `mark`, as a socket carrying it). */
async function routeDev(name: string, address: string, mark = 0): Promise<string> {
  const args = ["-j", "route", "get", address, ...(mark ? ["mark", String(mark)] : [])];
  const [route] = JSON.parse(await nsRun(host(name).ns, "ip", args)) as Array<{ dev?: string }>;
  return route?.dev ?? "";
}

/** A client with a full tunnel (or, with table "off", without one yet) to the static peer s. */
async function clientOfS(name: string, index: number, endpoint?: string, table?: string): Promise<void> {
  wg.set(
    name,
    await wgQuickUp(host(name).ns, {
      privateKey: key(name).privateKey,
      listenPort: WG_PORT,
      addresses: [`10.77.0.${index}/24`, `fd77::${index}/64`],
      table,
      peers: [{ publicKey: key("s").publicKey, allowedIps: FULL, endpoint }],
    }),
  );
}

async function tunnelbore(name: string, extra: string[] = []): Promise<TunnelboreProcess> {
  // One state directory per host: a restart finds the real endpoints the first run replaced.
  const dirs = stateDirs.get(name) ?? tunnelboreDirs();
  stateDirs.set(name, dirs);
  const tb = await startTunnelbore(host(name).ns, iface(name).name, dirs, extra);
  tunnelbores.set(name, tb);
  return tb;
}

async function peerStatus(on: string, peer: string): Promise<PeerStatus> {
  const status = await tunnelbores.get(on)?.status();
  const found = status?.peers.find((p) => p.publicKey === key(peer).publicKey);
  if (!found) throw new Error(`${on} has no peer ${peer}`);
  return found;
}

async function bypassOf(name: string): Promise<StatusReport["tunnelBypass"]> {
  const status = await tunnelbores.get(name)?.status();
  if (!status) throw new Error(`no Tunnelbore on ${name}`);
  return status.tunnelBypass;
}

/** Each address answers through the tunnel: once (waited for), then 3 pings of 3. */
async function pingsPass(name: string, addresses: string[]): Promise<void> {
  for (const address of addresses) {
    await waitFor(async () => (await ping(host(name).ns, address, { count: 1, timeout: 1000 })).ok, {
      what: `ping ${address} from ${name}`,
      timeoutMs: 30_000,
      intervalMs: 0,
    });
    const result = await ping(host(name).ns, address, { count: 3 });
    expect(result.received, `${name} -> ${address}: ${result.output}`).toBe(3);
  }
}

/** The interface's fwmark changes from `from` to `to`, its rules with it (as wg-quick with FwMark = to). */
async function changeFwmark(name: string, from: number, to: number): Promise<void> {
  const ifname = iface(name).name;
  const script = [`wg set ${ifname} fwmark ${to}`];
  for (const f of ["-4", "-6"]) {
    script.push(
      `ip ${f} rule del not fwmark ${from} table ${FWMARK}`,
      `ip ${f} rule add not fwmark ${to} table ${FWMARK} pref 32765`,
    );
  }
  await nsRun(host(name).ns, "sh", ["-ec", script.join("\n")]);
}

/** What wg-quick does for `AllowedIPs = 0.0.0.0/0, ::/0` (wg-quick's add_default), by hand. */
function fullTunnelByHand(ifname: string, mark: number): string {
  return [
    `wg set ${ifname} fwmark ${mark}`,
    ...["-4", "-6"].flatMap((f) => [
      `ip ${f} route add ${f === "-4" ? "0.0.0.0/0" : "::/0"} dev ${ifname} table ${mark}`,
      `ip ${f} rule add not fwmark ${mark} table ${mark}`,
      `ip ${f} rule add table main suppress_prefixlength 0`,
    ]),
  ].join("\n");
}

beforeAll(async () => {
  lab = await Lab.create({
    ipv6: true,
    hosts: [
      { name: "s", nat: "none" },
      { name: "x", nat: "none" },
      { name: "a", nat: "eim" },
      { name: "b", nat: "eim" },
      { name: "c", nat: "eim" },
      { name: "d", nat: "eim" },
      { name: "e", nat: "eim" },
    ],
  });
  for (const name of ["s", "x", "a", "b", "c", "d", "e"]) keys.set(name, await generateKeyPair());
  const server = lab.server.address;
  intro = await startIntroServer(lab.server.ns, [
    CLI,
    "intro-server",
    "--listen",
    `${server}:8443`,
    "--stun-port",
    "3478",
  ]);
  introUrl = `ws://${server}:8443`;
  dns = await startDnsServer(lab.server.ns, server, { [S_NAME]: host("s").lanAddress });
  // The static peer: plain WireGuard, wg-quick without a full tunnel; it learns its clients' endpoints.
  wg.set(
    "s",
    await wgQuickUp(host("s").ns, {
      privateKey: key("s").privateKey,
      listenPort: WG_PORT,
      addresses: [`${S_TUNNEL[0]}/24`, `${S_TUNNEL[1]}/64`],
      peers: ["a", "b", "c", "d"].map((name, i) => ({
        publicKey: key(name).publicKey,
        allowedIps: [`10.77.0.${i + 1}/32`, `fd77::${i + 1}/128`],
      })),
    }),
  );
}, 60_000);

afterAll(async () => {
  for (const tb of tunnelbores.values()) await tb.stop("SIGTERM").catch(() => undefined);
  await intro?.stop("SIGTERM").catch(() => undefined);
  for (const i of wg.values()) await i.down();
  await lab?.teardown();
  await teardownAll();
  for (const dirs of stateDirs.values()) dirs.cleanup();
});

describe("full tunnel (wg-quick AllowedIPs = 0.0.0.0/0, ::/0) through Tunnelbore", () => {
  it("a static peer over IPv4: pings pass, IPv4 and IPv6 inside", async () => {
    const s4 = host("s").lanAddress;
    await clientOfS("a", 1, `${s4}:${WG_PORT}`);
    // The premise: unmarked traffic to the peer goes into the tunnel, WireGuard's own (marked) does not.
    expect(await routeDev("a", s4)).toBe(iface("a").name);
    expect(await routeDev("a", s4, FWMARK)).toBe("eth0");
    await tunnelbore("a");
    await pingsPass("a", S_TUNNEL);
    expect(await bypassOf("a")).toMatchObject({ state: "active", fwmark: FWMARK, mark: FWMARK });
    const peer = await peerStatus("a", "s");
    expect(peer).toMatchObject({ pathKind: "static", remote: `${s4}:${WG_PORT}`, routedIntoTunnel: null });
    expect(peer.rxDatagrams).toBeGreaterThan(3); // the pings came back through Tunnelbore
  }, 60_000);

  it("a static peer over IPv6: pings pass", async () => {
    const s6 = host("s").address6 ?? "";
    await clientOfS("b", 2, `[${s6}]:${WG_PORT}`);
    expect(await routeDev("b", s6)).toBe(iface("b").name);
    expect(await routeDev("b", s6, FWMARK)).toBe("eth0");
    await tunnelbore("b");
    await pingsPass("b", S_TUNNEL);
    const peer = await peerStatus("b", "s");
    expect(peer).toMatchObject({ pathKind: "static", remote: `[${s6}]:${WG_PORT}`, routedIntoTunnel: null });
    expect(peer.rxDatagrams).toBeGreaterThan(3);
  }, 60_000);

  it("a static peer given by a hostname: its DNS lookup stays outside the tunnel too", async () => {
    await dns.useFrom(host("d").ns);
    await clientOfS("d", 4);
    // The resolver, like everything, is behind the tunnel for an unmarked socket.
    expect(await routeDev("d", lab.server.address)).toBe(iface("d").name);
    await tunnelbore("d", ["--endpoint", `${key("s").publicKey}=${S_NAME}:${WG_PORT}`]);
    await pingsPass("d", S_TUNNEL);
    expect((await peerStatus("d", "s")).remote).toBe(`${host("s").lanAddress}:${WG_PORT}`);
    // Asked from d's NAT: outside the tunnel (inside, the query would have reached s, which forwards nothing).
    expect(dns.queries()).toContainEqual({ name: S_NAME, type: 1, from: host("d").publicAddress });
  }, 60_000);

  it("follows an fwmark changed after start", async () => {
    const mark = 0x4242;
    // As if the configuration said FwMark = 0x4242: sockets still marked 51820 would enter the tunnel.
    await changeFwmark("a", FWMARK, mark);
    expect(await routeDev("a", host("s").lanAddress, FWMARK)).toBe(iface("a").name);
    await waitFor(async () => (await bypassOf("a")).mark === mark, { what: "Tunnelbore on a follows" });
    await pingsPass("a", S_TUNNEL);
    expect(await bypassOf("a")).toMatchObject({ state: "active", fwmark: mark });
  }, 60_000);

  it("follows an fwmark set after start (the full tunnel comes up while Tunnelbore runs)", async () => {
    const s4 = host("s").lanAddress;
    // Table = off: neither fwmark nor routes but the interface's own subnets.
    await clientOfS("c", 3, `${s4}:${WG_PORT}`, "off");
    await tunnelbore("c");
    await pingsPass("c", S_TUNNEL);
    expect(await bypassOf("c")).toMatchObject({ state: "inactive", mark: 0 });
    await nsRun(host("c").ns, "sh", ["-ec", fullTunnelByHand(iface("c").name, FWMARK)]);
    expect(await routeDev("c", s4)).toBe(iface("c").name);
    await waitFor(async () => (await bypassOf("c")).state === "active", { what: "Tunnelbore on c follows" });
    await pingsPass("c", S_TUNNEL);
  }, 60_000);

  it("says in status where a remote routes into the tunnel whatever the mark", async () => {
    const s4 = host("s").lanAddress;
    const ifname = iface("c").name;
    // A route for the peer's own address through the tunnel, in the main table: the marked lookup
    // finds it too (as wg-quick's route for AllowedIPs that cover the endpoint would be).
    await nsRun(host("c").ns, "ip", ["route", "add", `${s4}/32`, "dev", ifname]);
    await waitFor(async () => (await peerStatus("c", "s")).routedIntoTunnel === s4, {
      what: "status names the looping remote",
    });
    const logs = tunnelbores.get("c")?.logs() ?? [];
    expect(logs.some((l) => l.level === "warn" && l.remote === s4 && l.peer === key("s").publicKey)).toBe(
      true,
    );
    await nsRun(host("c").ns, "ip", ["route", "del", `${s4}/32`, "dev", ifname]);
    await waitFor(async () => (await peerStatus("c", "s")).routedIntoTunnel === null, {
      what: "the warning cleared",
    });
    await pingsPass("c", S_TUNNEL.slice(0, 1));
  }, 60_000);

  it("an ICE peer as the exit node: pings pass to it and through it, IPv4 and IPv6", async () => {
    // x: plain WireGuard peer of e, forwarding e's traffic to the public segment with masquerade.
    wg.set(
      "x",
      await wgQuickUp(host("x").ns, {
        privateKey: key("x").privateKey,
        listenPort: WG_PORT,
        addresses: [`${X_TUNNEL[0]}/24`, `${X_TUNNEL[1]}/64`],
        peers: [{ publicKey: key("e").publicKey, allowedIps: ["10.78.0.1/32", "fd78::1/128"] }],
      }),
    );
    await nsRun(
      host("x").ns,
      "nft",
      ["-f", "-"],
      'table inet tbt_exit {\n  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n    oifname "eth0" masquerade\n  }\n}\n',
    );
    await nsRun(host("x").ns, "sysctl", ["-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"]);
    // e: everything through x, which it reaches with ICE only (no endpoint).
    wg.set(
      "e",
      await wgQuickUp(host("e").ns, {
        privateKey: key("e").privateKey,
        listenPort: WG_PORT,
        addresses: ["10.78.0.1/24", "fd78::1/64"],
        peers: [{ publicKey: key("x").publicKey, allowedIps: FULL }],
      }),
    );
    const server = lab.server.address;
    // The premise: the introduction server, x and the whole internet are behind the tunnel for e.
    expect(await routeDev("e", server)).toBe(iface("e").name);
    expect(await routeDev("e", host("x").lanAddress)).toBe(iface("e").name);
    await tunnelbore("x", ["--intro", introUrl]);
    await tunnelbore("e", ["--intro", introUrl]);
    await pingsPass("e", [...X_TUNNEL, server, `2001:db8:113::2`]);
    const path = await peerStatus("e", "x");
    expect(path.pathKind).toBe("direct");
    expect(path.routedIntoTunnel).toBeNull();
    expect(await bypassOf("e")).toMatchObject({ state: "active", mark: FWMARK });
    console.log(`e -> x over ${path.remote}`);
    // A new fwmark while connected: ICE, STUN and the WebSocket start over on sockets that carry it.
    await changeFwmark("e", FWMARK, 0x4243);
    await waitFor(async () => (await bypassOf("e")).mark === 0x4243, { what: "Tunnelbore on e follows" });
    await pingsPass("e", [X_TUNNEL[0] ?? "", server]);
  }, 90_000);
});

describe("Tunnelbore's cgroup", () => {
  it("is left behind by a crash, replaced at the next start, and removed at SIGTERM", async () => {
    const parent = (await testCgroup()) ?? "";
    expect(parent).not.toBe("");
    const first = tunnelbores.get("b");
    const cgroup = (await first?.status())?.tunnelBypass.cgroup?.split("/").at(-1) ?? "";
    expect(cgroup).toMatch(new RegExp(`^tunnelbore-${iface("b").name}-\\d+$`));
    expect(await readdir(parent)).toContain(cgroup);
    await first?.stop("SIGKILL");
    expect(await readdir(parent)).toContain(cgroup);
    const second = await tunnelbore("b");
    await pingsPass("b", S_TUNNEL.slice(0, 1));
    expect((await second.status()).tunnelBypass).toMatchObject({ state: "active", mark: FWMARK });
    expect(await second.stop("SIGTERM")).toBe(0);
    tunnelbores.delete("b");
    expect(await readdir(parent)).not.toContain(cgroup);
  }, 60_000);
});
