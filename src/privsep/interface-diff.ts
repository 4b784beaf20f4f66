/**
 * `wg show dump` as the worker reads it every 2 s, sent as what changed: at a hub's 10,000 peers the
 * whole dump as JSON over the IPC channel cost each side several % of a core while nothing changed
 * (issue 16). The parent answers the peers whose line differs from its previous answer and the keys
 * gone (`InterfaceDiffer`); the worker keeps the rest (`InterfaceMirror`; Tunnelbore sorts peers itself, so
 * their order is not kept). An answer names its generation; a worker that asks with another one than
 * the parent's last gets everything again.
 */
import type { DumpChanges } from "../wg/interface-reader.js";
import { samePeerLine } from "../wg/peer-changes.js";
import type { WireGuardInterfaceInfo, WireGuardPeerInfo } from "../wg/wg-command.js";

export interface InterfaceChanges {
  generation: number;
  /** Every peer is in `changed` (and the worker forgets what it had). */
  full: boolean;
  head: Omit<WireGuardInterfaceInfo, "peers">;
  changed: WireGuardPeerInfo[];
  removed: string[];
}

/** The parent's side: what it answered last, to answer only what changed. */
export class InterfaceDiffer {
  private generation = 0;
  /** The peers as last answered, by public key. */
  private last = new Map<string, WireGuardPeerInfo>();
  /** The read (InterfaceReader's number) the last answer came from; 0: none known. */
  private lastRead = 0;

  /**
   * What changed since the answer `since`. `read` is what the read changed against the one before
   * (InterfaceReader): when the last answer came from that very read, it is the answer, with no look at the
   * unchanged peers.
   */
  changes(info: WireGuardInterfaceInfo, since: number, read?: DumpChanges): InterfaceChanges {
    const full = since !== this.generation || this.generation === 0;
    let changed: WireGuardPeerInfo[] = [];
    let removed: string[] = [];
    const chained = read !== undefined && read.read === this.lastRead + 1;
    this.lastRead = read?.read ?? 0;
    if (full) {
      this.last = new Map(info.peers.map((peer) => [peer.publicKey, peer]));
      changed.push(...info.peers);
    } else if (chained) {
      changed = read.changed;
      removed = read.removed;
      for (const peer of changed) this.last.set(peer.publicKey, peer);
      for (const key of removed) this.last.delete(key);
    } else {
      // In place: a hub's idle read changes nothing, and a new map of every peer each 2 s was garbage.
      const before = this.last.size;
      let kept = 0;
      for (const peer of info.peers) {
        const last = this.last.get(peer.publicKey);
        if (last) kept++;
        if (last && samePeerLine(last, peer)) continue;
        changed.push(peer);
        this.last.set(peer.publicKey, peer);
      }
      // Every peer answered before was read again: none is gone (no look for removed keys).
      if (kept !== before) {
        const present = new Set(info.peers.map((peer) => peer.publicKey));
        removed = [...this.last.keys()].filter((key) => !present.has(key));
        for (const key of removed) this.last.delete(key);
      }
    }
    this.generation++;
    const { peers: _peers, delta: _delta, ...head } = info;
    return { generation: this.generation, full, head, changed, removed };
  }
}

/** The worker's side: the interface rebuilt from the answers. */
export class InterfaceMirror {
  private generation = 0;
  private peers = new Map<string, WireGuardPeerInfo>();
  /** The peers as last handed out: an answer that changed nothing hands out this very list. */
  private list: WireGuardPeerInfo[] | null = null;

  get since(): number {
    return this.generation;
  }

  apply(answer: InterfaceChanges): WireGuardInterfaceInfo {
    if (answer.full) this.peers = new Map();
    for (const key of answer.removed) this.peers.delete(key);
    for (const peer of answer.changed) this.peers.set(peer.publicKey, peer);
    this.generation = answer.generation;
    const from = this.list;
    if (!answer.full && from && answer.changed.length === 0 && answer.removed.length === 0)
      return { ...answer.head, peers: from };
    this.list = [...this.peers.values()];
    // Unchanged peers stay the very objects of the list before: their consumers need not look at them.
    if (answer.full || !from) return { ...answer.head, peers: this.list };
    return {
      ...answer.head,
      peers: this.list,
      delta: { from, changed: answer.changed, removed: answer.removed },
    };
  }

  /** Forget everything: the next answer is a full one. */
  reset(): void {
    this.generation = 0;
    this.peers.clear();
    this.list = null;
  }
}
