/**
 * Loads ebpf/fast-path.bpf.c into the kernel, attaches it at tc ingress (and at lo's egress), and gives
 * typed access to its maps. bpftool loads the object and pins programs and maps (libbpf does the
 * relocation work; no npm package loads a BTF-map object), `tc` attaches the pinned programs, and the
 * `bpf` package (libbpf bindings) updates and reads the maps through their pinned paths. Each instance
 * owns its programs and keeps its heartbeat fresh in tb_owner; what other instances of the namespace
 * hold is read from the kernel (ebpf/instances.ts).
 */
import { existsSync } from "node:fs";
import { mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { isIPv6 } from "node:net";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { RawMap } from "bpf";
import { ConfigError, RuntimeError } from "../src/errors.js";
import type { FiveTuple } from "../src/proxy/path.js";
import { BatchedMapReader } from "./batched-map-read.js";
import { type LoopbackReader, type MovedCounter, MovedCounterTracker } from "./moved-counters.js";

export type { MovedCounter } from "./moved-counters.js";

import {
  encodeOwner,
  type FilterDirection,
  listInstances,
  monotonicNs,
  OWNER_RESTORES_LOCALNET,
  OWNER_VALUE_SIZE,
  type Owner,
  ownerAlive,
  readOwner,
  removeFilters,
  run,
} from "./instances.js";

const BPFFS = "/sys/fs/bpf";
const PIN_ROOT = join(BPFFS, "tunnelbore");
const PROGRAM_NAME = "tunnelbore_fast_path";
/** WireGuard's datagrams to an IPv6 path, translated at lo's egress (ebpf/fast-path.bpf.c says why). */
const EGRESS_PROGRAM_NAME = "tunnelbore_fast_path_egress";
/** At ingress of an uplink whose frames have no MAC header (PPP, a tun, a raw-IP modem). */
const L3_PROGRAM_NAME = "tunnelbore_fast_path_l3";
const ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/lo/route_localnet";
/** Our tc filters use priorities 49152..53247; an interface's first choice is a hash of its name. */
const PREF_BASE = 49152;
const PREF_SPAN = 4096;
const HEARTBEAT_MS = 1000;

/**
 * Whether `dev`'s frames start with an Ethernet header (`ip`'s link_type ether, or lo). Others (none
 * for a tun or a raw-IP modem, ppp, tunnels) get the program that reads from the IP header.
 */
async function hasEthernetHeader(dev: string): Promise<boolean> {
  const [link] = JSON.parse(await run("ip", ["-j", "link", "show", "dev", dev])) as Array<{
    link_type?: string;
  }>;
  return link?.link_type === "ether" || link?.link_type === "loopback";
}

type BpfModule = typeof import("bpf");
let bpfModule: Promise<BpfModule> | null = null;

/**
 * The `bpf` package (libbpf bindings, a native module and an optional dependency), imported the first
 * time the fast path is loaded: without it everything but the fast path works, `--version` included.
 */
export function loadBpfModule(): Promise<BpfModule> {
  bpfModule ??= import("bpf").catch((err: unknown) => {
    bpfModule = null;
    throw new ConfigError(
      "ebpf-unavailable",
      `the kernel fast path needs the optional "bpf" module (libbpf bindings), which is not installed or does not load (${(err as Error)?.message ?? String(err)}); install tunnelbore with its optional dependencies, or use --ebpf off`,
      {},
      { cause: err },
    );
  });
  return bpfModule;
}

/** The compiled object: built by `npm run build:ebpf` next to the compiled loader, or in the source tree. */
export function fastPathObjectPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "fast-path.bpf.o"), join(here, "..", "dist", "ebpf", "fast-path.bpf.o")];
  return candidates.find((p) => existsSync(p)) ?? candidates[0] ?? "";
}

/**
 * Outbound: WireGuard's datagram to L(P) leaves from `local` to `remote` (both IPv4, or both IPv6: the
 * program translates WireGuard's IPv4 datagram then; host byte order numbers). With an IPv6 loopback
 * address (L6(P), "::1": a plain UDP path over IPv6), WireGuard's datagram is IPv6 already and is only
 * rewritten: no channel, no next hop, never to lo.
 */
