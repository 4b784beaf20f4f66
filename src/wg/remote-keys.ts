// Is any peer's path remote inside the prefixes a routing report names: asked at every report, before
// the loop check (which looks every remote up again). The remotes' address keys are kept between
// reports: parsing 10,000 "address:port" strings again took 25 ms a report, a Map lookup each does not.
import { addressKey, type RoutePrefix } from "./route-prefix.js";
import { remoteAddress } from "./tunnel-loop-check.js";

export class RemoteKeys {
  /** By remote ("address:port", "[address]:port"): its address key, null when it is not an address. */
  private readonly keys = new Map<string, string | null>();

  /** Whether one of `remotes` (undefined or null: none) is inside one of `prefixes`. */
  anyInside(remotes: Iterable<string | null | undefined>, prefixes: readonly RoutePrefix[]): boolean {
    let seen = 0;
    for (const remote of remotes) {
      if (!remote) continue;
      seen++;
      let key = this.keys.get(remote);
      if (key === undefined) {
        const address = remoteAddress(remote);
        key = address === null ? null : addressKey(address);
        this.keys.set(remote, key);
      }
      if (key === null) continue;
      for (const p of prefixes) {
        if (key.length === (p.family === 4 ? 8 : 32) && key >= p.first && key <= p.last) return true;
      }
    }
    // Remotes no peer has any more (paths moved) are dropped now and then, all at once.
    if (this.keys.size > 2 * seen + 1024) this.keys.clear();
    return false;
  }
}
