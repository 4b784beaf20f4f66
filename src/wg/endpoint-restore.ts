import type { Logger } from "../log.js";
import type { EndpointState } from "./endpoint-state.js";
import { readInterface, setPeerEndpoint } from "./wg-command.js";

/**
 * Gives WireGuard back the real endpoints Tunnelbore replaced (remembered in `state`), for the peers
 * whose endpoint still points at us (`pointsAtUs`); a peer WireGuard moved elsewhere meanwhile is left
 * alone. Each restored peer is forgotten in the state file. Returns how many were restored.
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
  let restored = 0;
  for (const [publicKey, original] of state.entries()) {
    if (!endpoints.has(publicKey) || !pointsAtUs(publicKey, endpoints.get(publicKey) ?? null)) continue;
    try {
      await setPeerEndpoint(interfaceName, publicKey, original);
      await state.delete(publicKey);
      restored++;
      log.info({ peer: publicKey, endpoint: original }, "restored WireGuard endpoint");
    } catch (err) {
      log.warn({ err, peer: publicKey }, "cannot restore endpoint");
    }
  }
  return restored;
}
