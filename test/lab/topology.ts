// A declarative NAT lab built from network namespaces:
//
//   [server] 203.0.113.2 ----+
//   [turn]   203.0.113.3-9 --+   (TURN hosts of their own, `addTurnHost`)
//   [host c] 203.0.113.100 --+-- br0 in [pub] (203.0.113.1, default gateway, routes nothing else)
//   [router a] wan 203.0.113.10 --+
//        lan 192.168.1.1/24 -- [host a] 192.168.1.10, [host d] 192.168.1.11
//
// With `ipv6`, every address above also has an IPv6 twin (`ipv6Of`): 2001:db8:113::N on the public
// segment, 2001:db8:1NN::N/64 on router NN's LAN, routed without NAT (the routers keep their stateful
// firewall, so inbound traffic still needs an outbound packet first).
//
// Routers masquerade their LAN out of "wan" (eim or symmetric, see nat.ts); every host's uplink is
// "eth0". Namespaces are named tbt-l<pid>-<tag>-<role>, so `cleanupStale` can tell a dead run's
// leftovers from a live run's, and every lab is torn down by netns.ts `teardownAll`.
import { randomBytes } from "node:crypto";
import { killNamespacePids } from "./lab-housekeeping.js";
import {
  BLOCK_TABLE,
  type BlockOptions,
  blockRuleset,
  type NatKind,
  natRuleset,
  routerFirewall,
  udpCounterName,
} from "./nat.js";
import {
  createNamespace,
  deleteNamespace,
  nsRun,
  onTeardown,
  type SpawnedProcess,
  spawnInNamespace,
  uniqueTag,
} from "./netns.js";

export type { NatKind } from "./nat.js";
export type HostNat = NatKind | "none";

export interface HostSpec {
  /** [a-z0-9], at most 12 characters. */
  name: string;
  /** Behind a router of its own of this kind, or "none": directly on the public segment. */
  nat?: HostNat;
  /** Behind an existing router instead (a router from `routers`, or the router another host got). */
  router?: string;
  /**
   * No IPv4 on its uplink (an IPv6-only network; needs the lab's `ipv6`): its uplink gets only the IPv6
   * address and default route, also after `moveHost`. `lanAddress` still names its IPv4 twin's slot.
   */
  ipv6Only?: boolean;
}

export interface RouterSpec {
  name: string;
  nat: NatKind;
}

export interface LabSpec {
  hosts: HostSpec[];
  /** Routers without hosts of their own (e.g. targets for `moveHost`). */
  routers?: RouterSpec[];
  /** IPv6 too (default IPv4 only): see the top of this file. */
  ipv6?: boolean;
}

export interface LabRouter {
  readonly name: string;
  readonly ns: string;
  /** The LAN gateway address, e.g. 192.168.1.1. */
  readonly lanAddress: string;
  /** e.g. 192.168.1.0/24 */
  readonly lanSubnet: string;
  /** The public address its hosts appear as. */
  readonly wanAddress: string;
  readonly nat: NatKind;
}

export interface LabHost {
  readonly name: string;
  readonly ns: string;
  /** Its own address on eth0 (a public one for nat "none"). Changes with `moveHost`. */
  readonly lanAddress: string;
  /** Its router's WAN address, or its own address on the public segment. */
  readonly publicAddress: string;
  /** Undefined when directly on the public segment. */
  readonly router: LabRouter | undefined;
  readonly nat: HostNat;
  /** With `ipv6`: its IPv6 address (global, no NAT); undefined without. Changes with `moveHost`. */
  readonly address6: string | undefined;
}

export interface LabServer {
  readonly ns: string;
  readonly address: string;
}

/**
 * Where a TURN server runs: "server" with the introduction server, "host" on a host of its own on the
 * public segment, "router" on the public segment's router (the namespace that owns the bridge).
 */
export type TurnPlacement = "server" | "host" | "router";

/**
 * The TURN host's routes. "default": a default route (out of the public segment, or into an upstream
 * that drops everything); "none": only the public segment (sendto to a private address fails with
 * ENETUNREACH); "blackhole"/"unreachable": a default route plus such routes for the private ranges
 * (EINVAL / EHOSTUNREACH), a common hardening; "denied-peer-ip": a default route, and coturn refuses
 * private peers itself (see `PRIVATE_PEER_RANGES`).
 */
