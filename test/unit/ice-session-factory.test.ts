import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { IceSessionFactory } from "../../src/ice/ice-session-factory.js";

function connector(excludeAddresses: string[]): IceSessionFactory {
  return new IceSessionFactory({
    excludeInterfaces: [],
    excludeAddresses,
    stunUrls: () => [],
    turn: () => undefined,
    logger: pino({ level: "silent" }),
  });
}

describe("IceSessionFactory candidate exclusions", () => {
  it("excludes the tunnel's ranges, and follows them when peers' allowed IPs change", () => {
    const c = connector(["10.77.0.2/32"]);
    const exclude = c.isExcludedAddress; // what every session holds
    expect(exclude("10.77.0.2")).toBe(true);
    expect(exclude("10.77.0.3")).toBe(false);
    expect(exclude("127.0.0.1")).toBe(true); // loopback never
    c.setExcludedAddresses(["10.77.0.2/32", "10.88.0.0/16"]);
    expect(exclude("10.88.3.4")).toBe(true);
    c.setExcludedAddresses(["10.88.0.0/16"]);
    expect(exclude("10.77.0.2")).toBe(false);
  });

  it("keeps the previous exclusions when given a malformed range", () => {
    const c = connector(["10.77.0.0/24"]);
    c.setExcludedAddresses(["not-a-range"]);
    expect(c.isExcludedAddress("10.77.0.9")).toBe(true);
  });
});
