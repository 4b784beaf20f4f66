// The signal for "WireGuard has traffic waiting for a peer" that the cold-start nudge acts on.
import { describe, expect, it } from "vitest";
import { trafficWaiting } from "../../src/wg/handshake-nudge.js";

describe("trafficWaiting", () => {
  it("is true when WireGuard sent to the peer and never completed a handshake", () => {
    expect(trafficWaiting({ latestHandshake: 0, txBytes: 148 })).toBe(true);
  });

  it("is false without anything sent (nothing waits, or wireguard-go queued it without an endpoint)", () => {
    expect(trafficWaiting({ latestHandshake: 0, txBytes: 0 })).toBe(false);
  });

  it("is false once a handshake completed (a session may be lost by re-creating the peer)", () => {
    expect(trafficWaiting({ latestHandshake: 1_700_000_000, txBytes: 148 })).toBe(false);
  });
});