export type TurnRouting = "default" | "none" | "blackhole" | "unreachable" | "denied-peer-ip";

/** RFC 1918, CGNAT and link-local: what a hardened TURN host neither routes nor relays to. */
export const PRIVATE_PEER_RANGES = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"];

/** A TURN server's namespace and address (its own, or one added to the namespace it shares). */
export interface LabTurnHost {
  readonly ns: string;
  readonly address: string;
}

const PUBLIC_PREFIX = "203.0.113";
const PUBLIC_GATEWAY = `${PUBLIC_PREFIX}.1`;
const SERVER_ADDRESS = `${PUBLIC_PREFIX}.2`;
/** TURN hosts take .3 to .9 (routers' WAN addresses start at .10). */
const FIRST_TURN_HOST = 3;
const LAST_TURN_HOST = 9;
const NAME_RE = /^[a-z0-9]{1,12}$/;

interface RouterState {
  name: string;
  ns: string;
  index: number;
  nat: NatKind;
  nextHost: number;
}

interface HostState {
  name: string;
  ns: string;
  address: string;
  /** Router name, or undefined on the public segment. */
  router: string | undefined;
  ipv6Only: boolean;
}

const labs = new Set<Lab>();
let hookRegistered = false;

/** Runs a shell snippet inside a namespace: one process for many `ip`/`sysctl` commands. */
function nsShell(ns: string, script: string): Promise<string> {
  return nsRun(ns, "sh", ["-ec", script]);
}

// No IPv6 unless asked for (keeps ICE candidate sets to the addresses the lab defines) and explicit
// forwarding. With IPv6, no duplicate address detection: addresses are usable at once.
function baseSysctls(forward: boolean, ipv6 = false): string {
  const v6 = ipv6
    ? `net.ipv6.conf.all.disable_ipv6=0 net.ipv6.conf.default.disable_ipv6=0 net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0 net.ipv6.conf.all.forwarding=${forward ? 1 : 0}`
    : "net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1";
  return `sysctl -qw ${v6} net.ipv4.ip_forward=${forward ? 1 : 0}`;
}

/** The IPv6 twin of a lab IPv4 address: 203.0.113.N -> 2001:db8:113::N, 192.168.I.N -> 2001:db8:1II::N. */
export function ipv6Of(v4: string): string {
  const [a, b, c, d] = v4.split(".").map(Number);
  if (a === 203 && b === 0 && c === 113) return `2001:db8:113::${d}`;
  if (a === 192 && b === 168 && c !== undefined) return `2001:db8:${100 + c}::${d}`;
  throw new Error(`${v4} is not a lab address`);
}

// A fixed bridge MAC: otherwise a bridge takes its lowest port's MAC, which changes when a port leaves
// (moveHost), and the other hosts' ARP entries for the gateway go stale for tens of seconds.
function bridgeMac(): string {
  const b = randomBytes(5);
  return ["02", ...[...b].map((x) => x.toString(16).padStart(2, "0"))].join(":");
}

export class Lab {
  readonly server: LabServer;
  private readonly routers = new Map<string, RouterState>();
  private readonly hostStates = new Map<string, HostState>();
  private readonly namespaces: string[] = [];
  private nextRouterIndex = 1;
  private nextPublicHost = 100;
  private ipv6 = false;
  private nextTurnHost = FIRST_TURN_HOST;
  /** Namespaces whose primary address a TURN server took already (the next one gets an address of its own). */
  private readonly turnNamespaces = new Set<string>();
  private torn = false;

  private constructor(
    readonly tag: string,
    readonly publicNs: string,
  ) {
    this.server = { ns: this.nsName("srv"), address: SERVER_ADDRESS };
  }

