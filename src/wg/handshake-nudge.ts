// WireGuard tried to reach a peer before Tunnelbore pointed its endpoint at L(P): its initiation went
// to the old endpoint and was lost, and it sends the next one only 5 s after that one (REKEY_TIMEOUT;
// wireguard-go and the kernel send at most one initiation per peer per 5 s, whatever asks for it,
// keepalives and `wg set` included). Only a peer that WireGuard creates anew starts with none sent:
// so the peer is removed and added again, with every setting it had, in one `wg set`, and its
// persistent keepalive turned on meanwhile makes it initiate at once. The peer never completed a
// handshake, so no session is lost; the packets WireGuard staged for it are (the application's next
// one gets through within a round trip of the path coming up, instead of after up to 5 s).
// See docs/decisions.md, "Cold start: the nudge and its signal".
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { Logger } from "../log.js";
import type { WireGuardPeerInfo } from "./wg-command.js";

const execFileAsync = promisify(execFile);

/** The keepalive turned on for a moment (any value: turning it on sends one at once). */
const NUDGE_KEEPALIVE_S = 25;

/**
 * WireGuard has traffic (or keepalives) waiting for the peer and is between its attempts: it sent to
 * the peer (`wg show`'s transfer counts its initiations) and never completed a handshake. Read before
 * Tunnelbore points the endpoint at L(P). Blind to a peer that had no endpoint at all: wireguard-go
 * then queues the packets and counts nothing per peer (the kernel module drops them and does not try).
 */
export function trafficWaiting(peer: Pick<WireGuardPeerInfo, "latestHandshake" | "txBytes">): boolean {
  return peer.latestHandshake === 0 && peer.txBytes > 0;
}

/**
 * If WireGuard has traffic waiting for `peer` (as read before its endpoint was taken over), makes it
 * initiate a handshake to `endpoint` now. Never throws: a failure only means WireGuard's own retry.
 */
export async function nudgeIfTrafficWaiting(
  interfaceName: string,
  peer: WireGuardPeerInfo,
  endpoint: string,
  log: Logger,
): Promise<void> {
  if (!trafficWaiting(peer)) return;
  try {
    await recreatePeer(interfaceName, peer, endpoint);
    log.info({ peer: peer.publicKey }, "WireGuard had traffic waiting for the peer: handshake started now");
  } catch (err) {
    log.warn({ err, peer: peer.publicKey }, "cannot start WireGuard's handshake; it retries by itself");
  }
}

/** Removes the peer and adds it again with its settings, `endpoint`, and a keepalive sent at once. */
async function recreatePeer(interfaceName: string, peer: WireGuardPeerInfo, endpoint: string): Promise<void> {
  const key = peer.publicKey;
  const keepalive = peer.persistentKeepalive || NUDGE_KEEPALIVE_S;
  const args = ["set", interfaceName, "peer", key, "remove", "peer", key, "endpoint", endpoint];
  args.push("persistent-keepalive", String(keepalive));
  if (peer.allowedIps.length > 0) args.push("allowed-ips", peer.allowedIps.join(","));
  const psk = await presharedKey(interfaceName, key);
  // `wg` reads a preshared key only from a file: a private directory, removed at once.
  const dir = psk ? await mkdtemp(join(tmpdir(), "tunnelbore-psk-")) : null;
  try {
    if (dir) {
      const file = join(dir, "psk");
      await writeFile(file, `${psk}\n`, { mode: 0o600 });
      args.push("preshared-key", file);
    }
    await execFileAsync("wg", args);
  } finally {
    if (dir) await rm(dir, { recursive: true, force: true });
  }
  if (peer.persistentKeepalive === 0) {
    await execFileAsync("wg", ["set", interfaceName, "peer", key, "persistent-keepalive", "off"]);
  }
}

/** The peer's preshared key, or null (`wg show IF preshared-keys`; never kept beyond this use). */
async function presharedKey(interfaceName: string, publicKey: string): Promise<string | null> {
  const { stdout } = await execFileAsync("wg", ["show", interfaceName, "preshared-keys"]);
  for (const line of stdout.split("\n")) {
    const [key, psk] = line.split("\t");
    if (key === publicKey) return psk && psk !== "(none)" ? psk.trim() : null;
  }
  return null;
}
