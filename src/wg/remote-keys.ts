// Which peers' path remotes are inside the prefixes a routing report names: asked at every report, so
// that the loop check looks only those up again (every remote took 340 ms of CPU at 10,000). The
// remotes' address keys are kept between reports: parsing 10,000 "address:port" strings again took
// 25 ms a report, a Map lookup each does not.
import { addressKey, type RoutePrefix } from "./route-prefix.js";
import { remoteAddress } from "./tunnel-loop-check.js";

export class RemoteKeys {
  /** By remote ("address:port", "[address]:port"): its address key, null when it is not an address. */
  private readonly keys = new Map<string, string | null>();

  /** The peers (by key) whose remote (undefined or null: none) is inside one of `prefixes`. */
  peersInside(
    remotes: Iterable<[peer: string, remote: string | null | undefined]>,
    prefixes: readonly RoutePrefix[],
  ): string[] {
    const peers: string[] = [];
    let seen = 0;
    for (const [peer, remote] of remotes) {
      if (!remote) continue;
      seen++;
      if (this.inside(remote, prefixes)) peers.push(peer);
    }
    this.prune(seen);
    return peers;
  }

  private inside(remote: string, prefixes: readonly RoutePrefix[]): boolean {
    let key = this.keys.get(remote);
    if (key === undefined) {
      const address = remoteAddress(remote);
      key = address === null ? null : addressKey(address);
      this.keys.set(remote, key);
    }
    if (key === null) return false;
    for (const p of prefixes) {
      if (key.length === (p.family === 4 ? 8 : 32) && key >= p.first && key <= p.last) return true;
    }
    return false;
  }

  /** Remotes no peer has any more (paths moved) are dropped now and then, all at once. */
  private prune(seen: number): void {
    if (this.keys.size > 2 * seen + 1024) this.keys.clear();
  }
}
