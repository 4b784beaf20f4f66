// The catch-all port of each interface when `run` serves them all: WireGuard configurations may name it
// (an Endpoint of 127.0.0.1:PORT), so an interface keeps its port across restarts. The first time an
// interface is seen it gets the lowest port from --listen's upward that no other interface has and no
// socket holds; the assignment is kept in the state directory (catch-all-ports.json) from then on.
// A host whose interfaces come and go (containers, one interface each) would use up the range: once
// it is, a new interface takes the port of the interface gone longest (not served by this process,
// least recently seen), and the log says so.
import { join } from "node:path";
import { RuntimeError } from "../errors.js";
import { readStateFile, replaceStateFile, type StateFile, unreadable } from "../files/state-file.js";
import type { Logger } from "../log.js";
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
  private readonly state: StateFile;
  private assigned = new Map<string, number>();
  /** When each interface was last served (ms since the epoch): the longest gone gives its port up first. */
  private seen = new Map<string, number>();
  /** Interfaces this process serves now: their ports are never given to another. */
  private readonly serving = new Set<string>();
  private loaded = false;
  /** Assignments happen one at a time, so two new interfaces never get the same port. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    dir: string,
    private readonly base: number,
    private readonly busy: (port: number) => Promise<boolean>,
    private readonly log?: Logger,
    private readonly now: () => number = Date.now,
  ) {
    this.state = {
      dir,
      file: join(dir, FILE_NAME),
      maxBytes: MAX_FILE_BYTES,
      remedy: "move it away, and interfaces get their catch-all ports anew",
    };
  }

  /** The interface's port, assigned (and saved) the first time; throws when none is left. */
  portFor(name: string): Promise<number> {
    return this.serially(() => this.assign(name));
  }

  /** The interface is not served any more (gone): its port is kept for it, but may be reclaimed. */
  released(name: string): Promise<void> {
    return this.serially(async () => {
      if (!this.serving.delete(name) || !this.assigned.has(name)) return;
      this.seen.set(name, this.now());
      await this.save();
    });
  }

  private serially<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async assign(name: string): Promise<number> {
    if (!this.loaded) {
      ({ ports: this.assigned, seen: this.seen } = await this.load());
      this.loaded = true;
    }
    const port =
      (await assignCatchAllPort(name, this.assigned, this.base, this.busy)) ?? (await this.reclaimFor(name));
    if (port === null) {
      throw new RuntimeError(
        "catch-all-exhausted",
        `no free catch-all port for interface ${name} in ${this.base}..${this.base + CATCH_ALL_PORT_RANGE - 1}: every one is held by an interface being served or by another socket (see ${this.state.file})`,
        { interface: name, file: this.state.file },
      );
    }
    const unchanged = this.serving.has(name) && this.assigned.get(name) === port;
    this.assigned.set(name, port);
    this.serving.add(name);
    this.seen.set(name, this.now());
    // An instance retried (every 1-60 s while it fails) asks again: the file already says all of it.
    if (!unchanged) await this.save();
    return port;
  }

  /**
   * The port of the interface gone longest (not being served, its port held by no socket), taken from
   * it; null when there is none.
   */
  private async reclaimFor(name: string): Promise<number | null> {
    const absent = [...this.assigned.keys()].filter((other) => !this.serving.has(other));
    absent.sort((a, b) => (this.seen.get(a) ?? 0) - (this.seen.get(b) ?? 0));
    let oldest: string | null = null;
    for (const other of absent) {
      if (await this.busy(this.assigned.get(other) ?? 0)) continue;
      oldest = other;
      break;
    }
    if (oldest === null) return null;
    const port = this.assigned.get(oldest) ?? null;
    const lastSeen = this.seen.get(oldest);
    this.assigned.delete(oldest);
    this.seen.delete(oldest);
    this.log?.warn(
      {
        interface: name,
        catchAllPort: port,
        from: oldest,
        lastSeen: lastSeen === undefined ? null : new Date(lastSeen).toISOString(),
      },
      `every catch-all port is assigned: interface ${name} takes ${oldest}'s, the interface gone longest`,
    );
    return port;
  }

  private async load(): Promise<{ ports: Map<string, number>; seen: Map<string, number> }> {
    const text = await readStateFile(this.state);
    if (text === null) return { ports: new Map(), seen: new Map() };
    const invalid = () => unreadable(this.state, "is not valid");
    return { ports: parseAssignments(text, invalid), seen: parseSeen(text) };
  }

  private save(): Promise<void> {
    const known = (entries: Iterable<[string, number]>) =>
      Object.fromEntries([...entries].filter(([name]) => this.assigned.has(name)).sort());
    const body = `${JSON.stringify({ ports: known(this.assigned), seen: known(this.seen) }, null, 2)}\n`;
    return replaceStateFile(this.state, body);
  }
}

/** {"seen": {"wg0": 1764...}}: when each interface was last served; what is not valid is left out. */
export function parseSeen(text: string): Map<string, number> {
  const seen = new Map<string, number>();
  try {
    const entries = (JSON.parse(text) as { seen?: unknown } | null)?.seen;
    if (!entries || typeof entries !== "object") return seen;
    for (const [name, at] of Object.entries(entries)) {
      if (INTERFACE_NAME.test(name) && Number.isSafeInteger(at) && (at as number) >= 0)
        seen.set(name, at as number);
    }
  } catch {
    // parseAssignments says the file is not valid
  }
  return seen;
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
