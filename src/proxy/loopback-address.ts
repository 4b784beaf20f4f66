import { createHash } from "node:crypto";

/** Where a peer's loopback socket L(P) lives. */
export interface LoopbackAddress {
  readonly address: string;
  readonly port: number;
}

export const DEFAULT_LOOPBACK_PORT_BASE = 51822;
/** How many ports above the base a collision may take before we give up (collisions are ~1 in 16M). */
const MAX_PORT_OFFSET = 64;

/**
 * The 127.x.y.z address of a peer: a hash of its public key into 127.0.0.0/8, skipping 127.0.0.0/24
 * (where 127.0.0.1 and the catch-all live) and the .0/.255 host octets. Stable across restarts, so
 * WireGuard's learned endpoint stays valid when Tunnelbore comes back.
 */
export function loopbackAddressOf(publicKey: Uint8Array): string {
  for (let counter = 0; ; counter++) {
    const digest = createHash("sha256")
      .update("tunnelbore loopback v1")
      .update(publicKey)
      .update(Uint8Array.of(counter))
      .digest();
    const [a = 0, b = 0, c = 0] = digest;
    if ((a === 0 && b === 0) || c === 0 || c === 255) continue;
    return `127.${a}.${b}.${c}`;
  }
}

/**
 * Assigns L(P) to peers deterministically: the address comes from the key; the port is the base,
 * or the next port above it when another peer (or a busy socket) already holds that address:port.
 */
export class LoopbackAllocator {
  private readonly taken = new Set<string>();

  constructor(readonly portBase = DEFAULT_LOOPBACK_PORT_BASE) {}

  /** Candidates in the order they should be tried; the caller binds and `claim`s the first that works. */
  *candidates(publicKey: Uint8Array): Generator<LoopbackAddress> {
    const address = loopbackAddressOf(publicKey);
    for (let offset = 0; offset < MAX_PORT_OFFSET; offset++) {
      const port = this.portBase + offset;
      if (port > 65535) return;
      if (!this.taken.has(`${address}:${port}`)) yield { address, port };
    }
  }

  claim(where: LoopbackAddress): void {
    this.taken.add(`${where.address}:${where.port}`);
  }

  release(where: LoopbackAddress): void {
    this.taken.delete(`${where.address}:${where.port}`);
  }
}
