/**
 * Loads ebpf/fast-path.bpf.c into the kernel, attaches it at tc ingress, and gives typed access to its
 * maps. bpftool loads the object and pins program and maps (libbpf does the relocation work; no npm
 * package loads a BTF-map object), `tc` attaches the pinned program, and the `bpf` package (libbpf
 * bindings) updates and reads the maps through their pinned paths.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { createMapRef, objGet, RawMap } from "bpf";
import { ConfigError, RuntimeError } from "../src/errors.js";
import type { FiveTuple } from "../src/proxy/path.js";

const execFileAsync = promisify(execFile);

const BPFFS = "/sys/fs/bpf";
const PROGRAM_NAME = "tunnelbore_fast_path";
const ROUTE_LOCALNET = "/proc/sys/net/ipv4/conf/lo/route_localnet";
/** Our tc filters use priorities 49152..53247, one per WireGuard interface, so instances never collide. */
const PREF_BASE = 49152;
const PREF_SPAN = 4096;

/** The compiled object: built by `npm run build:ebpf` next to the compiled loader, or in the source tree. */
export function fastPathObjectPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [join(here, "fast-path.bpf.o"), join(here, "..", "dist", "ebpf", "fast-path.bpf.o")];
  return candidates.find((p) => existsSync(p)) ?? candidates[0] ?? "";
}

/** Outbound: WireGuard's datagram to L(P) leaves from `local` to `remote` (IPv4, host byte order numbers). */
export interface OutboundEntry extends FiveTuple {
  loopbackAddress: string;
  loopbackPort: number;
  wireguardPort: number;
  /** The interface the datagram leaves by; lo means the peer is on this host. */
  ifindex: number;
  toLoopback: boolean;
}

/** Inbound: a datagram from `remote` to `local` (the entry's five-tuple, its key) reaches WireGuard from L(P). */
export interface InboundEntry extends FiveTuple {
  loopbackAddress: string;
  loopbackPort: number;
  wireguardPort: number;
  loopbackIfindex: number;
}

export interface EntryCounters {
  packets: bigint;
  bytes: bigint;
}

const OUTBOUND_KEY_SIZE = 8;
const OUTBOUND_VALUE_SIZE = 40;
const INBOUND_KEY_SIZE = 12;
const INBOUND_VALUE_SIZE = 32;

function writeAddress(buf: Buffer, offset: number, address: string): void {
  const parts = address.split(".");
  if (parts.length !== 4)
    throw new RuntimeError("ebpf-address", `not an IPv4 address: ${address}`, { address });
  for (let i = 0; i < 4; i++) buf[offset + i] = Number(parts[i]);
}

function outboundKey(loopbackAddress: string, loopbackPort: number): Buffer {
  const key = Buffer.alloc(OUTBOUND_KEY_SIZE);
  writeAddress(key, 0, loopbackAddress);
  key.writeUInt16BE(loopbackPort, 4);
  return key;
}

/** A five-tuple as the program lays it out (12 bytes): the inbound key, the head of an outbound value. */
function writeFiveTuple(buf: Buffer, offset: number, t: FiveTuple): void {
  writeAddress(buf, offset, t.localAddress);
  writeAddress(buf, offset + 4, t.remoteAddress);
  buf.writeUInt16BE(t.localPort, offset + 8);
  buf.writeUInt16BE(t.remotePort, offset + 10);
}

function inboundKey(t: FiveTuple): Buffer {
  const key = Buffer.alloc(INBOUND_KEY_SIZE);
  writeFiveTuple(key, 0, t);
  return key;
}

/** The tc priority of an interface's filters: stable across restarts, distinct between interfaces. */
export function filterPreference(wireguardInterface: string): number {
  let h = 2166136261;
  for (let i = 0; i < wireguardInterface.length; i++) {
    h = Math.imul(h ^ wireguardInterface.charCodeAt(i), 16777619) >>> 0;
  }
  return PREF_BASE + (h % PREF_SPAN);
}

async function run(command: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(command, args, { timeout: 10_000 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") {
      throw new ConfigError("ebpf-unavailable", `--ebpf needs ${command}, which is not installed`, {
        command,
      });
    }
    throw new RuntimeError(
      "ebpf-command",
      `${command} ${args.join(" ")} failed: ${(e.stderr ?? e.message).trim()}`,
      {
        command,
        args,
      },
    );
  }
}

async function ensureBpffs(): Promise<void> {
  const mounts = await readFile("/proc/self/mounts", "utf8");
  if (mounts.split("\n").some((line) => line.split(" ")[1] === BPFFS && line.split(" ")[2] === "bpf")) return;
  // systemd mounts it on most hosts; `ip netns exec` remounts /sys without it.
  await run("mount", ["-t", "bpf", "bpf", BPFFS]);
}

/** The loaded program for one WireGuard interface: its maps and the interfaces it is attached to. */
export class FastPathProgram {
  /** Interfaces attached to, with their ifindex: a recreated interface (same name) needs attaching again. */
  private readonly attached = new Map<string, number>();
  private closed = false;

  private constructor(
    private readonly pinDir: string,
    private readonly pref: number,
    private readonly outbound: RawMap,
    private readonly inbound: RawMap,
  ) {}