export interface OutboundEntry extends FiveTuple {
  loopbackAddress: string;
  loopbackPort: number;
  wireguardPort: number;
  /** The interface the datagram leaves by; lo means the peer is on this host. */
  ifindex: number;
  toLoopback: boolean;
  /** A relayed path: the TURN channel (0x4000-0x7FFF) whose ChannelData header the datagram gets. */
  channel?: number;
  /**
   * IPv6 paths only: where the datagram goes on the link out of `ifindex`, the route's gateway or the
   * remote itself when it is on that link (`ip route get` told both, with the interface). Given, the
   * redirect skips its route lookup per datagram; absent, the kernel looks the route up. IPv4 paths
   * take none (ebpf/fast-path.bpf.c says why).
   */
  nextHop?: string;
}

/**
 * Inbound: a datagram from `remote` to `local` (the entry's five-tuple, its key) reaches WireGuard from
 * L(P), as IPv6 from [::1] when `loopbackAddress` is L6(P)'s ("::1"; an IPv6 remote, no channel).
 */
export interface InboundEntry extends FiveTuple {
  loopbackAddress: string;
  loopbackPort: number;
  wireguardPort: number;
  loopbackIfindex: number;
  /** A relayed path: only ChannelData on this channel, which loses its header. */
  channel?: number;
}

/** An inbound entry's key: the flow, and the channel for ChannelData (none for plain UDP). */
export interface InboundFlow extends FiveTuple {
  channel?: number;
}

export interface EntryCounters {
  packets: bigint;
  bytes: bigint;
  /** CLOCK_MONOTONIC ns (process.hrtime.bigint()'s clock) of the latest datagram; 0n for none. */
  lastNs: bigint;
  /**
   * Wall-clock ms by which every datagram counted here had been counted: a copy read earlier (across
   * privsep) knows nothing of what came after. Absent: read from the map at the call.
   */
  readAt?: number;
}

const OUTBOUND_KEY_SIZE = 8;
const OUTBOUND_VALUE_SIZE = 48;
const INBOUND_KEY_SIZE = 16;
const INBOUND_VALUE_SIZE = 40;
const OUTBOUND6_VALUE_SIZE = 88;
const INBOUND6_KEY_SIZE = 40;
const LOOPBACK6_KEY_SIZE = 20;
const OUT_TO_LOOPBACK = 1;
const OUT_CHANNEL = 2;
const OUT_NEXT_HOP = 4;
/** On an inbound value: deliver as IPv6 from [::1]:loopback_port (ebpf/ipv6.h). */
const IN_LOOPBACK6 = 1;
const INBOUND_FLAGS_AT = 12;
/** Where an IPv6 path's next hop sits in its outbound value (after the counters, which keep their offsets). */
const OUTBOUND6_NEXT_HOP_AT = 72;

/** An outbound entry's key: L(P), or L6(P) ("::1"). */
export interface LoopbackKey {
  loopbackAddress: string;
  loopbackPort: number;
}

/** An entry's packets, bytes and latest datagram's time, at `offset` of its value. */
function counters(value: Buffer, offset: number): EntryCounters {
  return {
    packets: value.readBigUInt64LE(offset),
    bytes: value.readBigUInt64LE(offset + 8),
    lastNs: value.readBigUInt64LE(offset + 16),
  };
}

function writeAddress(buf: Buffer, offset: number, address: string): void {
  const parts = address.split(".");
  if (parts.length !== 4)
    throw new RuntimeError("ebpf-address", `not an IPv4 address: ${address}`, { address });
  for (let i = 0; i < 4; i++) buf[offset + i] = Number(parts[i]);
}

