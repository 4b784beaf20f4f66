// StatusReports and PeerStatuses for tests of what status, metrics and health make of them: a ready
// interface in user space with no peers, and an idle relayed peer; tests override what they look at.
import type { PeerStatus, StatusReport } from "../../src/control/status.js";
import { newIceRestartCounts } from "../../src/peer/ice-restarts.js";
import { newDropCounters } from "../../src/proxy/counters.js";

export function statusReportFixture(overrides: Partial<StatusReport> = {}): StatusReport {
  return {
    interface: "wg0",
    ready: true,
    waitingFor: null,
    warnings: [],
    intro: null,
    catchAll: "127.0.0.1:51821",
    wireguardPort: 51820,
    peers: [],
    drops: newDropCounters(),
    forwarding: { setting: "off", mode: "user space", reason: "off", interfaces: [], userSpaceIo: "dgram" },
    tunnelBypass: { state: "inactive", fwmark: 0, mark: 0, cgroup: null, reason: null },
    ...overrides,
  };
}

export function peerStatusFixture(overrides: Partial<PeerStatus> = {}): PeerStatus {
  return {
    publicKey: "AbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/abcde=",
    state: "connected(relay)",
    pathKind: "relay",
    remote: "192.0.2.10:49152",
    loopback: "127.23.4.5:51820",
    loopback6: null,
    wireguardHearsLoopback6: false,
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
    iceRestarts: newIceRestartCounts(),
    pair: { localType: "relay", remoteType: "srflx", relayTransport: "tcp", generation: 0 },
    ...overrides,
  };
}
