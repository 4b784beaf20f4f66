import type { PeerDelta, WireGuardPeerInfo } from "./wg-command.js";

/**
 * Which peers of a `wg show dump` changed since Tunnelbore last applied them: the interface is read
 * every 2 s, and a hub's thousands of idle peers show the same line every time (issue 16). A peer is
 * applied again when any field of its line differs, and every peer when `context` (what else applying
 * depends on: released, recreated, a reload) differs. Compares the fields in place: nothing is
 * allocated for an unchanged peer.
 */
export class PeerChanges {
  private readonly applied = new Map<string, WireGuardPeerInfo>();
  private context = "";
  /**
   * A list of peers every one of which is applied as listed: a read that hands out this very list
   * again (nothing changed, src/wg/interface-reader.ts, InterfaceMirror) needs no look at its peers.
   */
  private settled: WireGuardPeerInfo[] | null = null;

  /** The peers whose line differs from the one last applied (all of them when `context` changed). */
  changed(peers: WireGuardPeerInfo[], context: string): WireGuardPeerInfo[] {
    if (context !== this.context) {
      this.applied.clear();
      this.settled = null;
      this.context = context;
    }
    if (peers === this.settled) return [];
    return peers.filter((peer) => !this.isApplied(peer));
  }

  /**
   * `delta` starts from the list last settled, with `context` unchanged: then only its changed peers can
   * need applying (`changedOf`), and the new list is settled when they are (`settleDelta`). Asked before
   * anything is forgotten for the read.
   */
  continues(delta: PeerDelta | undefined, context: string): delta is PeerDelta {
    return delta !== undefined && context === this.context && delta.from === this.settled;
  }

  /** The delta's peers whose line differs from the one last applied (the rest are settled as listed). */
  changedOf(delta: PeerDelta): WireGuardPeerInfo[] {
    return delta.changed.filter((peer) => !this.isApplied(peer));
  }

  /** `peers`, read as `delta` from the list settled before, were applied: settled when the delta's peers are. */
  settleDelta(peers: WireGuardPeerInfo[], delta: PeerDelta): void {
    this.settled = delta.changed.every((peer) => this.isApplied(peer)) ? peers : null;
  }

  private isApplied(peer: WireGuardPeerInfo): boolean {
    const applied = this.applied.get(peer.publicKey);
    return applied !== undefined && samePeerLine(applied, peer);
  }

  /** The peer's line as last applied (none: never, or not since a context change). */
  appliedLine(publicKey: string): WireGuardPeerInfo | undefined {
    return this.applied.get(publicKey);
  }

  /** The peer as read is fully applied: the same line next time needs nothing. */
  markApplied(peer: WireGuardPeerInfo): void {
    this.applied.set(peer.publicKey, peer);
  }

  forget(publicKey: string): void {
    this.applied.delete(publicKey);
    this.settled = null;
  }

  /** `peers` were applied: settled when each one is applied as listed (else looked at again next time). */
  settle(peers: WireGuardPeerInfo[] | null): void {
    this.settled = peers?.every((peer) => this.isApplied(peer)) ? peers : null;
  }

  /** `peers` is the list last settled, and nothing made it stale since. */
  isSettled(peers: WireGuardPeerInfo[]): boolean {
    return peers === this.settled;
  }
}

/** Every field of two `wg show dump` lines of a peer alike. */
export function samePeerLine(a: WireGuardPeerInfo, b: WireGuardPeerInfo): boolean {
  // InterfaceReader and InterfaceMirror hand out the same object for a line that did not change.
  if (a === b) return true;
  if (
    a.endpoint !== b.endpoint ||
    a.latestHandshake !== b.latestHandshake ||
    a.rxBytes !== b.rxBytes ||
    a.txBytes !== b.txBytes ||
    a.persistentKeepalive !== b.persistentKeepalive
  )
    return false;
  return sameAllowedIps(a, b);
}

/** The same allowed IPs, in the same order. */
export function sameAllowedIps(a: WireGuardPeerInfo, b: WireGuardPeerInfo): boolean {
  if (a.allowedIps.length !== b.allowedIps.length) return false;
  for (let i = 0; i < a.allowedIps.length; i++) if (a.allowedIps[i] !== b.allowedIps[i]) return false;
  return true;
}