/** An IPv6 address as its 16 bytes ("::" expanded; no embedded IPv4 form). */
function writeAddress6(buf: Buffer, offset: number, address: string): void {
  const bad = () => new RuntimeError("ebpf-address", `not an IPv6 address: ${address}`, { address });
  const halves = address.split("::");
  if (halves.length > 2) throw bad();
  const groups = (part: string | undefined) => (part ? part.split(":") : []);
  const head = groups(halves[0]);
  const tail = groups(halves[1]);
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(fill).fill("0"), ...tail];
  if (all.length !== 8 || fill < 0) throw bad();
  all.forEach((g, i) => {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) throw bad();
    buf.writeUInt16BE(Number.parseInt(g, 16), offset + 2 * i);
  });
}

/** L(P)'s key in tb_outbound and tb_outbound6, or L6(P)'s in tb_outbound6lo (an IPv6 address). */
function outboundKey(loopbackAddress: string, loopbackPort: number): Buffer {
  if (isIPv6(loopbackAddress)) {
    const key = Buffer.alloc(LOOPBACK6_KEY_SIZE);
    writeAddress6(key, 0, loopbackAddress);
    key.writeUInt16BE(loopbackPort, 16);
    return key;
  }
  const key = Buffer.alloc(OUTBOUND_KEY_SIZE);
  writeAddress(key, 0, loopbackAddress);
  key.writeUInt16BE(loopbackPort, 4);
  return key;
}

/** An L6(P) address as the forwarder names it: "::1", else every group (no other is made today). */
function formatLoopback6(bytes: Buffer, at: number): string {
  let loopback = bytes[at + 15] === 1;
  for (let i = 0; i < 15 && loopback; i++) loopback = bytes[at + i] === 0;
  if (loopback) return "::1";
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(bytes.readUInt16BE(at + 2 * i).toString(16));
  return groups.join(":");
}

/** A five-tuple as the program lays it out (12 bytes): the head of the inbound key and outbound value. */
function writeFiveTuple(buf: Buffer, offset: number, t: FiveTuple): void {
  writeAddress(buf, offset, t.localAddress);
  writeAddress(buf, offset + 4, t.remoteAddress);
  buf.writeUInt16BE(t.localPort, offset + 8);
  buf.writeUInt16BE(t.remotePort, offset + 10);
}

function inboundKey(flow: InboundFlow): Buffer {
  const key = Buffer.alloc(INBOUND_KEY_SIZE);
  writeFiveTuple(key, 0, flow);
  key.writeUInt16BE(flow.channel ?? 0, 12);
  return key;
}

/** The IPv6 five-tuple (addresses 16 bytes each, local first) and channel: tb_inbound6's key. */
function inbound6Key(flow: InboundFlow): Buffer {
  const key = Buffer.alloc(INBOUND6_KEY_SIZE);
  writeAddress6(key, 0, flow.localAddress);
  writeAddress6(key, 16, flow.remoteAddress);
  key.writeUInt16BE(flow.localPort, 32);
  key.writeUInt16BE(flow.remotePort, 34);
  key.writeUInt16BE(flow.channel ?? 0, 36);
  return key;
}

/** The first tc priority an interface's filters try: stable across restarts, spread between interfaces. */
export function filterPreference(wireguardInterface: string): number {
  let h = 2166136261;
  for (let i = 0; i < wireguardInterface.length; i++) {
    h = Math.imul(h ^ wireguardInterface.charCodeAt(i), 16777619) >>> 0;
  }
  return PREF_BASE + (h % PREF_SPAN);
}

async function ensureBpffs(): Promise<void> {
  const mounts = await readFile("/proc/self/mounts", "utf8");
  if (mounts.split("\n").some((line) => line.split(" ")[1] === BPFFS && line.split(" ")[2] === "bpf")) return;
  // systemd mounts it on most hosts; `ip netns exec` remounts /sys without it.
  await run("mount", ["-t", "bpf", "bpf", BPFFS]);
}

/** Pin directories of instances that are gone (another interface's, or our own interface's last run). */
async function removeDeadPins(): Promise<void> {
  const dirs = await readdir(PIN_ROOT).catch(() => [] as string[]);
  for (const name of dirs) {
    const dir = join(PIN_ROOT, name);
    const owner = await readOwner(["pinned", join(dir, "maps", "tb_owner")]).catch(() => null);
    if (!owner || !ownerAlive(owner)) await rm(dir, { recursive: true, force: true });
  }
}

