// Reading many entries of a BPF map at once: BPF_MAP_LOOKUP_BATCH passes over the whole map into
// buffers kept between passes, when enough of its entries are asked for (a hub's quiet fast-path
// entries, read together every 10 s), else one lookup per key. A lookup costs 4-8 us, a batched pass
// about 0.15 us an entry (syscall and matching included) on the benchmark's VM.
import { constants } from "node:os";
import type { RawMap } from "bpf";
import { RuntimeError } from "../src/errors.js";

const { ENOENT, EINVAL, EOPNOTSUPP } = constants.errno;
/** The kernel's internal ENOTSUPP (524), which bpf(2) can answer for an operation a map type lacks. */
const ENOTSUPP = 524;

/**
 * BPF_MAP_LOOKUP_BATCH as the `bpf` package's native binding has it: the entries after `inBatch`
 * (undefined: from the start) into `keys` and `values`, at most `count`; [status (0 or -errno), how many].
 * Its `getBatch` copies every entry into two new Buffers, 15 times the cost of the call itself.
 */
type LookupBatch = (
  fd: number,
  inBatch: Buffer | undefined,
  outBatch: Buffer,
  keys: Buffer,
  values: Buffer,
  count: number,
  opts: { elemFlags: number },
) => [number, number];

/**
 * The binding's batch lookup, or null where the package has none (its internal module: the version is
 * pinned by package-lock.json; without it every read is a lookup of its own).
 */
async function loadLookupBatch(): Promise<LookupBatch | null> {
  try {
    const util = (await import("bpf/dist/util.js")) as { native?: { mapLookupBatch?: unknown } };
    const fn = util.native?.mapLookupBatch;
    return typeof fn === "function" ? (fn as LookupBatch) : null;
  } catch {
    return null;
  }
}

/** Entries per BPF_MAP_LOOKUP_BATCH call: a hub's map in a few calls (a hash bucket never holds this many). */
const BATCH_ENTRIES = 4096;
/**
 * A lookup of its own costs about as much as this many entries of a batched pass over the whole map
 * (4-8 us against 0.15 us, syscall and matching included, on the benchmark's VM): fewer keys than the
 * map's entries / BATCH_RATIO are looked up one by one.
 */
const BATCH_RATIO = 25;

/** A 32-bit hash of a key's bytes (sizes are multiples of 4): finds a batch's entries among the keys asked. */
function keyHash(buf: Buffer, offset: number, size: number): number {
  let h = 2166136261;
  for (let i = 0; i < size; i += 4) h = Math.imul(h ^ buf.readUInt32LE(offset + i), 16777619);
  return h >>> 0;
}

export class BatchedMapReader {
  /** Each map's entries at its last batched pass (0 until then): whether a pass is worth it. */
  private readonly batchedSize = new Map<RawMap, number>();
  /** Keys, values and the two batch tokens of a pass, per map, kept between passes. */
  private readonly batchBuffers = new Map<
    RawMap,
    { keys: Buffer; values: Buffer; tokens: [Buffer, Buffer] }
  >();

  private constructor(private lookupBatch: LookupBatch | null) {}

  static async create(): Promise<BatchedMapReader> {
    return new BatchedMapReader(await loadLookupBatch());
  }

  /**
   * For each i of `which`: `keys[i]`'s value in `map`, decoded (`decode(buffer, offset of the value)`)
   * into `into[i]`, where there is one. One pass over the map in batch calls when enough of its entries
   * are asked for, else a lookup per key.
   */
  read<T>(
    map: RawMap,
    keys: Buffer[],
    which: number[],
    decode: (values: Buffer, at: number) => T,
    into: (T | null)[],
  ): void {
    if (which.length === 0) return;
    if (!this.lookupBatch || which.length * BATCH_RATIO < (this.batchedSize.get(map) ?? 0)) {
      for (const i of which) {
        const value = map.get(keys[i] as Buffer);
        if (value) into[i] = decode(value, 0);
      }
      return;
    }
    const { keySize } = map.ref;
    const wanted = new Map<number, number[]>();
    for (const i of which) {
      const h = keyHash(keys[i] as Buffer, 0, keySize);
      const same = wanted.get(h);
      if (same) same.push(i);
      else wanted.set(h, [i]);
    }
    const done = this.pass(map, (keysOut, keyAt, values, valueAt) => {
      const same = wanted.get(keyHash(keysOut, keyAt, keySize));
      if (!same) return;
      for (const i of same) {
        if ((keys[i] as Buffer).compare(keysOut, keyAt, keyAt + keySize) === 0)
          into[i] = decode(values, valueAt);
      }
    });
    // A kernel before 5.6: a lookup per key from now on.
    if (!done) this.read(map, keys, which, decode, into);
  }

  /**
   * Visits every entry of `map` (its key at `keys[keyAt]`, its value at `values[valueAt]`; both only
   * valid during the call): one pass in batch calls, else an iteration of lookups.
   */
  forEach(map: RawMap, visit: (keys: Buffer, keyAt: number, values: Buffer, valueAt: number) => void): void {
    if (this.lookupBatch && this.pass(map, visit)) return;
    for (const [key, value] of map.entries()) visit(key, 0, value, 0);
  }

  /** One batched pass over the map; false when the kernel has no batch lookup (nothing visited then). */
  private pass(
    map: RawMap,
    visit: (keys: Buffer, keyAt: number, values: Buffer, valueAt: number) => void,
  ): boolean {
    const lookupBatch = this.lookupBatch;
    if (!lookupBatch) return false;
    const { keySize, valueSize } = map.ref;
    let buffers = this.batchBuffers.get(map);
    if (!buffers) {
      buffers = {
        keys: Buffer.alloc(BATCH_ENTRIES * keySize),
        values: Buffer.alloc(BATCH_ENTRIES * valueSize),
        // The kernel's resume token (a bucket index for a hash map); a key's size is enough.
        tokens: [Buffer.alloc(Math.max(keySize, 8)), Buffer.alloc(Math.max(keySize, 8))],
      };
      this.batchBuffers.set(map, buffers);
    }
    const { keys: keysOut, values } = buffers;
    let [inBatch, outBatch] = buffers.tokens;
    let first = true;
    let seen = 0;
    for (;;) {
      const [status, count] = lookupBatch(
        map.ref.fd,
        first ? undefined : inBatch,
        outBatch,
        keysOut,
        values,
        BATCH_ENTRIES,
        { elemFlags: 0 },
      );
      if (status !== 0 && status !== -ENOENT) {
        if (first && (status === -EINVAL || status === -ENOTSUPP || status === -EOPNOTSUPP)) {
          this.lookupBatch = null;
          return false;
        }
        throw new RuntimeError("ebpf-batch", `BPF_MAP_LOOKUP_BATCH failed (errno ${-status})`, { status });
      }
      for (let e = 0; e < count; e++) visit(keysOut, e * keySize, values, e * valueSize);
      seen += count;
      if (status === -ENOENT) break;
      [inBatch, outBatch] = [outBatch, inBatch];
      first = false;
    }
    this.batchedSize.set(map, seen);
    return true;
  }
}
