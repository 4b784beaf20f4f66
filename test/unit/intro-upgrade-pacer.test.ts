import { describe, expect, it } from "vitest";
import { UpgradePacer } from "../../intro-server/upgrade-pacer.js";

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

/** A clock that each take moves on by `costMs`. */
function pacerWithCost<T>(budgetMs: number, costMs: number, wanted: (item: T) => boolean = () => true) {
  let clock = 0;
  const taken: T[] = [];
  const pacer = new UpgradePacer<T>(
    budgetMs,
    (item) => {
      taken.push(item);
      clock += costMs;
    },
    wanted,
    () => clock,
  );
  return { pacer, taken };
}

describe("UpgradePacer", () => {
  it("takes what fits in a turn's time, in order, and the rest in the turns after", async () => {
    const { pacer, taken } = pacerWithCost<number>(10, 1);
    for (let n = 0; n < 35; n++) pacer.push(n);
    expect(taken).toEqual(Array.from({ length: 10 }, (_, n) => n));
    expect(pacer.waiting).toBe(25);
    const perTurn: number[] = [];
    for (let turn = 0; turn < 4; turn++) {
      const before = taken.length;
      await nextTurn();
      perTurn.push(taken.length - before);
    }
    expect(perTurn).toEqual([10, 10, 5, 0]);
    expect(taken).toEqual(Array.from({ length: 35 }, (_, n) => n));
  });

  it("takes cheap upgrades by the hundred in one turn", async () => {
    const { pacer, taken } = pacerWithCost<number>(10, 0.01);
    for (let n = 0; n < 500; n++) pacer.push(n);
    expect(taken).toHaveLength(500);
    await nextTurn();
  });

  it("takes at once while the turn has time, and skips what is no longer wanted", async () => {
    const { pacer, taken } = pacerWithCost<string>(1, 1, (item) => item !== "b");
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
    const { pacer } = pacerWithCost<number>(1, 1);
    const dropped: number[] = [];
    for (let n = 0; n < 4; n++) pacer.push(n);
    pacer.clear((n) => dropped.push(n));
    expect(dropped).toEqual([1, 2, 3]);
    expect(pacer.waiting).toBe(0);
    await nextTurn();
  });
});