/** The loaded program for one WireGuard interface: its maps and the interfaces it is attached to. */
export class FastPathProgram {
  /** Interfaces attached to, with their ifindex: a recreated interface (same name) needs attaching again. */
  private readonly attached = new Map<string, number>();
  private closed = false;
  private heartbeat: NodeJS.Timeout | null = null;
  private pref = 0;
  private ownerFlags = 0;

  private constructor(
    private readonly pinDir: string,
    private readonly outbound: RawMap,
    private readonly inbound: RawMap,
    private readonly outbound6: RawMap,
    private readonly inbound6: RawMap,
    private readonly outbound6lo: RawMap,
    private readonly owner: RawMap,
    private readonly reader: BatchedMapReader,
  ) {
    this.movedTracker = new MovedCounterTracker(reader);
  }

  private readonly movedTracker: MovedCounterTracker;

  /**
   * Loads the program and pins it with its maps under `pinDir`, attached nowhere, its owner record
   * not yet written (so it forwards nothing). `load` does this for an instance; tests use it alone.
   */
  static async open(pinDir: string): Promise<FastPathProgram> {
    const { createMapRef, objGet, RawMap } = await loadBpfModule();
    const object = fastPathObjectPath();
    if (!existsSync(object)) {
      throw new ConfigError(
        "ebpf-unavailable",
        `--ebpf needs ${object}: run "npm run build:ebpf" (needs clang)`,
        {
          object,
        },
      );
    }
    // Pins need the BPF filesystem; without it /sys/fs/bpf is a sysfs directory, where a recursive
    // mkdir answers ENOENT and Node's mkdir({recursive}) retries for ever.
    await ensureBpffs();
    await rm(pinDir, { recursive: true, force: true });
    await mkdir(pinDir, { recursive: true });
    try {
      await run("bpftool", [
        "prog",
        "loadall",
        object,
        join(pinDir, "prog"),
        "type",
        "classifier",
        "pinmaps",
        join(pinDir, "maps"),
      ]);
      const openMap = (name: string, keySize: number, valueSize: number): RawMap => {
        const ref = createMapRef(objGet(join(pinDir, "maps", name)), { transfer: true });
        if (ref.keySize !== keySize || ref.valueSize !== valueSize) {
          throw new RuntimeError("ebpf-map-layout", `map ${name} does not match the loader's layout`, {
            name,
            keySize: ref.keySize,
            valueSize: ref.valueSize,
          });
        }
        return new RawMap(ref);
      };
      return new FastPathProgram(
        pinDir,
        openMap("tb_outbound", OUTBOUND_KEY_SIZE, OUTBOUND_VALUE_SIZE),
        openMap("tb_inbound", INBOUND_KEY_SIZE, INBOUND_VALUE_SIZE),
        openMap("tb_outbound6", OUTBOUND_KEY_SIZE, OUTBOUND6_VALUE_SIZE),
        openMap("tb_inbound6", INBOUND6_KEY_SIZE, INBOUND_VALUE_SIZE),
        openMap("tb_outbound6lo", LOOPBACK6_KEY_SIZE, OUTBOUND6_VALUE_SIZE),
        openMap("tb_owner", 4, OWNER_VALUE_SIZE),
        await BatchedMapReader.create(),
      );
    } catch (err) {
      await rm(pinDir, { recursive: true, force: true });
      throw err;
    }
  }

