import { parseUapiHead, parseUapiPeer } from "./uapi-format.js";
import {
  parseDumpHead,
  parseDumpPeer,
  type WireGuardInterfaceInfo,
  type WireGuardPeerInfo,
} from "./wg-command.js";

const NEWLINE = 0x0a;
const TAB = 0x09;
const UAPI_PEER = Buffer.from("public_key=");
const UAPI_NEXT_PEER = Buffer.from("\npublic_key=");
const UAPI_END = Buffer.from("\nerrno=");
const HEX_KEY_LENGTH = 64;

/** How the interface was read: `wg show IF dump`, or a userspace WireGuard's UAPI socket. */
type Format = "dump" | "uapi";

interface KnownRecord {
  /** The record's bytes as last read (a copy: a view would keep that whole read alive). */
  bytes: Buffer;
  /** Where its key is in `bytes`. */
  keyOffset: number;
  keyLength: number;
  peer: WireGuardPeerInfo;
  /** The read that last saw it. */
  seen: number;
  /** The next record whose key has the same hash. */
  next: KnownRecord | null;
}

/** What a read changed against the read before it: peers new or changed (parsed anew), keys gone. */
export interface DumpChanges {
  /** The read's number (from 1): changes chain only from one read to the next. */
  read: number;
  changed: WireGuardPeerInfo[];
  removed: string[];
}

/**
 * The interface read over and over (every 2 s, from 10,000 peers at a hub: issue 16), as `wg show IF
 * dump` (a line per peer) or as a userspace WireGuard's answer on its UAPI socket (a block per peer).
 * A peer whose record has the same bytes as at the last read keeps the object parsed then: nothing is
 * decoded or allocated for it but its key, where parsing everything each time made megabytes of
 * garbage. An unchanged peer is the very same object, so later comparisons (InterfaceDiffer,
 * PeerChanges) are settled by identity, and each read tells what it changed (`changes`). wireguard-go
 * lists peers in a different order at every read, so records are found by key (as the record shows
 * it: base64 in a dump, hex on the socket).
 */
export class InterfaceReader {
  /**
   * The records by a hash of their key's bytes: finding an unchanged record costs no string (a key
   * decoded per peer per read was most of a hub's idle read).
   */
  private known = new Map<number, KnownRecord>();
  private size = 0;
  private format: Format = "dump";
  private reads = 0;
  private lastChanges: DumpChanges = { read: 0, changed: [], removed: [] };
  private changed: WireGuardPeerInfo[] = [];
  private lastPeers: WireGuardPeerInfo[] | null = null;
  /** The read `lastPeers` came from: a delta chains only from it to the next (same format). */
  private lastPeersRead = 0;
  /** The last head's text and what it parsed to (UAPI's public key is computed from the private key). */
  private head = { text: "", parsed: null as Omit<WireGuardInterfaceInfo, "peers"> | null };

  constructor(private readonly interfaceName: string) {}

  /** `wg show IF dump`'s output. */
  readDump(dump: Buffer): WireGuardInterfaceInfo {
    const read = this.begin("dump");
    const headEnd = lineEnd(dump, 0);
    const head = this.parseHead(dump.toString("utf8", 0, headEnd), parseDumpHead);
    const peers: WireGuardPeerInfo[] = [];
    for (let start = headEnd + 1; start < dump.length; ) {
      const same = this.unchanged(dump, start, dump.length, start, read, atDumpLineEnd);
      if (same) {
        peers.push(same.peer);
        start += same.bytes.length + 1;
        continue;
      }
      const end = lineEnd(dump, start);
      if (end > start) {
        const tab = dump.indexOf(TAB, start);
        const keyEnd = tab < 0 || tab > end ? end : tab;
        peers.push(this.record(dump, start, end, start, keyEnd, read, parseDumpPeer));
      }
      start = end + 1;
    }
    return this.end(read, head, peers);
  }

  /** A userspace WireGuard's answer to `get=1` (src/wg/uapi-socket.ts), errno line included. */
  readUapi(answer: Buffer): WireGuardInterfaceInfo {
    const read = this.begin("uapi");
    const errno = answer.indexOf(UAPI_END);
    const end = errno < 0 ? answer.length : errno + 1;
    let start = answer.subarray(0, UAPI_PEER.length).equals(UAPI_PEER) ? 0 : nextPeer(answer, 0, end);
    const head = this.parseHead(answer.toString("utf8", 0, start), parseUapiHead);
    const peers: WireGuardPeerInfo[] = [];
    while (start < end) {
      const same = this.unchanged(answer, start, end, start + UAPI_PEER.length, read, atUapiPeerEnd);
      if (same) {
        peers.push(same.peer);
        start += same.bytes.length;
        continue;
      }
      const next = nextPeer(answer, start + 1, end);
      const keyStart = start + UAPI_PEER.length;
      const keyEnd = Math.min(keyStart + HEX_KEY_LENGTH, next);
      peers.push(this.record(answer, start, next, keyStart, keyEnd, read, parseUapiPeer));
      start = next;
    }
    return this.end(read, head, peers);
  }

  /** What the last read changed against the one before it. */
  get changes(): DumpChanges {
    return this.lastChanges;
  }

  /** The peer with this (base64) key as the last read showed it. */
  peer(publicKey: string): WireGuardPeerInfo | undefined {
    const key = Buffer.from(
      this.format === "uapi" ? Buffer.from(publicKey, "base64").toString("hex") : publicKey,
      "latin1",
    );
    return this.find(key, 0, key.length)?.peer;
  }

  /** A new read's number. Read in another format than the last, every record is new (and changes do not chain). */
  private begin(format: Format): number {
    this.changed = [];
    if (format === this.format) return ++this.reads;
    this.format = format;
    this.known = new Map();
    this.size = 0;
    this.reads += 2;
    return this.reads;
  }