  /** Builds the public segment, the server namespace, the routers and the hosts. */
  static async create(spec: LabSpec): Promise<Lab> {
    const tag = uniqueTag();
    const lab = new Lab(tag, `tbt-l${process.pid}-${tag}-pub`);
    lab.ipv6 = spec.ipv6 === true;
    labs.add(lab);
    if (!hookRegistered) {
      hookRegistered = true;
      // teardownAll (in any afterAll) then removes labs a failed test never tore down.
      onTeardown(async () => {
        for (const l of [...labs]) await l.teardown();
      });
    }
    try {
      await lab.addNamespace(lab.publicNs);
      await nsShell(
        lab.publicNs,
        `${baseSysctls(false, lab.ipv6)}
ip link add br0 address ${bridgeMac()} type bridge stp_state 0 forward_delay 0
ip addr add ${PUBLIC_GATEWAY}/24 dev br0
ip link set br0 up`,
      );
      // IPv6 is routed to the routers' LANs (see addRouter); IPv4 stays on the public segment.
      if (lab.ipv6) {
        await nsShell(
          lab.publicNs,
          `sysctl -qw net.ipv6.conf.all.forwarding=1\nip -6 addr add ${ipv6Of(PUBLIC_GATEWAY)}/64 dev br0 nodad`,
        );
      }
      const setups: Promise<unknown>[] = [lab.attachPublic(lab.server.ns, "srv", SERVER_ADDRESS, true)];
      for (const r of spec.routers ?? []) setups.push(lab.addRouter(r.name, r.nat));
      for (const h of spec.hosts) {
        if (h.router === undefined && h.nat !== undefined && h.nat !== "none") {
          setups.push(lab.addRouter(h.name, h.nat));
        }
      }
      await Promise.all(setups);
      await Promise.all(spec.hosts.map((h) => lab.addHost(h)));
      return lab;
    } catch (err) {
      await lab.teardown();
      throw err;
    }
  }

  private nsName(role: string): string {
    return `tbt-l${process.pid}-${this.tag}-${role}`;
  }

  private async addNamespace(ns: string): Promise<void> {
    this.namespaces.push(ns);
    await createNamespace(ns);
  }

  /** Creates a namespace (unless it exists) joined to the public bridge with `address`. */
  private async attachPublic(ns: string, port: string, address: string, create: boolean): Promise<void> {
    if (create) {
      await this.addNamespace(ns);
      await nsShell(ns, baseSysctls(false, this.ipv6));
    }
    await this.link(this.publicNs, port, "br0", ns, "eth0", address, PUBLIC_GATEWAY);
  }

  /**
   * A veth from `upNs` (port enslaved to `bridge`) to `downNs` (`iface` with `address`/24, default via
   * gw; with `ipv4` false only their IPv6 twins).
   */
  private async link(
    upNs: string,
    port: string,
    bridge: string,
    downNs: string,
    iface: string,
    address: string,
    gateway: string,
    ipv4 = true,
  ): Promise<void> {
    await nsShell(
      upNs,
      `ip link add ${port} type veth peer name ${iface} netns ${downNs}
ip link set ${port} master ${bridge} up`,
    );
    await nsShell(
      downNs,
      ipv4
        ? `ip addr add ${address}/24 dev ${iface}
ip link set ${iface} up
ip route replace default via ${gateway} dev ${iface}`
        : `ip link set ${iface} up`,
    );
    if (this.ipv6) {
      await nsShell(
        downNs,
        `ip -6 addr add ${ipv6Of(address)}/64 dev ${iface} nodad
ip -6 route replace default via ${ipv6Of(gateway)} dev ${iface}`,
      );
    }
  }

