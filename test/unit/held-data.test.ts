// HeldData: a dormant peer's transport data, held in order and bounded until its path is back.
import { describe, expect, it } from "vitest";
import { HELD_DATA_MAX_BYTES, HELD_DATA_MAX_DATAGRAMS, HeldData } from "../../src/proxy/held-data.js";

const datagram = (n: number, size = 100) => Buffer.alloc(size, n);

describe("HeldData", () => {
  it("sends every datagram held, in order, as copies (the socket reuses its buffer)", () => {
    const held = new HeldData();
    const reused = datagram(1);
    held.hold(reused, 0);
    reused.fill(9);
    held.hold(datagram(2), 10);
    held.hold(datagram(3), 20);
    const sent: Buffer[] = [];
    expect(held.release(30, 5000, (d) => sent.push(d))).toBe(0);
    expect(sent).toEqual([datagram(1), datagram(2), datagram(3)]);
    expect(held.size).toBe(0);
  });

  it("keeps the newest within its bounds of datagrams and bytes, and tells how many made room", () => {
    const held = new HeldData();
    let dropped = 0;
    for (let i = 0; i < HELD_DATA_MAX_DATAGRAMS + 3; i++) dropped += held.hold(datagram(i), i);
    expect(dropped).toBe(3);
    expect(held.size).toBe(HELD_DATA_MAX_DATAGRAMS);
    const sent: number[] = [];
    held.release(100, 5000, (d) => sent.push(d[0] ?? -1));
    expect(sent[0]).toBe(3);
    expect(sent.at(-1)).toBe(HELD_DATA_MAX_DATAGRAMS + 2);

    const big = Math.floor(HELD_DATA_MAX_BYTES / 3) + 1;
    dropped = 0;
    for (let i = 0; i < 4; i++) dropped += held.hold(datagram(i, big), i);
    expect(dropped).toBe(2); // three would be over the byte bound
    expect(held.size).toBe(2);
    // One datagram is kept whatever its size.
    const alone = new HeldData();
    expect(alone.hold(datagram(1, HELD_DATA_MAX_BYTES + 1), 0)).toBe(0);
    expect(alone.size).toBe(1);
  });

  it("drops what was held too long ago, and says how many", () => {
    const held = new HeldData();
    held.hold(datagram(1), 0);
    held.hold(datagram(2), 4000);
    const sent: Buffer[] = [];
    expect(held.release(6000, 5000, (d) => sent.push(d))).toBe(1);
    expect(sent).toEqual([datagram(2)]);
  });
});