  private end(read: number, head: Omit<WireGuardInterfaceInfo, "peers">, peers: WireGuardPeerInfo[]) {
    const removed: string[] = [];
    if (this.size !== peers.length) {
      for (const [hash, first] of this.known) {
        let kept: KnownRecord | null = null;
        for (let record: KnownRecord | null = first; record; ) {
          const next: KnownRecord | null = record.next;
          if (record.seen === read) {
            record.next = kept;
            kept = record;
          } else {
            removed.push(record.peer.publicKey);
            this.size--;
          }
          record = next;
        }
        if (kept) this.known.set(hash, kept);
        else this.known.delete(hash);
      }
    }
    this.lastChanges = { read, changed: this.changed, removed };
    // Nothing changed: the list handed out last time, so that consumers can tell by identity (PeerChanges).
    const same = this.changed.length === 0 && removed.length === 0 && this.lastPeers?.length === peers.length;
    const from = this.lastPeers;
    const chained = from !== null && read === this.lastPeersRead + 1;
    this.lastPeersRead = read;
    if (same && from) return { ...head, peers: from };
    this.lastPeers = peers;
    return chained ? { ...head, peers, delta: { from, changed: this.changed, removed } } : { ...head, peers };
  }

  private parseHead(
    text: string,
    parse: (name: string, text: string) => Omit<WireGuardInterfaceInfo, "peers">,
  ): Omit<WireGuardInterfaceInfo, "peers"> {
    if (this.head.parsed !== null && text === this.head.text) return this.head.parsed;
    const parsed = parse(this.interfaceName, text);
    this.head = { text, parsed };
    return parsed;
  }

  /**
   * The known record at `start` when it is there unchanged, found without searching for the record's
   * end (it ends where the known one did, if the next record or the end follows): a hub's idle read
   * is one comparison per peer. Else null, for `record` to settle.
   */
  private unchanged(
    data: Buffer,
    start: number,
    limit: number,
    keyStart: number,
    read: number,
    endsAt: (data: Buffer, at: number, limit: number) => boolean,
  ): KnownRecord | null {
    const first = this.known.get(keyHash(data, keyStart, limit));
    if (!first || first.seen === read) return null;
    const end = start + first.bytes.length;
    if (end > limit || !endsAt(data, end, limit)) return null;
    if (data.compare(first.bytes, 0, first.bytes.length, start, end) !== 0) return null;
    first.seen = read;
    return first;
  }

  private record(
    data: Buffer,
    start: number,
    end: number,
    keyStart: number,
    keyEnd: number,
    read: number,
    parse: (name: string, text: string) => WireGuardPeerInfo,
  ): WireGuardPeerInfo {
    // `unchanged` already compared the bucket's first record: here a record further down its bucket,
    // or a changed one (parsed anew, in its place).
    const known = this.find(data, keyStart, keyEnd);
    if (known && known.seen !== read && data.compare(known.bytes, 0, known.bytes.length, start, end) === 0) {
      known.seen = read;
      return known.peer;
    }
    const peer = parse(this.interfaceName, data.toString("utf8", start, end));
    this.changed.push(peer);
    const record: KnownRecord = {
      bytes: Buffer.from(data.subarray(start, end)),
      keyOffset: keyStart - start,
      keyLength: keyEnd - keyStart,
      peer,
      seen: read,
      next: null,
    };
    // A key listed twice would be two peers; the last one wins, as in a map of the interface.
    if (known) {
      record.next = known.next;
      Object.assign(known, record);
    } else {
      const hash = keyHash(data, keyStart, keyEnd);
      record.next = this.known.get(hash) ?? null;
      this.known.set(hash, record);
      this.size++;
    }
    return peer;
  }

  /** The record with this key, if known. */
  private find(data: Buffer, keyStart: number, keyEnd: number): KnownRecord | undefined {
    for (let record = this.known.get(keyHash(data, keyStart, keyEnd)) ?? null; record; record = record.next) {
      if (keyOf(record).equals(data.subarray(keyStart, keyEnd))) return record;
    }
    return undefined;
  }
}

/** A hash of a key's first bytes (random in both formats), small enough to be a V8 small integer. */
function keyHash(data: Buffer, start: number, end: number): number {
  let hash = 0;
  for (let i = start; i < end && i < start + 8; i++) hash = (Math.imul(hash, 31) + (data[i] ?? 0)) | 0;
  return hash & 0x3fffffff;
}

function keyOf(record: KnownRecord): Buffer {
  return record.bytes.subarray(record.keyOffset, record.keyOffset + record.keyLength);
}

/** A dump's record (a line) can end at `at`. */
function atDumpLineEnd(data: Buffer, at: number, limit: number): boolean {
  return at === limit || data[at] === NEWLINE;
}

/** A UAPI record (a peer's block) can end at `at`: the next one's public_key line, or the errno line. */
function atUapiPeerEnd(data: Buffer, at: number, limit: number): boolean {
  if (at === limit) return true;
  if (at + UAPI_PEER.length > limit) return false;
  for (let i = 0; i < UAPI_PEER.length; i++) if (data[at + i] !== UAPI_PEER[i]) return false;
  return true;
}

function lineEnd(dump: Buffer, from: number): number {
  const end = dump.indexOf(NEWLINE, from);
  return end < 0 ? dump.length : end;
}

/** Where the next peer's block starts (its public_key line), or `end`. */
function nextPeer(answer: Buffer, from: number, end: number): number {
  const at = answer.indexOf(UAPI_NEXT_PEER, from);
  return at < 0 || at >= end ? end : at + 1;
}