  /** Adds a NAT router on the public segment with an empty LAN 192.168.<n>.0/24. */
  async addRouter(name: string, nat: NatKind): Promise<LabRouter> {
    if (!NAME_RE.test(name)) throw new Error(`router name ${name} must match ${NAME_RE}`);
    if (this.routers.has(name)) throw new Error(`router ${name} exists`);
    const index = this.nextRouterIndex++;
    if (index > 89) throw new Error("too many routers");
    const state: RouterState = { name, ns: this.nsName(`r-${name}`), index, nat, nextHost: 10 };
    this.routers.set(name, state);
    await this.addNamespace(state.ns);
    await nsShell(
      state.ns,
      `${baseSysctls(true, this.ipv6)}
ip link add lan address ${bridgeMac()} type bridge stp_state 0 forward_delay 0
ip addr add 192.168.${index}.1/24 dev lan
ip link set lan up`,
    );
    if (this.ipv6) {
      await nsRun(state.ns, "ip", [
        "-6",
        "addr",
        "add",
        `${ipv6Of(`192.168.${index}.1`)}/64`,
        "dev",
        "lan",
        "nodad",
      ]);
    }
    await nsRun(state.ns, "nft", ["-f", "-"], routerFirewall() + natRuleset(nat));
    await this.link(
      this.publicNs,
      `r-${name}`,
      "br0",
      state.ns,
      "wan",
      this.wanAddress(state),
      PUBLIC_GATEWAY,
    );
    if (this.ipv6) {
      const lan6 = `${ipv6Of(`192.168.${index}.0`)}/64`;
      await nsRun(this.publicNs, "ip", ["-6", "route", "add", lan6, "via", ipv6Of(this.wanAddress(state))]);
    }
    return this.router(name);
  }

  /** Adds a host: behind `spec.router`, behind a new router of its own, or on the public segment. */
  async addHost(spec: HostSpec): Promise<LabHost> {
    if (!NAME_RE.test(spec.name)) throw new Error(`host name ${spec.name} must match ${NAME_RE}`);
    if (this.hostStates.has(spec.name)) throw new Error(`host ${spec.name} exists`);
    let router: string | undefined = spec.router;
    if (router === undefined && spec.nat !== undefined && spec.nat !== "none") {
      router = spec.name;
      if (!this.routers.has(router)) await this.addRouter(router, spec.nat);
    }
    if (router !== undefined) {
      const r = this.routers.get(router);
      if (!r) throw new Error(`host ${spec.name}: no router ${router}`);
      if (spec.nat !== undefined && spec.nat !== r.nat) {
        throw new Error(`host ${spec.name}: nat ${spec.nat} but router ${router} is ${r.nat}`);
      }
    }
    if (spec.ipv6Only && !this.ipv6) throw new Error(`host ${spec.name}: ipv6Only needs the lab's ipv6`);
    const state: HostState = {
      name: spec.name,
      ns: this.nsName(`h-${spec.name}`),
      address: "",
      router,
      ipv6Only: spec.ipv6Only === true,
    };
    this.hostStates.set(spec.name, state);
    await this.addNamespace(state.ns);
    await nsShell(state.ns, baseSysctls(false, this.ipv6));
    await this.connect(state, router);
    return this.host(spec.name);
  }

  private wanAddress(r: RouterState): string {
    return `${PUBLIC_PREFIX}.${9 + r.index}`;
  }

  private async connect(h: HostState, router: string | undefined): Promise<void> {
    if (router === undefined) {
      const n = this.nextPublicHost++;
      if (n > 250) throw new Error("public segment full");
      h.address = `${PUBLIC_PREFIX}.${n}`;
      h.router = undefined;
      await this.link(
        this.publicNs,
        `h-${h.name}`,
        "br0",
        h.ns,
        "eth0",
        h.address,
        PUBLIC_GATEWAY,
        !h.ipv6Only,
      );
      return;
    }
    const r = this.routers.get(router);
    if (!r) throw new Error(`no router ${router}`);
    const n = r.nextHost++;
    if (n > 250) throw new Error(`router ${router} LAN full`);
    h.address = `192.168.${r.index}.${n}`;
    h.router = router;
    await this.link(r.ns, `h-${h.name}`, "lan", h.ns, "eth0", h.address, `192.168.${r.index}.1`, !h.ipv6Only);
  }

  router(name: string): LabRouter {
    const r = this.routers.get(name);
    if (!r) throw new Error(`no router ${name}`);
    return {
      name: r.name,
      ns: r.ns,
      lanAddress: `192.168.${r.index}.1`,
      lanSubnet: `192.168.${r.index}.0/24`,
      wanAddress: this.wanAddress(r),
      nat: r.nat,
    };
  }

