import type { Logger } from "../log.js";
import type { EndpointState } from "./endpoint-state.js";
import { type EndpointChange, readInterface, setPeerEndpoints } from "./wg-command.js";

/**
 * Gives WireGuard back the real endpoints Tunnelbore replaced (remembered in `state`), for the peers
 * whose endpoint still points at us (`pointsAtUs`); a peer WireGuard moved elsewhere meanwhile is left
 * alone. All of them in batches of one `wg set` (setPeerEndpoints); the restored peers are forgotten in
 * the state file with one write. Returns how many were restored.
 */
export async function restoreEndpoints(
  interfaceName: string,
  state: EndpointState,
  pointsAtUs: (publicKey: string, endpoint: string | null) => boolean,
  log: Logger,
): Promise<number> {
  let endpoints: Map<string, string | null>;
  try {
    const info = await readInterface(interfaceName);
    endpoints = new Map(info.peers.map((p) => [p.publicKey, p.endpoint]));
  } catch (err) {
    log.warn({ err }, "cannot read the interface to restore endpoints");
    return 0;
  }
  const changes: EndpointChange[] = [];
  for (const [publicKey, original] of state.entries()) {
    if (!endpoints.has(publicKey) || !pointsAtUs(publicKey, endpoints.get(publicKey) ?? null)) continue;
    changes.push({ publicKey, endpoint: original });
  }
  if (changes.length === 0) return 0;
  let failed: Set<string>;
  try {
    const failures = await setPeerEndpoints(interfaceName, changes);
    for (const { publicKey, error } of failures)
      log.warn({ err: error, peer: publicKey }, "cannot restore endpoint");
    failed = new Set(failures.map((f) => f.publicKey));
  } catch (err) {
    log.warn({ err, peers: changes.length }, "cannot restore endpoints");
    return 0;
  }
  const restored = changes.filter((c) => !failed.has(c.publicKey));
  for (const { publicKey, endpoint } of restored)
    log.debug({ peer: publicKey, endpoint }, "restored WireGuard endpoint");
  log.info({ restored: restored.length }, "restored WireGuard endpoints");
  try {
    await state.deleteMany(restored.map((c) => c.publicKey));
  } catch (err) {
    // WireGuard has them back: a stale entry only means a later restore finds nothing to do.
    log.warn({ err }, "cannot forget the restored endpoints in the state file");
  }
  return restored.length;
}
