// A peer's timing: the defaults, with what was given merged in once for every peer given it.
import { describe, expect, it } from "vitest";
import { DEFAULT_PEER_TIMING, peerTiming } from "../../src/peer/peer-environment.js";

describe("peerTiming", () => {
  it("merges the given timing into the defaults, once for all the peers given the same one", () => {
    expect(peerTiming(undefined)).toBe(DEFAULT_PEER_TIMING);
    const given = { idleTimeoutMs: 60_000 };
    const merged = peerTiming(given);
    expect(merged).toEqual({ ...DEFAULT_PEER_TIMING, idleTimeoutMs: 60_000 });
    expect(peerTiming(given)).toBe(merged);
    expect(peerTiming({ idleTimeoutMs: 60_000 })).not.toBe(merged); // another object: merged on its own
  });
});
