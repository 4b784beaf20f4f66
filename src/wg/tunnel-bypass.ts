// Keeps Tunnelbore's own traffic out of the tunnel it serves (DESIGN §1). A full tunnel (wg-quick with
// AllowedIPs = 0.0.0.0/0, ::/0) routes every packet without the interface's fwmark into the tunnel
// (`ip rule not fwmark M table M`). WireGuard's socket carries M (SO_MARK); Tunnelbore's sockets must
// carry it too, or its datagrams to the peers enter the tunnel they are meant to carry.
//
// Node has no SO_MARK, and an option set per socket could not reach werift's sockets, getaddrinfo's DNS
// sockets, or a TCP socket before its connect(). So the mark follows process membership: Tunnelbore
// moves into a cgroup v2 of its own (a child of the one it runs in), and a BPF cgroup/sock_create
// program attached there (ebpf/tunnel-mark.bpf.c) gives every inet socket created inside it the mark
// before any route lookup, so route and source address are chosen with it, for IPv4 and IPv6 alike.
// docs/decisions.md says why not nftables.
//
// Nothing is set up while the interface has no fwmark, so Tunnelbore without a full tunnel changes
// nothing on the host. Sockets made before a change keep their old mark (or none): `follow` says when
// that happened, and Tunnelbore then replaces them.
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, readFile, readlink, rm, rmdir, writeFile } from "node:fs/promises";
import { endianness } from "node:os";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";

const execFileAsync = promisify(execFile);

const CGROUP_MOUNT = "/sys/fs/cgroup";
const BPFFS = "/sys/fs/bpf";
/** Pins of one instance: /sys/fs/bpf/tunnelbore-mark/<cgroup name>/tunnel_mark (the map). */
const PIN_ROOT = `${BPFFS}/tunnelbore-mark`;
const MAP_NAME = "tunnel_mark";
/** How long a crashed instance's cgroup may take to empty. */
const STALE_WAIT_MS = 3000;

/** The compiled program: next to the compiled sources (dist/ebpf), or built from the source tree. */
export function tunnelMarkObjectPath(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    join(here, "..", "..", "ebpf", "tunnel-mark.bpf.o"),
    join(here, "..", "..", "dist", "ebpf", "tunnel-mark.bpf.o"),
  ];
  return candidates.find((p) => existsSync(p)) ?? candidates[0] ?? "";
}

export type TunnelBypassState = "inactive" | "active" | "unavailable";

export interface TunnelBypassStatus {
  /**
   * "active": Tunnelbore's sockets carry the interface's fwmark; "inactive": the interface has none
   * (no full tunnel), nothing is set up; "unavailable": they cannot carry it (`reason` says why).
   */
  state: TunnelBypassState;
  /** The interface's fwmark as last read (0: none). */
  fwmark: number;
  /** The mark Tunnelbore's new sockets carry (0: none). */
  mark: number;
  /** The cgroup Tunnelbore moved into, once it did. */
  cgroup: string | null;
  reason: string | null;
}

export interface TunnelBypassOptions {
  interfaceName: string;
  logger: Logger;
  /** The compiled ebpf/tunnel-mark.bpf.c (default `tunnelMarkObjectPath()`). */
  objectPath?: string;
  /**
   * The process moved into the cgroup (default this one). With privilege separation the privileged
   * parent sets the mark up for its unprivileged worker, which opens every socket.
   */
  memberPid?: () => number;
}

/** One line of /proc/self/mountinfo, the fields we need. */
export interface MountEntry {
  /** The directory of the filesystem that is mounted (for cgroup2: the cgroup shown at the mount point). */
  root: string;
  mountPoint: string;
  fsType: string;
}

