// The peers we declare to the introduction server. The server caps declarations per key
// (welcome.limits.maxDeclaredPeers, 1,024 by default): declaring more gets the connection closed
// (4009) on every reconnect, so no peer at all would be introduced. Instead we declare a fixed
// subset (the smallest keys: the same one on every reconnect, so presence does not flap) and say
// once which limit to raise.

/** What to send after a change: keys to add and to remove from what the server holds for us. */
export interface DeclarationChange {
  add: string[];
  remove: string[];
}

export class DeclaredPeers {
  private wanted = new Set<string>();
  private announced = new Set<string>();
  private limit: number;

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