  /**
   * Loads the program for `wireguardInterface` and attaches it to lo. First clears what dead instances
   * of this network namespace left (filters, pins: a SIGKILLed one's, whatever interface it served),
   * then takes a tc preference no live instance holds. Needs root (CAP_BPF, CAP_NET_ADMIN), bpftool, tc.
   */
  static async load(wireguardInterface: string): Promise<FastPathProgram> {
    await loadBpfModule(); // before touching the kernel: without the module there is nothing to load
    await ensureBpffs();
    const preferred = filterPreference(wireguardInterface);
    const instances = await listInstances(preferred);
    let restoresLocalnet = false;
    const taken = new Set<number>();
    for (const instance of instances) {
      // The duty to restore route_localnet passes on from every instance that had it, dead or alive.
      if ((instance.owner?.flags ?? 0) & OWNER_RESTORES_LOCALNET) restoresLocalnet = true;
      if (instance.alive) for (const f of instance.filters) taken.add(f.pref);
      else await removeFilters(instance.filters);
    }
    await removeDeadPins();
    const program = await FastPathProgram.open(join(PIN_ROOT, wireguardInterface));
    try {
      // Datagrams put into lo by the program carry no route yet, and the stack routes 127/8 arriving on
      // lo only with route_localnet set. It is set on lo alone (other interfaces still drop 127/8), and
      // restored by the last instance to leave when one of us set it.
      if ((await readFile(ROUTE_LOCALNET, "utf8")).trim() !== "1") {
        await writeFile(ROUTE_LOCALNET, "1");
        restoresLocalnet = true;
      }
      program.ownerFlags = restoresLocalnet ? OWNER_RESTORES_LOCALNET : 0;
      program.beat();
      program.heartbeat = setInterval(() => program.beat(), HEARTBEAT_MS);
      program.heartbeat.unref();
      await program.claimLoopback(preferred, taken);
      return program;
    } catch (err) {
      await program.close();
      throw err;
    }
  }

  get preference(): number {
    return this.pref;
  }

  get interfaces(): string[] {
    return [...this.attached.keys()];
  }

  /** The pinned program, for tests that run it on hand-made packets (bpftool prog run). */
  get programPath(): string {
    return join(this.pinDir, "prog", PROGRAM_NAME);
  }

  /** The pinned program at lo's egress (IPv6 paths' outbound translation), for tests as above. */
  get egressProgramPath(): string {
    return join(this.pinDir, "prog", EGRESS_PROGRAM_NAME);
  }

  /** The pinned program at ingress of an uplink without a MAC header. */
  get l3ProgramPath(): string {
    return join(this.pinDir, "prog", L3_PROGRAM_NAME);
  }

  /** Writes the owner record with a fresh heartbeat: the program forwards only while it is fresh. */
  beat(): void {
    if (this.closed) return;
    const value = encodeOwner({
      heartbeatNs: monotonicNs(),
      pid: process.pid,
      pref: this.pref,
      flags: this.ownerFlags,
    });
    this.owner.set(Buffer.alloc(4), value);
  }

  /**
   * Attaches to lo at the first preference from `preferred` on that no live instance holds. `tc filter
   * add` fails on a preference in use, so two instances starting at once cannot both take one.
   */
  private async claimLoopback(preferred: number, taken: Set<number>): Promise<void> {
    await this.ensureClsact("lo");
    let lastError: unknown = null;
    for (let i = 0; i < PREF_SPAN; i++) {
      const pref = PREF_BASE + ((preferred - PREF_BASE + i) % PREF_SPAN);
      if (taken.has(pref)) continue;
      try {
        await run("tc", this.filterArgs("add", "lo", pref));
        await run("tc", this.filterArgs("add", "lo", pref, "egress")).catch(async (err: unknown) => {
          // A filter of someone else's holds this preference at egress only: give ingress back too.
          await run("tc", ["filter", "del", "dev", "lo", "ingress", "pref", String(pref)]).catch(() => "");
          throw err;
        });
        this.pref = pref;
        this.attached.set("lo", 1);
        this.beat();
        return;
      } catch (err) {
        // Taken meanwhile (or by another program's filter): try the next one. Anything else is final.
        if (!/exist|exclusivity/i.test((err as Error).message)) throw err;
        lastError = err;
      }
    }
    throw new RuntimeError(
      "ebpf-attach",
      "no free tc preference on lo for the fast path",
      {},
      { cause: lastError },
    );
  }

  private filterArgs(
    verb: "add" | "replace",
    dev: string,
    pref: number,
    direction: FilterDirection = "ingress",
    program = direction === "egress" ? this.egressProgramPath : this.programPath,
  ): string[] {
    const handle = ["handle", "1", "bpf", "direct-action", "object-pinned", program];
    return ["filter", verb, "dev", dev, direction, "pref", String(pref), ...handle];
  }

