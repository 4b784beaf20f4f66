// The same list of peers given again (a hub's interface read every 2 s, its 10,000 keys again whenever
// any peer's counters moved) is recognised by a pass of comparisons, nothing built (issue 15).
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { sameKeys } from "../../src/intro-client/declared-peers.js";
import { IntroClient } from "../../src/intro-client/intro-client.js";
import { createLogger } from "../../src/log.js";
import { LocalKeyAgreement } from "../../src/signalling/key-agreement.js";
import { newKey } from "../integration/intro-support.js";

describe("sameKeys", () => {
  it("is true only for the same keys in the same order", () => {
    expect(sameKeys(["a", "b", "c"], ["a", "b", "c"])).toBe(true);
    expect(sameKeys([], [])).toBe(true);
    expect(sameKeys(["a", "b", "c"], ["c", "a", "b"])).toBe(false);
    expect(sameKeys(["a", "b"], ["a", "b", "c"])).toBe(false);
    expect(sameKeys(["a", "b", "b"], ["a", "b", "c"])).toBe(false);
  });
});

describe("IntroClient.setPeers given the same list again", () => {
  const client = () =>
    new IntroClient({
      url: "ws://127.0.0.1:1",
      keys: new LocalKeyAgreement(randomBytes(32)),
      logger: createLogger("test", "silent"),
    });

  it("still refuses a list with a bad key every time (only a list accepted is remembered)", () => {
    const c = client();
    const keys = [newKey().publicKey, "not a key"];
    expect(() => c.setPeers(keys)).toThrow(/not a WireGuard public key/);
    expect(() => c.setPeers(keys)).toThrow(/not a WireGuard public key/);
  });
});
