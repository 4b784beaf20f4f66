// Which fast-path entries moved since the last look (issue 16), against a map of the test's own: a
// pass visits its entries in the map's order, which changes only when entries come and go.
import type { RawMap } from "bpf";
import { describe, expect, it } from "vitest";
import type { BatchedMapReader } from "../../ebpf/batched-map-read.js";
import { type CountedMap, MovedCounterTracker } from "../../ebpf/moved-counters.js";

const KEY_SIZE = 6;
const VALUE_SIZE = 24;

/** An outbound-like map: the key is L(P) (4 address bytes, a big-endian port); the value its counters. */
class FakeMap {
  entries: { key: Buffer; packets: number }[] = [];
  readonly raw = { ref: { keySize: KEY_SIZE, valueSize: VALUE_SIZE } } as unknown as RawMap;

  add(last: number, packets = 0): void {
    const key = Buffer.from([127, 1, 0, last, 0xca, 0x6e]);
    this.entries.push({ key, packets });
  }

  set(last: number, packets: number): void {
    const entry = this.entries.find((e) => e.key[3] === last);
    if (entry) entry.packets = packets;
  }
}

/** Visits the entries as a batched pass does: keys and values side by side in shared buffers. */
function readerOf(maps: Map<RawMap, FakeMap>): BatchedMapReader {
  return {
    forEach(map: RawMap, visit: (keys: Buffer, keyAt: number, values: Buffer, valueAt: number) => void) {
      const fake = maps.get(map) as FakeMap;
      const keys = Buffer.alloc(fake.entries.length * KEY_SIZE);
      const values = Buffer.alloc(fake.entries.length * VALUE_SIZE);
      fake.entries.forEach((e, i) => {
        e.key.copy(keys, i * KEY_SIZE);
        values.writeBigUInt64LE(BigInt(e.packets), i * VALUE_SIZE);
        values.writeBigUInt64LE(BigInt(e.packets * 100), i * VALUE_SIZE + 8);
      });
      for (let i = 0; i < fake.entries.length; i++) visit(keys, i * KEY_SIZE, values, i * VALUE_SIZE);
    },
  } as unknown as BatchedMapReader;
}

function setup() {
  const fake = new FakeMap();
  const tracker = new MovedCounterTracker(readerOf(new Map([[fake.raw, fake]])));
  const counted: CountedMap = {
    map: fake.raw,
    direction: "outbound",
    loopback: (keys, at) =>
      `${keys[at]}.${keys[at + 1]}.${keys[at + 2]}.${keys[at + 3]}:${keys.readUInt16BE(at + 4)}`,
    countersAt: 0,
  };
  const moved = (full = false) =>
    tracker.moved([counted], full).map((m) => `${m.loopback}=${m.counters.packets}`);
  return { fake, moved };
}

describe("MovedCounterTracker", () => {
  it("names only the entries whose packets moved since the last look; a new unused entry has not moved", () => {
    const { fake, moved } = setup();
    for (let i = 1; i <= 5; i++) fake.add(i);
    fake.set(2, 3);
    expect(moved()).toEqual(["127.1.0.2:51822=3"]);
    expect(moved()).toEqual([]);
    fake.set(4, 1);
    fake.set(2, 4);
    expect(moved()).toEqual(["127.1.0.2:51822=4", "127.1.0.4:51822=1"]);
    expect(moved(true)).toHaveLength(5);
  });

  it("follows entries that come, go and move places (the map's order changes)", () => {
    const { fake, moved } = setup();
    for (let i = 1; i <= 6; i++) fake.add(i, i);
    expect(moved()).toHaveLength(6);
    // One gone, one new, the rest in another order, one of them moved meanwhile.
    fake.entries = fake.entries.filter((e) => e.key[3] !== 3).reverse();
    fake.add(9, 0);
    fake.set(5, 50);
    expect(moved()).toEqual(["127.1.0.5:51822=50"]);
    expect(moved()).toEqual([]);
    // The one gone comes back: it counts from 0 again.
    fake.add(3, 0);
    expect(moved()).toEqual([]);
    fake.set(3, 2);
    expect(moved()).toEqual(["127.1.0.3:51822=2"]);
  });

  it("keeps up as the map grows past its buffers", () => {
    const { fake, moved } = setup();
    for (let i = 0; i < 200; i++) fake.add(i % 250, 0);
    expect(moved()).toEqual([]);
    fake.entries[150]!.packets = 7;
    expect(moved()).toHaveLength(1);
  });
});
