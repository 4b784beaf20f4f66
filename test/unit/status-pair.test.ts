// The ICE pair in `tunnelbore status`: both candidates' types, ours first, and how we reach our TURN
// server when ours is a relay candidate (TCP/TLS allocations stay in user space).
import { describe, expect, it } from "vitest";
import { formatPair, formatStatus } from "../../src/commands/status.js";
import type { PeerStatus, StatusReport } from "../../src/control/status.js";

const peer: PeerStatus = {
  publicKey: "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde=",
  state: "connected(relay)",
  pathKind: "relay",
  remote: "192.0.2.10:49152",
  loopback: "127.23.4.5:51820",
  rttMs: 12.5,
  lastHandshake: 0,
  txBytes: 0,
  rxBytes: 0,
  kernelFastPath: false,
  kernelTxDatagrams: 0,
  kernelRxDatagrams: 0,
  kernelTxBytes: 0,
  kernelRxBytes: 0,
  txDatagrams: 0,
  rxDatagrams: 0,
  routedIntoTunnel: null,
  iceRestarts: { "path-suspect": 0 } as PeerStatus["iceRestarts"],
  pair: { localType: "relay", remoteType: "srflx", relayTransport: "tcp" },
};

const report: StatusReport = {
  interface: "wg0",
  ready: true,
  waitingFor: null,
  warnings: [],
  intro: null,
  catchAll: "127.0.0.1:51821",
  wireguardPort: 51820,
  peers: [peer, { ...peer, state: "connected(static)", pathKind: "static", pair: null }],
  drops: {
    malformed: 0,
    "bad-mac1": 0,
    "unknown-peer": 0,
    "unknown-index": 0,
    "no-path": 0,
    "foreign-source": 0,
    "send-failed": 0,
  },
  forwarding: { setting: "off", mode: "user space", reason: "off", interfaces: [], userSpaceIo: "dgram" },
  tunnelBypass: { state: "inactive", fwmark: 0, mark: 0, cgroup: null, reason: null },
};

describe("the ICE pair in status", () => {
  it("names both candidate types, ours first, with our relay's transport", () => {
    expect(formatPair({ localType: "relay", remoteType: "srflx", relayTransport: "tcp" })).toBe(
      "relay/tcp->srflx",
    );
    expect(formatPair({ localType: "srflx", remoteType: "relay", relayTransport: null })).toBe(
      "srflx->relay",
    );
    expect(formatPair({ localType: "host", remoteType: "prflx", relayTransport: null })).toBe("host->prflx");
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