  private async ensureClsact(dev: string): Promise<void> {
    const present = async () => (await run("tc", ["qdisc", "show", "dev", dev, "clsact"])).includes("clsact");
    if (await present()) return;
    // Another instance starting at the same moment may add it first.
    await run("tc", ["qdisc", "add", "dev", dev, "clsact"]).catch(async (err: unknown) => {
      if (!(await present())) throw err;
    });
  }

  /**
   * Attaches at tc ingress of `dev` (adding a clsact qdisc when it has none), the program that reads
   * its frames: from a MAC header or from the IP header. Idempotent.
   */
  async attach(dev: string, ifindex: number): Promise<void> {
    if (this.attached.get(dev) === ifindex || this.closed) return;
    this.attached.set(dev, ifindex);
    try {
      const program = (await hasEthernetHeader(dev)) ? this.programPath : this.l3ProgramPath;
      await this.ensureClsact(dev);
      await run("tc", this.filterArgs("replace", dev, this.pref, "ingress", program));
    } catch (err) {
      this.attached.delete(dev);
      throw err;
    }
  }

  /**
   * Sets L(P)'s outbound entry (in the IPv4 or the IPv6 map, removed from the other), or L6(P)'s (in
   * tb_outbound6lo).
   */
  setOutbound(e: OutboundEntry): void {
    const key = outboundKey(e.loopbackAddress, e.loopbackPort);
    if (isIPv6(e.loopbackAddress)) {
      refuseLoopback6Unless(e, !e.toLoopback && e.nextHop === undefined);
      this.outbound6lo.set(key, outbound6Value(e, 0, undefined));
      return;
    }
    const nextHop = e.toLoopback ? undefined : e.nextHop;
    if (nextHop !== undefined && !(isIPv6(nextHop) && isIPv6(e.remoteAddress))) {
      throw new RuntimeError("ebpf-next-hop", `next hop ${nextHop} for ${e.remoteAddress}: IPv6 paths only`, {
        nextHop,
        remoteAddress: e.remoteAddress,
      });
    }
    const flags =
      (e.toLoopback ? OUT_TO_LOOPBACK : 0) | (e.channel ? OUT_CHANNEL : 0) | (nextHop ? OUT_NEXT_HOP : 0);
    if (isIPv6(e.remoteAddress)) {
      this.outbound.delete(key);
      this.outbound6.set(key, outbound6Value(e, flags, nextHop));
      return;
    }
    const value = Buffer.alloc(OUTBOUND_VALUE_SIZE);
    writeFiveTuple(value, 0, e);
    value.writeUInt16BE(e.wireguardPort, 12);
    value.writeUInt16LE(flags, 14);
    value.writeUInt32LE(e.ifindex, 16);
    value.writeUInt16BE(e.channel ?? 0, 20);
    this.outbound6.delete(key);
    this.outbound.set(key, value);
  }

  deleteOutbound(loopbackAddress: string, loopbackPort: number): void {
    const key = outboundKey(loopbackAddress, loopbackPort);
    if (isIPv6(loopbackAddress)) {
      this.outbound6lo.delete(key);
      return;
    }
    this.outbound.delete(key);
    this.outbound6.delete(key);
  }

  outboundCounters(loopbackAddress: string, loopbackPort: number): EntryCounters | null {
    const key = outboundKey(loopbackAddress, loopbackPort);
    if (isIPv6(loopbackAddress)) {
      const native = this.outbound6lo.get(key);
      return native ? counters(native, 48) : null;
    }
    const v4 = this.outbound.get(key);
    if (v4) return counters(v4, 24);
    const v6 = this.outbound6.get(key);
    return v6 ? counters(v6, 48) : null;
  }

