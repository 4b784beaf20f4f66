/**
 * The fast path instances of this network namespace, as the kernel knows them: every tc filter running
 * our program, with its owner (tb_owner: heartbeat, PID, tc preference, duties). The kernel is the
 * record, so it holds for every instance whatever its mount namespace (`ip netns exec` gives each
 * process a bpffs of its own) and whatever happened to its pins. Used at start to clear what a killed
 * instance left and to pick a tc preference no live instance holds, and at exit to know whether
 * route_localnet is still needed.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ConfigError, RuntimeError } from "../src/errors.js";
import { pidAlive } from "../src/pid-alive.js";

const execFileAsync = promisify(execFile);

/** The programs' name as the kernel keeps it (BPF_OBJ_NAME_LEN: 15 characters; both read alike). */
const KERNEL_PROGRAM_NAME = "tunnelbore_fast";
const OWNER_MAP_NAME = "tb_owner";
/** As in fast-path.bpf.c: an owner silent this long lets traffic pass, and is taken for dead. */
export const OWNER_STALE_NS = 3_000_000_000n;
export const OWNER_VALUE_SIZE = 16;
/** Owner flag: the instance restores route_localnet=0 on lo when it is the last one to leave. */
export const OWNER_RESTORES_LOCALNET = 1;

export interface Owner {
  heartbeatNs: bigint;
  pid: number;
  pref: number;
  flags: number;
}

export function encodeOwner(o: Owner): Buffer {
  const value = Buffer.alloc(OWNER_VALUE_SIZE);
  value.writeBigUInt64LE(o.heartbeatNs, 0);
  value.writeUInt32LE(o.pid, 8);
  value.writeUInt16LE(o.pref, 12);
  value.writeUInt16LE(o.flags, 14);
  return value;
}

export function decodeOwner(value: Buffer): Owner {
  return {
    heartbeatNs: value.readBigUInt64LE(0),
    pid: value.readUInt32LE(8),
    pref: value.readUInt16LE(12),
    flags: value.readUInt16LE(14),
  };
}

/** CLOCK_MONOTONIC in ns, the clock of bpf_ktime_get_ns (libuv's hrtime reads the same clock). */
export const monotonicNs = (): bigint => process.hrtime.bigint();

/** Alive: heartbeat fresh and the PID still there (a SIGKILLed owner is dead at once, not 3 s later). */
export function ownerAlive(o: Owner, now = monotonicNs()): boolean {
  return now - o.heartbeatNs < OWNER_STALE_NS && pidAlive(o.pid);
}

export async function run(command: string, args: string[]): Promise<string> {
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
      { command, args },
    );
  }
}

/** One of our tc filters: where it is attached and the program it runs. */
export interface OurFilter {
  dev: string;
  direction: FilterDirection;
  pref: number;
  progId: number;
}

/** Where on a device a filter sits: every uplink and lo at ingress, lo at egress too (IPv6 paths). */
export type FilterDirection = "ingress" | "egress";

interface TcFilter {
  pref?: number;
  options?: { prog?: { id?: number; name?: string } };
}

/** Our filters at tc `direction` of `dev` (none when it has no clsact qdisc or is gone). */
async function filtersOn(dev: string, direction: FilterDirection): Promise<OurFilter[]> {
  const out = await run("tc", ["-j", "filter", "show", "dev", dev, direction]).catch(() => "[]");
  const filters = JSON.parse(out.trim() || "[]") as TcFilter[];
  return filters.flatMap((f) =>
    f.options?.prog?.name === KERNEL_PROGRAM_NAME && f.pref !== undefined && f.options.prog.id !== undefined
      ? [{ dev, direction, pref: f.pref, progId: f.options.prog.id }]
      : [],
  );
}

/** Every filter of ours in this network namespace, on every interface. */
export async function listOurFilters(): Promise<OurFilter[]> {
  const links = JSON.parse(await run("ip", ["-j", "link", "show"])) as Array<{ ifname?: string }>;
  const all: OurFilter[] = [];
  for (const link of links) {
    if (link.ifname) all.push(...(await filtersOn(link.ifname, "ingress")));
  }
  // Only lo has an egress filter of ours.
  all.push(...(await filtersOn("lo", "egress")));
  return all;
}

/** The owner record of a loaded program; null for a program without one (an older Tunnelbore). */
export async function ownerOfProgram(progId: number): Promise<Owner | null> {
  try {
    const prog = JSON.parse(await run("bpftool", ["-j", "prog", "show", "id", String(progId)])) as {
      map_ids?: number[];
    };
    for (const mapId of prog.map_ids ?? []) {
      const map = JSON.parse(await run("bpftool", ["-j", "map", "show", "id", String(mapId)])) as {
        name?: string;
      };
      if (map.name !== OWNER_MAP_NAME) continue;
      return await readOwner(["id", String(mapId)]);
    }
  } catch {
    // The program went away meanwhile: nobody owns it any more.
  }
  return null;
}

/** Reads an owner map named by bpftool's MAP spec (`id N` or `pinned PATH`). */
export async function readOwner(mapSpec: string[]): Promise<Owner> {
  const out = await run("bpftool", ["-j", "map", "lookup", ...mapSpec, "key", "0", "0", "0", "0"]);
  const { value } = JSON.parse(out) as { value: string[] };
  return decodeOwner(Buffer.from(value.map((b) => Number(b))));
}

/** Our filters grouped by program, each with its owner and whether that owner is alive. */
export interface Instance {
  progId: number;
  owner: Owner | null;
  alive: boolean;
  filters: OurFilter[];
}

/**
 * The instances in this network namespace. A program without an owner record (an older Tunnelbore)
 * counts as alive unless it sits at `legacyPref`, the preference such an instance for our interface
 * would have used (as before: the next start for an interface replaced that interface's filters).
 */
export async function listInstances(legacyPref: number): Promise<Instance[]> {
  const byProgram = new Map<number, OurFilter[]>();
  for (const f of await listOurFilters()) {
    byProgram.set(f.progId, [...(byProgram.get(f.progId) ?? []), f]);
  }
  const now = monotonicNs();
  const instances: Instance[] = [];
  for (const [progId, filters] of byProgram) {
    const owner = await ownerOfProgram(progId);
    const alive = owner ? ownerAlive(owner, now) : !filters.some((f) => f.pref === legacyPref);
    instances.push({ progId, owner, alive, filters });
  }
  return instances;
}

/** Removes a dead instance's filters (its program and maps go with the last reference). */
export async function removeFilters(filters: OurFilter[]): Promise<void> {
  for (const f of filters) {
    await run("tc", ["filter", "del", "dev", f.dev, f.direction, "pref", String(f.pref)]).catch(() => "");
  }
}
