// Why a path is not direct, in words: from the path, the introduction server, the peer's presence and
// both sides' NAT mapping behaviours.
import { describe, expect, it } from "vitest";
import { type NotDirectFacts, notDirectReason } from "../../src/ice/not-direct-reason.js";

const relayed: NotDirectFacts = {
  introduction: true,
  peerOnline: true,
  pathKind: "relay",
  relayTransport: "udp",
  iceFailed: false,
  localNat: "unknown",
  remoteNat: "unknown",
};

describe("notDirectReason", () => {
  it("says nothing for a direct path", () => {
    expect(
      notDirectReason({ ...relayed, pathKind: "direct", localNat: "address-and-port-dependent" }),
    ).toBeNull();
  });

  it("names symmetric NATs on both sides", () => {
    expect(
      notDirectReason({
        ...relayed,
        localNat: "address-and-port-dependent",
        remoteNat: "address-and-port-dependent",
      }),
    ).toBe("symmetric NAT on both sides: relayed");
  });

  it("names which side is symmetric and what the other is", () => {
    expect(
      notDirectReason({
        ...relayed,
        localNat: "address-and-port-dependent",
        remoteNat: "endpoint-independent",
      }),
    ).toBe("symmetric NAT here, endpoint-independent NAT there: relayed");
    expect(notDirectReason({ ...relayed, localNat: "no-nat", remoteNat: "address-and-port-dependent" })).toBe(
      "no NAT here, symmetric NAT there: relayed",
    );
    expect(notDirectReason({ ...relayed, localNat: "address-and-port-dependent" })).toBe(
      "symmetric NAT here: relayed",
    );
  });

  it("without a symmetric NAT, direct pairs failed", () => {
    expect(
      notDirectReason({ ...relayed, localNat: "endpoint-independent", remoteNat: "endpoint-independent" }),
    ).toBe("direct pairs failed: relayed");
    expect(notDirectReason(relayed)).toBe("direct pairs failed: relayed");
  });

  it("a relay reached over TCP or TLS means no UDP", () => {
    expect(
      notDirectReason({ ...relayed, relayTransport: "tcp", localNat: "address-and-port-dependent" }),
    ).toBe("no UDP to the peer: relayed over TCP");
    expect(notDirectReason({ ...relayed, relayTransport: "tls" })).toBe(
      "no UDP to the peer: relayed over TLS",
    );
  });

  it("without an introduction server, the static endpoint", () => {
    expect(notDirectReason({ ...relayed, introduction: false, pathKind: "static" })).toBe(
      "no introduction server: static endpoint",
    );
    expect(notDirectReason({ ...relayed, introduction: false, pathKind: null })).toBe(
      "no introduction server: no path",
    );
  });

  it("a peer offline at the introduction server", () => {
    expect(notDirectReason({ ...relayed, peerOnline: false, pathKind: "static" })).toBe(
      "peer offline at the introduction server: static endpoint",
    );
  });

  it("while ICE is under way: nothing to explain, or the static endpoint meanwhile", () => {
    expect(notDirectReason({ ...relayed, pathKind: null })).toBeNull();
    expect(notDirectReason({ ...relayed, pathKind: "static" })).toBe("ICE under way: static endpoint");
  });

  it("after ICE failed: why, and what is left", () => {
    expect(
      notDirectReason({
        ...relayed,
        pathKind: null,
        iceFailed: true,
        localNat: "address-and-port-dependent",
        remoteNat: "address-and-port-dependent",
      }),
    ).toBe("symmetric NAT on both sides: no path");
    expect(notDirectReason({ ...relayed, pathKind: "static", iceFailed: true })).toBe(
      "direct pairs failed: static endpoint",
    );
  });
});
