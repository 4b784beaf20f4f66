import { describe, expect, it } from "vitest";
import { IndexTable } from "../../src/proxy/index-table.js";

describe("IndexTable", () => {
  it("maps learned indices to their peer", () => {
    const table = new IndexTable<{ name: string }>();
    const a = { name: "a" };
    const b = { name: "b" };
    table.learn(1, a);
    table.learn(2, b);
    expect(table.lookup(1)).toBe(a);
    expect(table.lookup(2)).toBe(b);
    expect(table.lookup(3)).toBeUndefined();
  });

  it("keeps only the last four indices of a peer", () => {
    const table = new IndexTable<{ name: string }>();
    const a = { name: "a" };
    for (let i = 1; i <= 6; i++) table.learn(i, a);
    expect(table.lookup(1)).toBeUndefined();
    expect(table.lookup(2)).toBeUndefined();
    expect([3, 4, 5, 6].map((i) => table.lookup(i))).toEqual([a, a, a, a]);
    expect(table.size).toBe(4);
  });

  it("an index taken over by another peer is not deleted when the first peer's ring moves on", () => {
    const table = new IndexTable<{ name: string }>();
    const a = { name: "a" };
    const b = { name: "b" };
    table.learn(7, a);
    table.learn(7, b);
    for (let i = 10; i < 20; i++) table.learn(i, a);
    expect(table.lookup(7)).toBe(b);
  });

  it("forgets a removed peer", () => {
    const table = new IndexTable<{ name: string }>();
    const a = { name: "a" };
    table.learn(1, a);
    table.learn(2, a);
    table.forget(a);
    expect(table.lookup(1)).toBeUndefined();
    expect(table.size).toBe(0);
  });
});
