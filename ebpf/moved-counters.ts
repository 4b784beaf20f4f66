// Which fast-path entries carried datagrams since the last look, found in one pass over each map: a
// hub's thousands of quiet entries (issue 16) were asked for key by key, every key crossing the
// privilege-separation channel both ways to learn that nothing moved.
import type { RawMap } from "bpf";
import type { BatchedMapReader } from "./batched-map-read.js";

/** An entry's packets, bytes and latest datagram's time (as the loader's EntryCounters). */
export interface MovedEntryCounters {
  packets: bigint;
  bytes: bigint;
  lastNs: bigint;
}

/** An entry whose packet count moved, named by its L(P) ("127.a.b.c:port", or "::1:port") and direction. */
export interface MovedCounter {
  loopback: string;
  direction: "outbound" | "inbound";
  counters: MovedEntryCounters;
}

/** An entry's L(P) as "address:port", from its key (at keyAt) or value (at valueAt). */
export type LoopbackReader = (keys: Buffer, keyAt: number, values: Buffer, valueAt: number) => string;

/** One of the program's maps, and where its entries hold L(P) and their counters. */
export interface CountedMap {
  map: RawMap;
  direction: "outbound" | "inbound";
  /** Names the entry's L(P): read only for the entries that moved. */
  loopback: LoopbackReader;
  /** Offset of the counters (packets, bytes, last ns: u64 each) in the value. */
  countersAt: number;
}

/**
 * Each map's packet counts at the last look, in the order the pass visited its entries. A pass over an
 * unchanged map visits the same keys in the same order (a hash map's buckets), so an entry is matched
 * to its baseline by position, comparing key bytes: no string and no lookup per entry (a key string
 * per entry per pass was most of a hub's idle look). Keys out of place are found by key.
 */
class Baseline {
  keys: Buffer = Buffer.alloc(0);
  packets = new Float64Array(0);
  count = 0;
  /** Built for a pass only when a key is out of place: packets by key. */
  private byKey: Map<string, number> | null = null;
  /** The pass under way, swapped with the baseline at its end (two buffers, kept). */
  private nextKeys: Buffer = Buffer.alloc(0);
  private nextPackets = new Float64Array(0);

  constructor(readonly keySize: number) {}

  /** The packets last seen for the key visited `index`-th, or 0 for a key not seen before. */
  packetsOf(index: number, keys: Buffer, keyAt: number): number {
    const size = this.keySize;
    if (index < this.count) {
      const at = index * size;
      let same = true;
      for (let i = 0; i < size; i++) {
        if (keys[keyAt + i] !== this.keys[at + i]) {
          same = false;
          break;
        }
      }
      if (same) return this.packets[index] ?? 0;
    }
    if (!this.byKey) {
      this.byKey = new Map();
      for (let i = 0; i < this.count; i++) {
        this.byKey.set(this.keys.toString("latin1", i * size, (i + 1) * size), this.packets[i] ?? 0);
      }
    }
    return this.byKey.get(keys.toString("latin1", keyAt, keyAt + size)) ?? 0;
  }

  /** The pass's entries, recorded as it visits them (`record`), then the baseline (`finish`). */
  record(index: number, keys: Buffer, keyAt: number, packets: number): void {
    const size = this.keySize;
    if ((index + 1) * size > this.nextKeys.length) {
      const grown = Buffer.alloc(Math.max(64 * size, 2 * (index + 1) * size));
      this.nextKeys.copy(grown);
      this.nextKeys = grown;
      const grownPackets = new Float64Array(grown.length / size);
      grownPackets.set(this.nextPackets);
      this.nextPackets = grownPackets;
    }
    keys.copy(this.nextKeys, index * size, keyAt, keyAt + size);
    this.nextPackets[index] = packets;
  }

  /** The pass visited `count` entries: they are the baseline now. */
  finish(count: number): void {
    [this.keys, this.nextKeys] = [this.nextKeys, this.keys];
    [this.packets, this.nextPackets] = [this.nextPackets, this.packets];
    this.count = count;
    this.byKey = null;
  }
}

export class MovedCounterTracker {
  private readonly baselines = new Map<RawMap, Baseline>();

  constructor(private readonly reader: BatchedMapReader) {}

  /**
   * The entries of `maps` whose packets differ from the last look (a new one: from 0), or every entry
   * when `full`. Entries gone since are forgotten.
   */
  moved(maps: CountedMap[], full: boolean): MovedCounter[] {
    const out: MovedCounter[] = [];
    for (const counted of maps) {
      const { keySize } = counted.map.ref;
      let baseline = this.baselines.get(counted.map);
      if (!baseline) {
        baseline = new Baseline(keySize);
        this.baselines.set(counted.map, baseline);
      }
      const known = baseline;
      let index = 0;
      this.reader.forEach(counted.map, (keys, keyAt, values, valueAt) => {
        const at = valueAt + counted.countersAt;
        // Packets as a double: exact up to 2^53, far beyond any entry's life.
        const packets = values.readUInt32LE(at) + values.readUInt32LE(at + 4) * 2 ** 32;
        // A new entry counts from 0 (so do its readers' copies): unused, it has not moved.
        const before = known.packetsOf(index, keys, keyAt);
        known.record(index++, keys, keyAt, packets);
        if (!full && before === packets) return;
        out.push({
          loopback: counted.loopback(keys, keyAt, values, valueAt),
          direction: counted.direction,
          counters: {
            packets: values.readBigUInt64LE(at),
            bytes: values.readBigUInt64LE(at + 8),
            lastNs: values.readBigUInt64LE(at + 16),
          },
        });
      });
      known.finish(index);
    }
    return out;
  }
}