  /**
   * Loads the program for `wireguardInterface` (replacing what an earlier instance left, e.g. after
   * SIGKILL) and attaches it to lo. Needs root (CAP_BPF, CAP_NET_ADMIN), bpftool and tc.
   */
  static async load(wireguardInterface: string): Promise<FastPathProgram> {
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
    await ensureBpffs();
    const pinDir = join(BPFFS, "tunnelbore", wireguardInterface);
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
      const outbound = openMap("tb_outbound", OUTBOUND_KEY_SIZE, OUTBOUND_VALUE_SIZE);
      const inbound = openMap("tb_inbound", INBOUND_KEY_SIZE, INBOUND_VALUE_SIZE);
      // Datagrams put into lo by the program carry no route yet, and the stack routes 127/8 arriving on
      // lo only with route_localnet set. It is set on lo alone (other interfaces still drop 127/8) and
      // left set at exit: another interface's instance may rely on it.
      if ((await readFile(ROUTE_LOCALNET, "utf8")).trim() !== "1") await writeFile(ROUTE_LOCALNET, "1");
      const program = new FastPathProgram(pinDir, filterPreference(wireguardInterface), outbound, inbound);
      await program.removeStaleFilters();
      await program.attach("lo", 1);
      return program;
    } catch (err) {
      // Nothing half-loaded stays pinned; a filter already on lo is replaced at the next start.
      await rm(pinDir, { recursive: true, force: true });
      throw err;
    }
  }

  get preference(): number {
    return this.pref;
  }

  get interfaces(): string[] {
    return [...this.attached.keys()];
  }

  /** Attaches at tc ingress of `dev` (adding a clsact qdisc when it has none). Idempotent. */
  async attach(dev: string, ifindex: number): Promise<void> {
    if (this.attached.get(dev) === ifindex || this.closed) return;
    this.attached.set(dev, ifindex);
    try {
      const qdiscs = await run("tc", ["qdisc", "show", "dev", dev, "clsact"]);
      if (!qdiscs.includes("clsact")) await run("tc", ["qdisc", "add", "dev", dev, "clsact"]);
      await run("tc", [
        "filter",
        "replace",
        "dev",
        dev,
        "ingress",
        "pref",
        String(this.pref),
        "handle",
        "1",
        "bpf",
        "direct-action",
        "object-pinned",
        join(this.pinDir, "prog", PROGRAM_NAME),
      ]);
    } catch (err) {
      this.attached.delete(dev);
      throw err;
    }
  }

  setOutbound(e: OutboundEntry): void {
    const value = Buffer.alloc(OUTBOUND_VALUE_SIZE);
    writeFiveTuple(value, 0, e);
    value.writeUInt16BE(e.wireguardPort, 12);
    value.writeUInt16LE(e.toLoopback ? 1 : 0, 14);
    value.writeUInt32LE(e.ifindex, 16);
    this.outbound.set(outboundKey(e.loopbackAddress, e.loopbackPort), value);
  }

  deleteOutbound(loopbackAddress: string, loopbackPort: number): void {
    this.outbound.delete(outboundKey(loopbackAddress, loopbackPort));
  }

  outboundCounters(loopbackAddress: string, loopbackPort: number): EntryCounters | null {
    const value = this.outbound.get(outboundKey(loopbackAddress, loopbackPort));
    return value ? { packets: value.readBigUInt64LE(24), bytes: value.readBigUInt64LE(32) } : null;
  }

  setInbound(e: InboundEntry): void {
    const value = Buffer.alloc(INBOUND_VALUE_SIZE);
    writeAddress(value, 0, e.loopbackAddress);
    value.writeUInt16BE(e.loopbackPort, 4);
    value.writeUInt16BE(e.wireguardPort, 6);
    value.writeUInt32LE(e.loopbackIfindex, 8);
    this.inbound.set(inboundKey(e), value);
  }

  deleteInbound(flow: FiveTuple): void {
    this.inbound.delete(inboundKey(flow));
  }

  inboundCounters(flow: FiveTuple): EntryCounters | null {
    const value = this.inbound.get(inboundKey(flow));
    return value ? { packets: value.readBigUInt64LE(16), bytes: value.readBigUInt64LE(24) } : null;
  }

  /**
   * A killed instance leaves its filters attached (still forwarding with its last entries): remove ours
   * from every interface before this instance decides where to attach.
   */
  private async removeStaleFilters(): Promise<void> {
    const links = await run("ip", ["-o", "link", "show"]);
    for (const line of links.split("\n")) {
      const dev = /^\d+: ([^:@\s]+)/.exec(line)?.[1];
      if (!dev || dev === "lo") continue;
      const filters = await run("tc", ["filter", "show", "dev", dev, "ingress"]).catch(() => "");
      if (filters.includes(`pref ${this.pref} bpf`)) {
        await run("tc", ["filter", "del", "dev", dev, "ingress", "pref", String(this.pref)]).catch(() => "");
      }
    }
  }

  /** Detaches from every interface, unpins and closes the maps. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const dev of this.attached.keys()) {
      // The interface may be gone already (a namespace torn down): nothing left to detach then.
      await run("tc", ["filter", "del", "dev", dev, "ingress", "pref", String(this.pref)]).catch(
        () => undefined,
      );
    }
    this.attached.clear();
    this.outbound.ref.close();
    this.inbound.ref.close();
    await rm(this.pinDir, { recursive: true, force: true });
  }
}
