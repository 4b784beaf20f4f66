// The NAT mapping classification from two STUN answers, the choice of the two STUN servers, the signal
// field as untrusted input, and the probe against a real two-port responder on loopback.
import { describe, expect, it } from "vitest";
import { startStunResponder } from "../../intro-server/stun.js";
import { parseIceSignal } from "../../src/ice/ice-signal.js";
import {
  classifyMapping,
  describeNatBehaviour,
  probeMapping,
  stunServerPair,
} from "../../src/ice/nat-behaviour.js";
import { createLogger } from "../../src/log.js";

const LOCAL = ["10.0.0.2", "127.0.0.1"];

describe("classifyMapping", () => {
  it("the same mapped address and port from both servers is endpoint-independent", () => {
    const mapped = { address: "203.0.113.7", port: 40000 };
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [mapped, { ...mapped }] })).toBe(
      "endpoint-independent",
    );
  });

  it("another port (or address) towards the second server is address-and-port-dependent", () => {
    const first = { address: "203.0.113.7", port: 40000 };
    expect(
      classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [first, { ...first, port: 40001 }] }),
    ).toBe("address-and-port-dependent");
    expect(
      classifyMapping({
        localAddresses: LOCAL,
        localPort: 5000,
        mapped: [first, { address: "203.0.113.8", port: 40000 }],
      }),
    ).toBe("address-and-port-dependent");
  });

  it("our own address and port is no NAT, even when one server did not answer", () => {
    const own = { address: "10.0.0.2", port: 5000 };
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [own, own] })).toBe("no-nat");
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [own, null] })).toBe("no-nat");
  });

  it("a port preserved on another address is a NAT, not no NAT", () => {
    const kept = { address: "203.0.113.7", port: 5000 };
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [kept, kept] })).toBe(
      "endpoint-independent",
    );
  });

  it("fewer than two answers of a NAT is unknown", () => {
    const mapped = { address: "203.0.113.7", port: 40000 };
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [mapped, null] })).toBe(
      "unknown",
    );
    expect(classifyMapping({ localAddresses: LOCAL, localPort: 5000, mapped: [null, null] })).toBe("unknown");
  });

  it("says symmetric NAT for address-and-port-dependent mapping", () => {
    expect(describeNatBehaviour("address-and-port-dependent")).toBe(
      "address-and-port-dependent (symmetric NAT)",
    );
    expect(describeNatBehaviour("no-nat")).toBe("no NAT");
  });
});

describe("stunServerPair", () => {
  it("takes the first two distinct stun: servers, skipping TURN, duplicates and bad URLs", () => {
    expect(
      stunServerPair(["turn:a:3478", "stun:a:3478", "nonsense", "stun:a:3478", "stun:a:41000", "stun:b:1"]),
    ).toEqual([
      { address: "a", port: 3478 },
      { address: "a", port: 41000 },
    ]);
  });

  it("is null with fewer than two", () => {
    expect(stunServerPair(["stun:a:3478", "stun:a"])).toBeNull(); // the default port: the same server
    expect(stunServerPair([])).toBeNull();
  });
});

describe("the nat field of ICE signals", () => {
  const offer = {
    t: "offer",
    epoch: "0123456789abcdef",
    generation: 1,
    ufrag: "abcd",
    pwd: "abcdefghijklmnopqrstuvwxyz",
  };

  it("is carried by offers, answers and end-of-candidates", () => {
    expect(parseIceSignal({ ...offer, nat: "address-and-port-dependent" })).toMatchObject({
      nat: "address-and-port-dependent",
    });
    expect(parseIceSignal({ ...offer, t: "answer", nat: "endpoint-independent" })).toMatchObject({
      nat: "endpoint-independent",
    });
    expect(
      parseIceSignal({ t: "end-of-candidates", epoch: offer.epoch, generation: 1, nat: "no-nat" }),
    ).toMatchObject({ nat: "no-nat" });
  });

  it("is optional (older peers), and a bad value is dropped without dropping the signal", () => {
    expect(parseIceSignal(offer)?.t).toBe("offer");
    for (const bad of ["symmetric", 7, { x: 1 }, "x".repeat(10_000), null]) {
      const parsed = parseIceSignal({ ...offer, nat: bad });
      expect(parsed?.t).toBe("offer");
      expect(parsed && "nat" in parsed ? parsed.nat : undefined).toBeUndefined();
    }
  });
});

describe("probeMapping against the introduction server's two STUN ports", () => {
  it("sees no NAT on loopback, with the same mapped address from both ports", async () => {
    const responder = await startStunResponder({
      host: "127.0.0.1",
      port: 0,
      altPort: 0,
      logger: createLogger("test", "silent"),
    });
    try {
      expect(responder.altPort).toBeDefined();
      expect(responder.altPort).not.toBe(responder.port);
      const probe = await probeMapping(
        [
          { address: "127.0.0.1", port: responder.port },
          { address: "127.0.0.1", port: responder.altPort! },
        ],
        2000,
      );
      expect(probe.mapped[0]).toEqual({ address: "127.0.0.1", port: probe.localPort });
      expect(probe.mapped[1]).toEqual(probe.mapped[0]);
      expect(probe.behaviour).toBe("no-nat");
      expect(responder.stats().answered).toBe(2);
    } finally {
      await responder.close();
    }
  });

  it("answers unknown when nothing answers", async () => {
    const probe = await probeMapping(
      [
        { address: "127.0.0.1", port: 9 },
        { address: "127.0.0.1", port: 10 },
      ],
      300,
    );
    expect(probe.mapped).toEqual([null, null]);
    expect(probe.behaviour).toBe("unknown");
  });
});