  /** A live view of a host: its addresses follow `moveHost`. */
  host(name: string): LabHost {
    const h = this.hostStates.get(name);
    if (!h) throw new Error(`no host ${name}`);
    const lab = this;
    return {
      name: h.name,
      ns: h.ns,
      get lanAddress() {
        return h.address;
      },
      get router() {
        return h.router === undefined ? undefined : lab.router(h.router);
      },
      get publicAddress() {
        return h.router === undefined ? h.address : lab.router(h.router).wanAddress;
      },
      get nat(): HostNat {
        return h.router === undefined ? "none" : lab.router(h.router).nat;
      },
      get address6() {
        return lab.ipv6 ? ipv6Of(h.address) : undefined;
      },
    };
  }

  hosts(): LabHost[] {
    return [...this.hostStates.keys()].map((n) => this.host(n));
  }

  private nsOf(target: string | { ns: string }): string {
    return typeof target === "string" ? this.host(target).ns : target.ns;
  }

  /** Runs a command in a host (by name) or any lab namespace ({ ns }), returning stdout. */
  exec(target: string | { ns: string }, cmd: string, args: string[], input?: string): Promise<string> {
    return nsRun(this.nsOf(target), cmd, args, input);
  }

  /** Starts a tracked long-running process in a host or lab namespace. */
  spawn(
    target: string | { ns: string },
    cmd: string,
    args: string[],
    env?: NodeJS.ProcessEnv,
  ): SpawnedProcess {
    return spawnInNamespace(this.nsOf(target), cmd, args, env);
  }

  /**
   * A namespace and address for a TURN server: `placement` says where, `routing` what routes that
   * namespace gets (applied to the whole namespace: with "server" the introduction server shares them,
   * which it does not mind, everything it talks to being on the public segment). Coturn's own part of
   * "denied-peer-ip" is coturn.ts's `deniedPeers`.
   */
  async addTurnHost(placement: TurnPlacement, routing: TurnRouting): Promise<LabTurnHost> {
    let ns: string;
    let address: string;
    let device = "eth0";
    if (placement === "host") {
      address = this.takeTurnAddress();
      ns = this.nsName(`t${address.split(".").at(-1)}`);
      await this.attachPublic(ns, `t-${address.split(".").at(-1)}`, address, true);
    } else {
      ns = placement === "router" ? this.publicNs : this.server.ns;
      device = placement === "router" ? "br0" : "eth0";
      const primary = placement === "router" ? PUBLIC_GATEWAY : SERVER_ADDRESS;
      address = this.turnNamespaces.has(ns) ? this.takeTurnAddress() : primary;
      if (address !== primary) {
        await nsRun(ns, "ip", ["addr", "add", `${address}/24`, "dev", device]);
        if (this.ipv6) {
          await nsRun(ns, "ip", ["-6", "addr", "add", `${ipv6Of(address)}/64`, "dev", device, "nodad"]);
        }
      }
    }
    this.turnNamespaces.add(ns);
    await nsShell(ns, turnRoutes(routing, placement === "router"));
    return { ns, address };
  }

  private takeTurnAddress(): string {
    const n = this.nextTurnHost++;
    if (n > LAST_TURN_HOST) throw new Error("too many TURN hosts");
    return `${PUBLIC_PREFIX}.${n}`;
  }

  /** Switches a router's NAT kind at once. Existing conntrack mappings stay until `flushConntrack`. */
  async setNat(router: string, nat: NatKind): Promise<void> {
    const r = this.routers.get(router);
    if (!r) throw new Error(`no router ${router}`);
    await nsRun(r.ns, "nft", ["-f", "-"], natRuleset(nat));
    r.nat = nat;
  }

  /** Forgets every NAT mapping of a router (as a router reboot would); needs `conntrack`. */
  async flushConntrack(router: string): Promise<void> {
    const r = this.routers.get(router);
    if (!r) throw new Error(`no router ${router}`);
    try {
      await nsRun(r.ns, "conntrack", ["-F"]);
    } catch (err) {
      // conntrack -F exits 1 with "0 flow entries" on some versions when the table is empty.
      if (!/flow entries have been deleted/.test(String(err))) {
        throw new Error(`${String(err)} (is the conntrack package installed? apt-get install conntrack)`);
      }
    }
  }

