import {
  parseDumpHead,
  parseDumpPeer,
  type WireGuardInterfaceInfo,
  type WireGuardPeerInfo,
} from "./wg-command.js";

const NEWLINE = 0x0a;
const TAB = 0x09;

interface KnownLine {
  /** The line's bytes as last read (a copy: a view would keep that whole dump alive). */
  bytes: Buffer;
  peer: WireGuardPeerInfo;
  /** The read that last saw it. */
  seen: number;
}

/** What a read changed against the read before it: peers new or changed (parsed anew), keys gone. */
export interface DumpChanges {
  /** The read's number (from 1): changes chain only from one read to the next. */
  read: number;
  changed: WireGuardPeerInfo[];
  removed: string[];
}

/**
 * `wg show IF dump`, read over and over (every 2 s, from 10,000 peers at a hub: issue 16). A peer
 * whose line has the same bytes as at the last read keeps the object parsed then: nothing is decoded or
 * allocated for it but its key, where parsing the whole dump each time made megabytes of garbage. An
 * unchanged peer is the very same object, so later comparisons (InterfaceDiffer, PeerChanges) are
 * settled by identity, and each read tells what it changed (`changes`). wireguard-go lists peers in a
 * different order at every read, so lines are found by key.
 */
export class DumpReader {
  private readonly known = new Map<string, KnownLine>();
  private reads = 0;
  private lastChanges: DumpChanges = { read: 0, changed: [], removed: [] };
  private changed: WireGuardPeerInfo[] = [];

  constructor(private readonly interfaceName: string) {}

  read(dump: Buffer): WireGuardInterfaceInfo {
    const name = this.interfaceName;
    const read = ++this.reads;
    const headEnd = lineEnd(dump, 0);
    const head = parseDumpHead(name, dump.toString("utf8", 0, headEnd));
    const peers: WireGuardPeerInfo[] = [];
    this.changed = [];
    for (let start = headEnd + 1; start < dump.length; ) {
      const end = lineEnd(dump, start);
      if (end > start) peers.push(this.peerLine(dump, start, end, read));
      start = end + 1;
    }
    const removed: string[] = [];
    if (this.known.size !== peers.length) {
      for (const [key, line] of this.known) {
        if (line.seen === read) continue;
        this.known.delete(key);
        removed.push(key);
      }
    }
    this.lastChanges = { read, changed: this.changed, removed };
    return { ...head, peers };
  }

  /** What the last read changed against the one before it. */
  get changes(): DumpChanges {
    return this.lastChanges;
  }

  /** The peer with this key as the last read showed it. */
  peer(publicKey: string): WireGuardPeerInfo | undefined {
    return this.known.get(publicKey)?.peer;
  }

  private peerLine(dump: Buffer, start: number, end: number, read: number): WireGuardPeerInfo {
    const tab = dump.indexOf(TAB, start);
    const key = dump.toString("latin1", start, tab < 0 || tab > end ? end : tab);
    const known = this.known.get(key);
    if (known && known.seen !== read && dump.compare(known.bytes, 0, known.bytes.length, start, end) === 0) {
      known.seen = read;
      return known.peer;
    }
    const peer = parseDumpPeer(this.interfaceName, dump.toString("utf8", start, end));
    this.changed.push(peer);
    // A key listed twice would be two peers; the last one wins, as in a map of the interface.
    this.known.set(key, { bytes: Buffer.from(dump.subarray(start, end)), peer, seen: read });
    return peer;
  }
}

function lineEnd(dump: Buffer, from: number): number {
  const end = dump.indexOf(NEWLINE, from);
  return end < 0 ? dump.length : end;
}