/** Parses /proc/self/mountinfo ("36 35 98:0 /root /mnt rw,relatime shared:1 - cgroup2 cgroup2 rw"). */
export function parseMountInfo(text: string): MountEntry[] {
  const unescapeOctal = (s: string) =>
    s.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
  return text.split("\n").flatMap((line) => {
    const sep = line.indexOf(" - ");
    if (sep < 0) return [];
    const fields = line.slice(0, sep).split(" ");
    const fsType = line.slice(sep + 3).split(" ")[0];
    const root = fields[3];
    const mountPoint = fields[4];
    if (!fsType || root === undefined || mountPoint === undefined) return [];
    return [{ root: unescapeOctal(root), mountPoint: unescapeOctal(mountPoint), fsType }];
  });
}

/** This process's cgroup v2 path from /proc/self/cgroup (the "0::" line), or null. */
export function parseOwnCgroup(text: string): string | null {
  const path = /^0::(\/.*)$/m.exec(text)?.[1];
  return path === undefined ? null : path.replace(/ \(deleted\)$/, "");
}

/** Where cgroup `path` is found in the file system, through a cgroup2 mount that shows it; or null. */
export function cgroupDirectory(mounts: MountEntry[], path: string): string | null {
  for (const m of mounts) {
    if (m.fsType !== "cgroup2") continue;
    const root = m.root === "/" ? "" : m.root.replace(/\/$/, "");
    if (root !== "" && path !== root && !path.startsWith(`${root}/`)) continue;
    return join(m.mountPoint, path.slice(root.length));
  }
  return null;
}

/** The name of an instance's cgroup: one per interface and network namespace, the same after a restart. */
export function cgroupName(interfaceName: string, netns: string): string {
  return `tunnelbore-${interfaceName}-${/\d+/.exec(netns)?.[0] ?? "0"}`;
}

export function formatMark(mark: number): string {
  return `0x${mark.toString(16)}`;
}

/** Gives Tunnelbore's sockets the WireGuard interface's fwmark (see the top of this file). */
export class TunnelBypass {
  private readonly log: Logger;
  private readonly objectPath: string;
  private fwmark = 0;
  /** The mark in the map, which new sockets get (0: none). */
  private current = 0;
  private reason: string | null = null;
  /** A mark that could not be set up: not tried again at every read of the interface. */
  private failedMark = 0;
  private parentDir: string | null = null;
  private cgroupDir: string | null = null;
  private pinDir: string | null = null;

  constructor(private readonly options: TunnelBypassOptions) {
    this.log = options.logger;
    this.objectPath = options.objectPath ?? tunnelMarkObjectPath();
  }

  /** The mark Tunnelbore's new sockets carry (0: none). */
  get mark(): number {
    return this.current;
  }

  /**
   * At start, before Tunnelbore opens any socket: marks them from the beginning when the interface has an
   * fwmark already; otherwise only checks that it could, and says so when it could not. Never throws.
   */
  async start(fwmark: number): Promise<void> {
    if (fwmark !== 0) {
      await this.follow(fwmark);
      return;
    }
    const problem = await this.missingPrerequisite();
    if (problem) {
      this.reason = problem;
      this.log.info(
        { reason: problem },
        "full tunnels (wg-quick AllowedIPs = 0.0.0.0/0) would not work: Tunnelbore cannot give its sockets the interface's fwmark",
      );
    }
  }

  /**
   * Follows the interface's fwmark as just read. True when the mark of new sockets changed: sockets made
   * before (without it, or with the old one) must then be replaced. Never throws.
   */
  async follow(fwmark: number): Promise<boolean> {
    this.fwmark = fwmark;
    // Without an fwmark there is nothing to escape; a mark kept from before is harmless (no rule names
    // it any more) and saves replacing every socket while wg-quick brings the interface down and up.
    if (fwmark === 0 || fwmark === this.current || fwmark === this.failedMark) return false;
    try {
      if (this.cgroupDir) await this.writeMark(fwmark);
      else await this.setUp(fwmark);
    } catch (err) {
      this.failedMark = fwmark;
      this.reason = err instanceof Error ? err.message : String(err);
      this.log.warn(
        { fwmark: formatMark(fwmark), reason: this.reason },
        "the interface has an fwmark (a full tunnel) but Tunnelbore cannot give its sockets the mark: its traffic to peers may be routed into the tunnel",
      );
      return false;
    }
    this.current = fwmark;
    this.failedMark = 0;
    this.reason = null;
    this.log.info(
      { fwmark: formatMark(fwmark), cgroup: this.cgroupDir },
      "Tunnelbore's sockets carry the interface's fwmark: its traffic stays outside the tunnel",
    );
    return true;
  }

