// The peers we declare to the introduction server. The server caps declarations per key
// (welcome.limits.maxDeclaredPeers, 1,024 by default): declaring more gets the connection closed
// (4009) on every reconnect, so no peer at all would be introduced. Instead we declare a fixed
// subset (the smallest keys: the same one on every reconnect, so presence does not flap) and say
// once which limit to raise.

import { type ClientMessage, MAX_PEERS_PER_MESSAGE } from "../signalling/protocol.js";

/** What to send after a change: keys to add and to remove from what the server holds for us. */
export interface DeclarationChange {
  add: string[];
  remove: string[];
}

export class DeclaredPeers {
  private wanted = new Set<string>();
  private announced = new Set<string>();
  private limit: number;
  /** The (wanted, cap) pair last warned about, so a cap is reported once, not on every reconnect. */
  private capWarned = "";

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Keys we want introduced, whether or not the server's cap let us declare them. */
  has(key: string): boolean {
    return this.wanted.has(key);
  }

  get size(): number {
    return this.wanted.size;
  }

  keys(): IterableIterator<string> {
    return this.wanted.values();
  }

  /** Wanted keys the server's cap left out. */
  get left(): number {
    return this.wanted.size - this.announced.size;
  }

  get maxDeclared(): number {
    return this.limit;
  }

  /** What to log (once per wanted/cap pair) when the cap leaves peers out; null when nothing new. */
  capWarning(): { fields: Record<string, number>; message: string } | null {
    const seen = `${this.wanted.size}/${this.limit}`;
    if (this.left === 0 || seen === this.capWarned) return null;
    this.capWarned = seen;
    return {
      fields: { peers: this.wanted.size, maxDeclaredPeers: this.limit, left: this.left },
      message:
        "the introduction server lets one key declare fewer peers than we have: the peers with the largest keys are not introduced (raise --max-peers-per-key on the server)",
    };
  }

  /** The wanted set changed: what to tell the server (while connected). */
  setWanted(keys: Set<string>): DeclarationChange {
    this.wanted = keys;
    return this.reannounce();
  }

  /** A new connection: the server holds nothing; everything we announce is to be declared anew. */
  connected(limit: number): string[] {
    this.limit = limit;
    this.announced = new Set();
    return this.reannounce().add;
  }

  private reannounce(): DeclarationChange {
    const next = new Set(
      this.wanted.size <= this.limit ? this.wanted : [...this.wanted].sort().slice(0, this.limit),
    );
    const add = [...next].filter((key) => !this.announced.has(key));
    const remove = [...this.announced].filter((key) => !next.has(key));
    this.announced = next;
    return { add, remove };
  }
}

/**
 * Whether two lists hold the same keys in the same order: a hub's interface is read every 2 s and its
 * 10,000 keys given again whenever any peer's counters moved, in the same order (a map's); the same
 * list must cost next to nothing (issue 15). Another order is merely the long way.
 */
export function sameKeys(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The `peers` frames for a declaration change, at most MAX_PEERS_PER_MESSAGE keys each. */
export function declarationFrames(op: "replace" | "add" | "remove", keys: string[]): string[] {
  const frame = (frameOp: typeof op, peers: string[]) =>
    JSON.stringify({ type: "peers", op: frameOp, peers } satisfies ClientMessage);
  // An empty replace still goes out: it clears what the server holds.
  if (op === "replace" && keys.length === 0) return [frame(op, [])];
  const frames: string[] = [];
  for (let i = 0; i < keys.length; i += MAX_PEERS_PER_MESSAGE) {
    frames.push(frame(i === 0 ? op : "add", keys.slice(i, i + MAX_PEERS_PER_MESSAGE)));
  }
  return frames;
}