  /** The router's conntrack table (`conntrack -L`), for debugging and assertions. */
  conntrack(router: string): Promise<string> {
    return this.exec(this.router(router), "conntrack", ["-L", "-p", "udp"]);
  }

  /**
   * Roaming: unplugs the host and plugs it into another router's LAN ("public": the public segment)
   * with a new address. Processes and sockets in the host keep running; sockets bound to the old
   * address stop working, as on a real device.
   */
  async moveHost(host: string, toRouter: string): Promise<LabHost> {
    const h = this.hostStates.get(host);
    if (!h) throw new Error(`no host ${host}`);
    const target = toRouter === "public" ? undefined : toRouter;
    if (target !== undefined && !this.routers.has(target)) throw new Error(`no router ${toRouter}`);
    const upNs = h.router === undefined ? this.publicNs : this.routers.get(h.router)!.ns;
    await nsRun(upNs, "ip", ["link", "del", `h-${h.name}`]);
    await this.connect(h, target);
    return this.host(host);
  }

  /** Takes a host's uplink down (or up again, restoring its default route). */
  async setLink(host: string, up: boolean): Promise<void> {
    const h = this.hostStates.get(host);
    if (!h) throw new Error(`no host ${host}`);
    const gw = h.router === undefined ? PUBLIC_GATEWAY : this.router(h.router).lanAddress;
    const v6 = this.ipv6 ? `\nip -6 route replace default via ${ipv6Of(gw)} dev eth0` : "";
    await nsShell(
      h.ns,
      up ? `ip link set eth0 up\nip route replace default via ${gw} dev eth0${v6}` : "ip link set eth0 down",
    );
  }

  /** Drops UDP on the host's uplink (see BlockOptions for the TCP-only firewall). Survives moveHost. */
  async blockUdp(host: string, options: BlockOptions = {}): Promise<void> {
    await this.exec(host, "nft", ["-f", "-"], blockRuleset("eth0", options));
  }

  /** UDP datagrams the host sent to `endpoint` since blockUdp counted them (its `countUdpTo`). */
  async udpSentTo(host: string, endpoint: string): Promise<number> {
    const out = await this.exec(host, "nft", [
      "list",
      "counter",
      "inet",
      BLOCK_TABLE,
      udpCounterName(endpoint),
    ]);
    const packets = /packets (\d+)/.exec(out)?.[1];
    if (packets === undefined) throw new Error(`no UDP counter for ${endpoint} on ${host}: ${out}`);
    return Number(packets);
  }

  async unblock(host: string): Promise<void> {
    await this.exec(
      host,
      "nft",
      ["-f", "-"],
      `table inet ${BLOCK_TABLE}\ndelete table inet ${BLOCK_TABLE}\n`,
    );
  }

  /** Ends every process in the lab's namespaces (by PID) and removes them. Safe to call twice. */
  async teardown(): Promise<void> {
    if (this.torn) return;
    this.torn = true;
    labs.delete(this);
    await Promise.all(this.namespaces.map((ns) => killNamespacePids(ns)));
    // Hosts and routers first, so their veths go before the bridge they hang on.
    for (const ns of [...this.namespaces].reverse()) await deleteNamespace(ns);
  }
}

/**
 * The routes of a TURN host (see TurnRouting). The public segment's router has no way out: its default
 * route leads into an "upstream" veth whose other end goes nowhere: datagrams for private addresses
 * vanish as they would on the internet (sendto succeeds, nothing answers).
 */
function turnRoutes(routing: TurnRouting, router: boolean): string {
  const lines: string[] = [];
  if (routing === "none") {
    lines.push("ip route del default 2>/dev/null || true");
  } else if (router) {
    lines.push(
      "ip link show upstream >/dev/null 2>&1 || ip link add upstream type veth peer name upstream-end",
      "ip link set upstream-end up",
      "ip link set upstream up",
      "ip route replace default dev upstream",
    );
  }
  if (routing === "blackhole" || routing === "unreachable") {
    for (const range of PRIVATE_PEER_RANGES) lines.push(`ip route replace ${routing} ${range}`);
  }
  return lines.join("\n");
}