  status(): TunnelBypassStatus {
    const state: TunnelBypassState =
      this.reason !== null
        ? "unavailable"
        : this.fwmark !== 0 && this.current === this.fwmark
          ? "active"
          : "inactive";
    return { state, fwmark: this.fwmark, mark: this.current, cgroup: this.cgroupDir, reason: this.reason };
  }

  /** Leaves the cgroup (with every process in it) and removes it and the pinned map. Never throws. */
  async close(): Promise<void> {
    const { cgroupDir, parentDir, pinDir } = this;
    this.cgroupDir = null;
    this.pinDir = null;
    if (cgroupDir && parentDir) {
      try {
        // Children (`ip monitor`, a `wg` still running) move out with us, or the cgroup could not go.
        const pids = (await readFile(join(cgroupDir, "cgroup.procs"), "utf8")).split("\n").filter(Boolean);
        for (const pid of pids) {
          await writeFile(join(parentDir, "cgroup.procs"), pid).catch((err: unknown) => {
            // A child that exited meanwhile.
            if ((err as NodeJS.ErrnoException).code !== "ESRCH") throw err;
          });
        }
        await rmdir(cgroupDir); // the program attached to it goes with it
      } catch (err) {
        this.log.warn({ err, cgroup: cgroupDir }, "cannot remove Tunnelbore's cgroup (the next start will)");
      }
    }
    if (pinDir) await rm(pinDir, { recursive: true, force: true }).catch(() => undefined);
  }

