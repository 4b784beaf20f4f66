// The catch-all port of each interface when `run` serves them all: WireGuard configurations may name it
// (an Endpoint of 127.0.0.1:PORT), so an interface keeps its port across restarts. The first time an
// interface is seen it gets the lowest port from --listen's upward that no other interface has and no
// socket holds; the assignment is kept in the state directory (catch-all-ports.json) from then on.
import { join } from "node:path";
import { RuntimeError } from "../errors.js";
import { readStateFile, replaceStateFile, type StateFile, unreadable } from "../files/state-file.js";
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
  private loaded = false;
  /** Assignments happen one at a time, so two new interfaces never get the same port. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    dir: string,
    private readonly base: number,
    private readonly busy: (port: number) => Promise<boolean>,
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
        `no free catch-all port for interface ${name} in ${this.base}..${this.base + CATCH_ALL_PORT_RANGE - 1} (see ${this.state.file})`,
        { interface: name, file: this.state.file },
      );
    }
    if (this.assigned.get(name) !== port) {
      this.assigned.set(name, port);
      await this.save();
    }
    return port;
  }

  private async load(): Promise<Map<string, number>> {
    const text = await readStateFile(this.state);
    if (text === null) return new Map();
    return parseAssignments(text, () => unreadable(this.state, "is not valid"));
  }

  private save(): Promise<void> {
    const body = `${JSON.stringify({ ports: Object.fromEntries([...this.assigned].sort()) }, null, 2)}\n`;
    return replaceStateFile(this.state, body);
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
