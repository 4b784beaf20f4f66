// The catch-all port of each interface when `run` serves them all: WireGuard configurations may name it
// (an Endpoint of 127.0.0.1:PORT), so an interface keeps its port across restarts. The first time an
// interface is seen it gets the lowest port from --listen's upward that no other interface has and no
// socket holds; the assignment is kept in the state directory (catch-all-ports.json) from then on.
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { RuntimeError } from "../errors.js";
import { ensureSecureDirectory } from "../files/secure-directory.js";
import { INTERFACE_NAME } from "../wg/interface-set.js";

/** How many ports above --listen's the interfaces' catch-alls may take. */
export const CATCH_ALL_PORT_RANGE = 256;
/** A file bigger than this is not ours. */
const MAX_FILE_BYTES = 1 << 20;
const FILE_NAME = "catch-all-ports.json";

/**
 * The interface's catch-all port: the one it already has, else the lowest from `base` (--listen's)
 * within CATCH_ALL_PORT_RANGE that no other interface has and `busy` does not report (held by WireGuard's
 * own socket, say). Null when the range is exhausted.
 */
export async function assignCatchAllPort(
  name: string,
  assigned: ReadonlyMap<string, number>,
  base: number,
  busy: (port: number) => Promise<boolean>,
): Promise<number | null> {
  const own = assigned.get(name);
  if (own !== undefined) return own;
  const taken = new Set(assigned.values());
  const last = Math.min(65535, base + CATCH_ALL_PORT_RANGE - 1);
  for (let port = base; port <= last; port++) {
    if (taken.has(port)) continue;
    if (await busy(port)) continue;
    return port;
  }
  return null;
}

/** The assignments on disk: root's state directory, never through a symlink, replaced atomically. */
export class CatchAllPortStore {
  private readonly file: string;
  private assigned = new Map<string, number>();
  private loaded = false;
  /** Assignments happen one at a time, so two new interfaces never get the same port. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly dir: string,
    private readonly base: number,
    private readonly busy: (port: number) => Promise<boolean>,
  ) {
    this.file = join(dir, FILE_NAME);
  }

  /** The interface's port, assigned (and saved) the first time; throws when none is left. */
  portFor(name: string): Promise<number> {
    const next = this.queue.then(() => this.assign(name));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async assign(name: string): Promise<number> {
    if (!this.loaded) {
      this.assigned = await this.load();
      this.loaded = true;
    }
    const port = await assignCatchAllPort(name, this.assigned, this.base, this.busy);
    if (port === null) {
      throw new RuntimeError(
        "catch-all-exhausted",
        `no free catch-all port for interface ${name} in ${this.base}..${this.base + CATCH_ALL_PORT_RANGE - 1} (see ${this.file})`,
        { interface: name, file: this.file },
      );
    }
    if (this.assigned.get(name) !== port) {
      this.assigned.set(name, port);
      await this.save();
    }
    return port;
  }

  private async load(): Promise<Map<string, number>> {
    await ensureSecureDirectory(this.dir, "state directory", 0o700);
    let text: string;
    try {
      const handle = await open(this.file, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
      try {
        const info = await handle.stat();
        if (!info.isFile() || info.size > MAX_FILE_BYTES)
          throw this.unreadable("is not a small regular file");
        text = await handle.readFile("utf8");
      } finally {
        await handle.close();
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return new Map();
      if (err instanceof RuntimeError) throw err;
      throw this.unreadable(`cannot be read (${(err as NodeJS.ErrnoException).code})`);
    }
    return parseAssignments(text, () => this.unreadable("is not valid"));
  }

  private async save(): Promise<void> {
    const body = `${JSON.stringify({ ports: Object.fromEntries([...this.assigned].sort()) }, null, 2)}\n`;
    const tmp = join(this.dir, `.${FILE_NAME}.${randomBytes(12).toString("hex")}.tmp`);
    try {
      await ensureSecureDirectory(this.dir, "state directory", 0o700);
      const flags = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
      const handle = await open(tmp, flags, 0o600);
      try {
        await handle.writeFile(body);
        await handle.sync();
      } finally {
        await handle.close();
      }
      await rename(tmp, this.file);
    } catch (err) {
      await unlink(tmp).catch(() => undefined);
      throw new RuntimeError(
        "state-unwritable",
        `cannot write ${this.file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
        { file: this.file },
        { cause: err },
      );
    }
  }

  private unreadable(problem: string): RuntimeError {
    return new RuntimeError(
      "state-unreadable",
      `${this.file} ${problem}: move it away, and interfaces get their catch-all ports anew`,
      { file: this.file },
    );
  }
}

/** {"ports": {"wg0": 51821}}: only valid names and ports are kept, and no port twice. */
export function parseAssignments(text: string, invalid: () => Error): Map<string, number> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw invalid(); // no cause: V8's message quotes the file
  }
  const ports = (parsed as { ports?: unknown } | null)?.ports;
  if (!ports || typeof ports !== "object") throw invalid();
  const assigned = new Map<string, number>();
  const used = new Set<number>();
  for (const [name, port] of Object.entries(ports)) {
    if (!INTERFACE_NAME.test(name) || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    if (used.has(port as number)) continue;
    used.add(port as number);
    assigned.set(name, port as number);
  }
  return assigned;
}
