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

/** An entry whose packet count moved, named by its L(P) ("127.a.b.c:port") and direction. */
export interface MovedCounter {
  loopback: string;
  direction: "outbound" | "inbound";
  counters: MovedEntryCounters;
}

/** One of the program's maps, and where its entries hold L(P) and their counters. */
export interface CountedMap {
  map: RawMap;
  direction: "outbound" | "inbound";
  /** L(P): 4 address bytes and a big-endian port, in the key (outbound) or the value (inbound). */
  loopbackIn: "key" | "value";
  loopbackAt: number;
  /** Offset of the counters (packets, bytes, last ns: u64 each) in the value. */
  countersAt: number;
}

export class MovedCounterTracker {
  /** Each map's packet count per entry at the last look, by the key's bytes. */
  private readonly baselines = new Map<RawMap, Map<string, number>>();

  constructor(private readonly reader: BatchedMapReader) {}

  /**
   * The entries of `maps` whose packets differ from the last look (a new one: from 0), or every entry
   * when `full`. Entries gone since are forgotten.
   */
  moved(maps: CountedMap[], full: boolean): MovedCounter[] {
    const out: MovedCounter[] = [];
    for (const counted of maps) {
      let baseline = this.baselines.get(counted.map);
      if (!baseline) {
        baseline = new Map();
        this.baselines.set(counted.map, baseline);
      }
      const { keySize } = counted.map.ref;
      let visited = 0;
      this.reader.forEach(counted.map, (keys, keyAt, values, valueAt) => {
        const key = keys.toString("latin1", keyAt, keyAt + keySize);
        visited++;
        const at = valueAt + counted.countersAt;
        // Packets as a double: exact up to 2^53, far beyond any entry's life.
        const packets = values.readUInt32LE(at) + values.readUInt32LE(at + 4) * 2 ** 32;
        // A new entry counts from 0 (so do its readers' copies): unused, it has not moved.
        if (!full && (baseline.get(key) ?? 0) === packets) {
          if (packets === 0) baseline.set(key, 0);
          return;
        }
        baseline.set(key, packets);
        const lp = counted.loopbackIn === "key" ? keyAt + counted.loopbackAt : valueAt + counted.loopbackAt;
        const from = counted.loopbackIn === "key" ? keys : values;
        out.push({
          loopback: `${from[lp]}.${from[lp + 1]}.${from[lp + 2]}.${from[lp + 3]}:${from.readUInt16BE(lp + 4)}`,
          direction: counted.direction,
          counters: {
            packets: values.readBigUInt64LE(at),
            bytes: values.readBigUInt64LE(at + 8),
            lastNs: values.readBigUInt64LE(at + 16),
          },
        });
      });
      // More remembered than there are: some entries are gone (a second pass, only then, names them).
      if (baseline.size > visited) {
        const present = new Set<string>();
        this.reader.forEach(counted.map, (keys, keyAt) =>
          present.add(keys.toString("latin1", keyAt, keyAt + keySize)),
        );
        for (const key of baseline.keys()) if (!present.has(key)) baseline.delete(key);
      }
    }
    return out;
  }
}
