import { describe, expect, it } from "vitest";
import { GenerationOrder } from "../../src/ice/generation-order.js";
import { type IceSignal, MAX_REMOTE_CANDIDATES } from "../../src/ice/ice-signal.js";

const E1 = "1111111111111111";
const E2 = "2222222222222222";
const E3 = "3333333333333333";

const id = (epoch: string, generation: number) => ({ epoch, generation });
const candidate = (epoch: string, generation: number, n = 0): Extract<IceSignal, { t: "candidate" }> => ({
  t: "candidate",
  epoch,
  generation,
  candidate: `f${n} 1 udp 1 192.0.2.1 ${1000 + n} typ host`,
});

describe("GenerationOrder (controlled side)", () => {
  it("takes any first offer, then only newer generations of the same epoch", () => {
    const order = new GenerationOrder();
    expect(order.isNewer(id(E1, 5), null)).toBe(true);
    expect(order.isNewer(id(E1, 6), id(E1, 5))).toBe(true);
    expect(order.isNewer(id(E1, 5), id(E1, 5))).toBe(false);
    expect(order.isNewer(id(E1, 4), id(E1, 5))).toBe(false);
  });

  it("takes a new epoch (the peer restarted), and never again an epoch it replaced", () => {
    const order = new GenerationOrder();
    expect(order.isNewer(id(E2, 0), id(E1, 7))).toBe(true);
    order.accepted(id(E2, 0), id(E1, 7));
    expect(order.isNewer(id(E1, 8), id(E2, 0))).toBe(false); // a late offer of the old process
    expect(order.isNewer(id(E3, 0), id(E2, 0))).toBe(true);
  });

  it("remembers the last 8 replaced epochs", () => {
    const order = new GenerationOrder();
    const epochs = Array.from({ length: 10 }, (_, i) => i.toString(16).repeat(16));
    for (let i = 1; i < epochs.length; i++) order.accepted(id(epochs[i]!, 0), id(epochs[i - 1]!, 0));
    const latest = id(epochs[9]!, 0);
    expect(order.isNewer(id(epochs[0]!, 1), latest)).toBe(true); // forgotten
    for (let i = 1; i < 9; i++) expect(order.isNewer(id(epochs[i]!, 1), latest)).toBe(false);
  });

  it("keeps candidates that overtook their offer and hands them over when it arrives", () => {
    const order = new GenerationOrder();
    const early = [candidate(E1, 1, 0), candidate(E1, 1, 1)];
    for (const message of early) expect(order.bufferEarly(message, id(E1, 0))).toBe(true);
    expect(order.takeEarly(id(E1, 1))).toEqual(early);
    expect(order.takeEarly(id(E1, 1))).toEqual([]); // handed over once
  });

  it("drops what was kept when another generation's offer is accepted", () => {
    const order = new GenerationOrder();
    expect(order.bufferEarly(candidate(E1, 2), id(E1, 0))).toBe(true);
    expect(order.takeEarly(id(E1, 1))).toEqual([]);
    expect(order.takeEarly(id(E1, 2))).toEqual([]);
  });

  it("refuses candidates of generations already known, older than the newest announced, or replaced", () => {
    const order = new GenerationOrder();
    expect(order.bufferEarly(candidate(E1, 3), id(E1, 3))).toBe(false); // the agent handles those
    expect(order.bufferEarly(candidate(E1, 2), id(E1, 3))).toBe(false);
    expect(order.bufferEarly(candidate(E1, 5), id(E1, 3))).toBe(true);
    expect(order.bufferEarly(candidate(E1, 4), id(E1, 3))).toBe(false); // 5 was announced
    expect(order.bufferEarly(candidate(E1, 6), id(E1, 3))).toBe(true); // 6 replaces 5
    expect(order.takeEarly(id(E1, 6))).toHaveLength(1);
    order.accepted(id(E2, 0), id(E1, 6));
    expect(order.bufferEarly(candidate(E1, 7), id(E2, 0))).toBe(false);
  });

  it("keeps a bounded number per generation", () => {
    const order = new GenerationOrder();
    let kept = 0;
    for (let n = 0; n < 3 * MAX_REMOTE_CANDIDATES; n++) {
      if (order.bufferEarly(candidate(E1, 1, n), null)) kept++;
    }
    expect(kept).toBe(MAX_REMOTE_CANDIDATES + 1); // the candidates an agent takes, and end-of-candidates
    expect(order.takeEarly(id(E1, 1))).toHaveLength(kept);
  });
});