  setInbound(e: InboundEntry): void {
    const value = Buffer.alloc(INBOUND_VALUE_SIZE);
    if (isIPv6(e.loopbackAddress)) {
      // Only ::1 is delivered from: the program writes it, the value holds the port alone.
      refuseLoopback6Unless(e, e.loopbackAddress === "::1");
      value.writeUInt16LE(IN_LOOPBACK6, INBOUND_FLAGS_AT);
    } else {
      writeAddress(value, 0, e.loopbackAddress);
    }
    value.writeUInt16BE(e.loopbackPort, 4);
    value.writeUInt16BE(e.wireguardPort, 6);
    value.writeUInt32LE(e.loopbackIfindex, 8);
    if (isIPv6(e.remoteAddress)) this.inbound6.set(inbound6Key(e), value);
    else this.inbound.set(inboundKey(e), value);
  }

  deleteInbound(flow: InboundFlow): void {
    if (isIPv6(flow.remoteAddress)) this.inbound6.delete(inbound6Key(flow));
    else this.inbound.delete(inboundKey(flow));
  }

  inboundCounters(flow: InboundFlow): EntryCounters | null {
    const value = isIPv6(flow.remoteAddress)
      ? this.inbound6.get(inbound6Key(flow))
      : this.inbound.get(inboundKey(flow));
    return value ? counters(value, 16) : null;
  }

  /**
   * The counters of many entries (null where there is none), as `outboundCounters` and `inboundCounters`
   * answer each: one pass over a map in BPF_MAP_LOOKUP_BATCH calls when enough of its entries are asked
   * for (the forwarder's reading of every quiet entry at once), else a lookup per key.
   */
  countersMany(
    outbound: LoopbackKey[],
    inbound: InboundFlow[],
  ): { outbound: (EntryCounters | null)[]; inbound: (EntryCounters | null)[] } {
    const out = outbound.map(() => null as EntryCounters | null);
    const keys = outbound.map((k) => outboundKey(k.loopbackAddress, k.loopbackPort));
    const l4: number[] = [];
    const l6: number[] = [];
    outbound.forEach((k, i) => {
      (isIPv6(k.loopbackAddress) ? l6 : l4).push(i);
    });
    // The IPv6 map first: an entry of both (never left so by setOutbound) is the IPv4 one, as outboundCounters has it.
    this.reader.read(this.outbound6, keys, l4, (v, at) => counters(v, at + 48), out);
    this.reader.read(this.outbound, keys, l4, (v, at) => counters(v, at + 24), out);
    this.reader.read(this.outbound6lo, keys, l6, (v, at) => counters(v, at + 48), out);
    const inb = inbound.map(() => null as EntryCounters | null);
    const v4: number[] = [];
    const v6: number[] = [];
    inbound.forEach((flow, i) => {
      (isIPv6(flow.remoteAddress) ? v6 : v4).push(i);
    });
    const inKeys = inbound.map((flow) => (isIPv6(flow.remoteAddress) ? inbound6Key(flow) : inboundKey(flow)));
    this.reader.read(this.inbound, inKeys, v4, (v, at) => counters(v, at + 16), inb);
    this.reader.read(this.inbound6, inKeys, v6, (v, at) => counters(v, at + 16), inb);
    return { outbound: out, inbound: inb };
  }

  /**
   * The entries whose packets moved since the last call (every entry when `full`): one pass over each
   * map, where asking for every quiet entry of a hub cost a lookup (and an IPC round) per key.
   */
  countersMoved(full: boolean): MovedCounter[] {
    return this.movedTracker.moved(
      [
        { map: this.outbound, direction: "outbound", loopback: loopbackInKey, countersAt: 24 },
        { map: this.outbound6, direction: "outbound", loopback: loopbackInKey, countersAt: 48 },
        { map: this.outbound6lo, direction: "outbound", loopback: loopback6InKey, countersAt: 48 },
        { map: this.inbound, direction: "inbound", loopback: loopbackInValue, countersAt: 16 },
        { map: this.inbound6, direction: "inbound", loopback: loopbackInValue, countersAt: 16 },
      ],
      full,
    );
  }

