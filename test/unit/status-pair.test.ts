// The ICE pair in `tunnelbore status`: both candidates' types, ours first, and how we reach our TURN
// server when ours is a relay candidate (TCP/TLS allocations stay in user space).
import { describe, expect, it } from "vitest";
import { formatPair, formatStatus } from "../../src/commands/status.js";
import { peerStatusFixture, statusReportFixture } from "../support/status-fixtures.js";

const peer = peerStatusFixture();
const report = statusReportFixture({
  peers: [peer, peerStatusFixture({ state: "connected(static)", pathKind: "static", pair: null })],
});

describe("the ICE pair in status", () => {
  it("names both candidate types, ours first, with our relay's transport", () => {
    expect(
      formatPair({ localType: "relay", remoteType: "srflx", relayTransport: "tcp", generation: 0 }),
    ).toBe("relay/tcp->srflx");
    expect(formatPair({ localType: "srflx", remoteType: "relay", relayTransport: null, generation: 0 })).toBe(
      "srflx->relay",
    );
    expect(formatPair({ localType: "host", remoteType: "prflx", relayTransport: null, generation: 0 })).toBe(
      "host->prflx",
    );
    expect(formatPair(null)).toBe("-");
    expect(formatPair(undefined)).toBe("-"); // a status from before the field
  });

  it("is a column of the peers' table: the pair on ICE, '-' on a static path", () => {
    const lines = formatStatus(report).split("\n");
    const header = lines.find((l) => l.startsWith("PEER"));
    expect(header?.split(/\s+/)).toEqual([
      "PEER",
      "STATE",
      "REMOTE",
      "PAIR",
      "LOOPBACK",
      "RTT",
      "HANDSHAKE",
      "SENT",
      "RECEIVED",
    ]);
    const relayed = lines.find((l) => l.includes("connected(relay)"))?.split(/\s+/);
    expect(relayed?.[3]).toBe("relay/tcp->srflx");
    const fixed = lines.find((l) => l.includes("connected(static)"))?.split(/\s+/);
    expect(fixed?.[3]).toBe("-");
  });
});