  /** Why the mark cannot be set up here, as far as can be told without setting it up; null if it can. */
  private async missingPrerequisite(): Promise<string | null> {
    if (!existsSync(this.objectPath)) {
      return `the BPF program is not built (${this.objectPath}: \`npm run build\` needs clang)`;
    }
    try {
      await execFileAsync("bpftool", ["version"], { timeout: 10_000 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT")
        return "bpftool is not installed (apt-get install bpftool)";
    }
    const filesystems = await readFile("/proc/filesystems", "utf8").catch(() => "");
    if (!/\tcgroup2$/m.test(filesystems)) return "this kernel has no cgroup v2";
    if (!/\tbpf$/m.test(filesystems)) return "this kernel has no BPF file system";
    return null;
  }

  /** Moves Tunnelbore into a cgroup of its own whose sockets get `mark`. Throws what went wrong. */
  private async setUp(mark: number): Promise<void> {
    const problem = await this.missingPrerequisite();
    if (problem) throw unavailable(problem);
    const parent = await ownCgroupDirectory();
    const name = cgroupName(this.options.interfaceName, await readlink("/proc/self/ns/net"));
    const dir = join(parent, name);
    await removeStaleCgroup(dir);
    await mkdir(dir);
    this.parentDir = parent;
    this.cgroupDir = dir;
    try {
      await ensureBpffs();
      const pins = join(PIN_ROOT, name);
      await rm(pins, { recursive: true, force: true });
      await mkdir(pins, { recursive: true });
      this.pinDir = pins;
      const program = join(pins, "program");
      await bpftool([
        "prog",
        "load",
        this.objectPath,
        program,
        "type",
        "cgroup/sock_create",
        "pinmaps",
        pins,
      ]);
      await this.writeMark(mark);
      // multi: programs of an ancestor cgroup (systemd's, `ip vrf exec`'s) keep running too.
      await bpftool(["cgroup", "attach", dir, "sock_create", "pinned", program, "multi"]);
      await rm(program); // the attachment holds the program; only the map is needed later
      await writeFile(join(dir, "cgroup.procs"), String(this.options.memberPid?.() ?? process.pid));
    } catch (err) {
      await this.close();
      throw err;
    }
  }

  private async writeMark(mark: number): Promise<void> {
    if (!this.pinDir) throw unavailable("the mark's map is not pinned");
    const value = Buffer.alloc(4);
    if (endianness() === "LE") value.writeUInt32LE(mark);
    else value.writeUInt32BE(mark);
    await bpftool([
      "map",
      "update",
      "pinned",
      join(this.pinDir, MAP_NAME),
      "key",
      "0",
      "0",
      "0",
      "0",
      "value",
      ...[...value].map(String),
    ]);
  }
}

function unavailable(reason: string): RuntimeError {
  return new RuntimeError("tunnel-bypass-unavailable", reason);
}

async function bpftool(args: string[]): Promise<void> {
  try {
    await execFileAsync("bpftool", args, { timeout: 10_000 });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new RuntimeError(
      "tunnel-bypass-failed",
      `bpftool ${args.slice(0, 2).join(" ")} failed: ${e.stderr?.trim() || e.message}`,
      {},
      { cause: err },
    );
  }
}

/**
 * The directory of this process's cgroup v2. Where no cgroup2 is mounted and nothing is mounted at
 * /sys/fs/cgroup (`ip netns exec` remounts /sys without the cgroup mounts), one is mounted there.
 */
async function ownCgroupDirectory(): Promise<string> {
  const path = parseOwnCgroup(await readFile("/proc/self/cgroup", "utf8"));
  if (path === null) throw unavailable("this process is in no cgroup v2 (see /proc/self/cgroup)");
  const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
  let cgroup2 = mounts.filter((m) => m.fsType === "cgroup2");
  if (cgroup2.length === 0) {
    if (mounts.some((m) => m.mountPoint === CGROUP_MOUNT)) {
      throw unavailable(
        "no cgroup v2 is mounted (cgroup v1 only): mount one, e.g. mount -t cgroup2 none /sys/fs/cgroup/unified",
      );
    }
    await execFileAsync("mount", ["-t", "cgroup2", "cgroup2", CGROUP_MOUNT]).catch((err: unknown) => {
      throw unavailable(`cannot mount cgroup v2 at ${CGROUP_MOUNT}: ${(err as Error).message}`);
    });
    cgroup2 = [{ root: "/", mountPoint: CGROUP_MOUNT, fsType: "cgroup2" }];
  }
  const dir = cgroupDirectory(cgroup2, path);
  if (dir === null) throw unavailable(`no cgroup v2 mount shows this process's cgroup ${path}`);
  return dir;
}

/**
 * A crashed instance's cgroup is left behind: removed, with the program attached to it. Its children
 * (`ip monitor` ends with it) may take a moment to go; a Tunnelbore still in it does not.
 */
async function removeStaleCgroup(dir: string): Promise<void> {
  if (!existsSync(dir)) return;
  const procs = async () => (await readFile(join(dir, "cgroup.procs"), "utf8")).split("\n").filter(Boolean);
  let pids = await procs();
  for (let waited = 0; pids.length > 0 && waited < STALE_WAIT_MS; waited += 100) {
    await sleep(100);
    pids = await procs();
  }
  if (pids.length > 0) {
    throw unavailable(
      `another Tunnelbore for this interface runs in this network namespace (cgroup ${dir}, PIDs ${pids.join(" ")})`,
    );
  }
  await rmdir(dir);
}

/** bpffs where pins go; `ip netns exec` remounts /sys without it. */
async function ensureBpffs(): Promise<void> {
  const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
  if (mounts.some((m) => m.mountPoint === BPFFS && m.fsType === "bpf")) return;
  await execFileAsync("mount", ["-t", "bpf", "bpf", BPFFS]);
}
