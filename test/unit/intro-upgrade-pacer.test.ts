import { describe, expect, it } from "vitest";
import { UpgradePacer } from "../../intro-server/upgrade-pacer.js";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("UpgradePacer", () => {
  it("takes at most perTurn a turn, in order, and the rest in the turns after", async () => {
    const taken: number[] = [];
    const pacer = new UpgradePacer<number>(
      64,
      (n) => taken.push(n),
      () => true,
    );
    for (let n = 0; n < 200; n++) pacer.push(n);
    expect(taken).toEqual(Array.from({ length: 64 }, (_, n) => n));
    expect(pacer.waiting).toBe(136);
    const perTurn: number[] = [];
    for (let turn = 0; turn < 6; turn++) {
      const before = taken.length;
      await nextTurn();
      perTurn.push(taken.length - before);
    }
    expect(perTurn.every((count) => count <= 64)).toBe(true);
    expect(taken).toEqual(Array.from({ length: 200 }, (_, n) => n));
    expect(pacer.waiting).toBe(0);
  });

  it("takes at once while the turn has room, and skips what is no longer wanted", async () => {
    const taken: string[] = [];
    const gone = new Set(["b"]);
    const pacer = new UpgradePacer<string>(
      1,
      (item) => taken.push(item),
      (item) => !gone.has(item),
    );
    pacer.push("a");
    pacer.push("b");
    pacer.push("c");
    expect(taken).toEqual(["a"]);
    await nextTurn();
    await nextTurn();
    expect(taken).toEqual(["a", "c"]);
    for (let i = 0; i < 3; i++) await nextTurn();
    pacer.push("d");
    expect(taken).toEqual(["a", "c", "d"]);
  });

  it("hands what waits to drop when cleared", async () => {
    const dropped: number[] = [];
    const pacer = new UpgradePacer<number>(
      1,
      () => {},
      () => true,
    );
    for (let n = 0; n < 4; n++) pacer.push(n);
    pacer.clear((n) => dropped.push(n));
    expect(dropped).toEqual([1, 2, 3]);
    expect(pacer.waiting).toBe(0);
    await nextTurn();
  });
});