  /**
   * Detaches from every interface, restores route_localnet when this instance set it (or took the duty
   * over) and no other live instance in the namespace remains, unpins and closes the maps.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.heartbeat) clearInterval(this.heartbeat);
    const filters = [...this.attached.keys()].map((dev): [string, FilterDirection] => [dev, "ingress"]);
    if (this.attached.has("lo")) filters.push(["lo", "egress"]);
    for (const [dev, direction] of filters) {
      // The interface may be gone already (a namespace torn down): nothing left to detach then.
      await run("tc", ["filter", "del", "dev", dev, direction, "pref", String(this.pref)]).catch(() => "");
    }
    this.attached.clear();
    if (this.ownerFlags & OWNER_RESTORES_LOCALNET) {
      try {
        // Another instance may be in this very process (`run` without --interface: one per interface),
        // so only this one, by its tc preference, is left out.
        const self = (o: Owner | null) => o?.pid === process.pid && o.pref === this.pref;
        const others = (await listInstances(-1)).filter((i) => i.alive && !self(i.owner));
        if (others.length === 0) await writeFile(ROUTE_LOCALNET, "0");
      } catch {
        // Namespace gone or tools missing: nothing to restore in.
      }
    }
    this.outbound.ref.close();
    this.inbound.ref.close();
    this.outbound6.ref.close();
    this.inbound6.ref.close();
    this.outbound6lo.ref.close();
    this.owner.ref.close();
    await rm(this.pinDir, { recursive: true, force: true });
  }
}

/** An IPv6 path's outbound value (tb_outbound6's, tb_outbound6lo's): the five-tuple, flags, next hop. */
function outbound6Value(e: OutboundEntry, flags: number, nextHop: string | undefined): Buffer {
  const value = Buffer.alloc(OUTBOUND6_VALUE_SIZE);
  writeAddress6(value, 0, e.localAddress);
  writeAddress6(value, 16, e.remoteAddress);
  value.writeUInt16BE(e.localPort, 32);
  value.writeUInt16BE(e.remotePort, 34);
  value.writeUInt16BE(e.wireguardPort, 36);
  value.writeUInt16LE(flags, 38);
  value.writeUInt32LE(e.ifindex, 40);
  value.writeUInt16BE(e.channel ?? 0, 44);
  if (nextHop) writeAddress6(value, OUTBOUND6_NEXT_HOP_AT, nextHop);
  return value;
}

/** An entry at L6(P) is a plain UDP path over IPv6 (no channel), and `ok` besides; else a typed error. */
function refuseLoopback6Unless(e: InboundEntry | OutboundEntry, ok: boolean): void {
  if (ok && isIPv6(e.remoteAddress) && isIPv6(e.localAddress) && !e.channel) return;
  throw new RuntimeError(
    "ebpf-loopback6",
    `an entry at [${e.loopbackAddress}]:${e.loopbackPort} is for plain UDP to an IPv6 remote only, from ::1 (not ${e.remoteAddress}${e.channel ? ` on channel ${e.channel}` : ""})`,
    { loopbackAddress: e.loopbackAddress, remoteAddress: e.remoteAddress },
  );
}

/** L(P) as the program lays it out (4 address bytes, a big-endian port) at `at`: "127.a.b.c:port". */
function loopbackAt(bytes: Buffer, at: number): string {
  return `${bytes[at]}.${bytes[at + 1]}.${bytes[at + 2]}.${bytes[at + 3]}:${bytes.readUInt16BE(at + 4)}`;
}

/** L(P) in an outbound key. */
const loopbackInKey: LoopbackReader = (keys, keyAt) => loopbackAt(keys, keyAt);

/** L6(P) in tb_outbound6lo's key: "::1:port". */
const loopback6InKey: LoopbackReader = (keys, keyAt) =>
  `${formatLoopback6(keys, keyAt)}:${keys.readUInt16BE(keyAt + 16)}`;

/** The loopback an inbound value delivers from: L(P), or L6(P) ("::1:port") when flagged. */
const loopbackInValue: LoopbackReader = (_keys, _keyAt, values, at) =>
  (values.readUInt16LE(at + INBOUND_FLAGS_AT) & IN_LOOPBACK6) !== 0
    ? `::1:${values.readUInt16BE(at + 4)}`
    : loopbackAt(values, at);
