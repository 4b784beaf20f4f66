// run's metrics rendered from StatusReports: what a scrape shows of peers, drops, intro and forwarding.
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import type { PeerStatus, StatusReport } from "../../src/control/status.js";
import { runHealth } from "../../src/metrics/run-metrics.js";
import { StatusMetrics } from "../../src/metrics/status-metrics.js";
import { newIceRestartCounts } from "../../src/peer/ice-restarts.js";
import { newDropCounters } from "../../src/proxy/counters.js";

const KEY_A = "AbCdEfGh1234567890abcdefghijklmnopqrstuvwx0=";
const KEY_B = "ZyXwVuTs1234567890abcdefghijklmnopqrstuvwx0=";
const NOW = 1_800_000_000;

function peer(overrides: Partial<PeerStatus> = {}): PeerStatus {
  return {
    publicKey: KEY_A,
    state: "connected(direct)",
    pathKind: "direct",
    remote: "198.51.100.7:40000",
    loopback: "127.1.2.3:51822",
    loopback6: null,
    wireguardHearsLoopback6: false,
    rttMs: 12.5,
    lastHandshake: NOW - 42,
    txBytes: 10_000,
    rxBytes: 8_000,
    kernelFastPath: true,
    kernelTxDatagrams: 30,
    kernelRxDatagrams: 20,
    kernelTxBytes: 6_000,
    kernelRxBytes: 5_000,
    txDatagrams: 50,
    rxDatagrams: 40,
    routedIntoTunnel: null,
    iceRestarts: { ...newIceRestartCounts(), "path-suspect": 2, upgrade: 1 },
    ...overrides,
  };
}

function report(overrides: Partial<StatusReport> = {}): StatusReport {
  return {
    interface: "wg0",
    ready: true,
    waitingFor: null,
    warnings: [],
    intro: {
      url: "ws://192.0.2.1:8443",
      state: "connected",
      since: 0,
      failures: 0,
      lastError: null,
      lastErrorAt: 0,
    },
    catchAll: "127.0.0.1:51821",
    wireguardPort: 51820,
    peers: [peer()],
    drops: { ...newDropCounters(), "bad-mac1": 3, "no-path": 1 },
    forwarding: {
      setting: "auto",
      mode: "kernel",
      reason: null,
      interfaces: ["eth0"],
      userSpaceIo: "native",
    },
    tunnelBypass: { state: "inactive", fwmark: 0, mark: 0, cgroup: null, reason: null },
    ...overrides,
  };
}

/** Renders and returns the exposition text's sample lines (no # HELP / # TYPE). */
async function scrape(reports: StatusReport[]): Promise<string[]> {
  const registry = new Registry();
  new StatusMetrics(registry).render(reports, NOW);
  return (await registry.metrics()).split("\n").filter((l) => l !== "" && !l.startsWith("#"));
}

describe("StatusMetrics", () => {
  it("labels a peer by the first 8 characters of its public key and its interface, never more of the key", async () => {
    const lines = await scrape([report()]);
    expect(lines).toContain('tunnelbore_peer_kernel_fast_path{interface="wg0",peer="AbCdEfGh"} 1');
    expect(lines.join("\n")).not.toContain(KEY_A.slice(0, 9));
  });

  it("shows the state and the path kind as one series each with value 1, the others 0", async () => {
    const lines = await scrape([report()]);
    expect(lines).toContain('tunnelbore_peer_state{interface="wg0",peer="AbCdEfGh",state="connected"} 1');
    expect(lines).toContain('tunnelbore_peer_state{interface="wg0",peer="AbCdEfGh",state="idle"} 0');
    expect(lines).toContain('tunnelbore_peer_path{interface="wg0",peer="AbCdEfGh",kind="direct"} 1');
    expect(lines).toContain('tunnelbore_peer_path{interface="wg0",peer="AbCdEfGh",kind="relay"} 0');
    const ones = lines.filter((l) => l.startsWith("tunnelbore_peer_state{") && l.endsWith(" 1"));
    expect(ones).toHaveLength(1);
  });

  it("a peer without a path has kind none", async () => {
    const lines = await scrape([report({ peers: [peer({ state: "signalling", pathKind: null })] })]);
    expect(lines).toContain('tunnelbore_peer_path{interface="wg0",peer="AbCdEfGh",kind="none"} 1');
    expect(lines).toContain('tunnelbore_peer_state{interface="wg0",peer="AbCdEfGh",state="signalling"} 1');
  });

  it("splits bytes and datagrams each way into the kernel's and user space's parts", async () => {
    const lines = await scrape([report()]);
    const p = 'interface="wg0",peer="AbCdEfGh"';
    expect(lines).toContain(`tunnelbore_peer_bytes_total{${p},direction="tx",plane="kernel"} 6000`);
    expect(lines).toContain(`tunnelbore_peer_bytes_total{${p},direction="tx",plane="user"} 4000`);
    expect(lines).toContain(`tunnelbore_peer_bytes_total{${p},direction="rx",plane="kernel"} 5000`);
    expect(lines).toContain(`tunnelbore_peer_bytes_total{${p},direction="rx",plane="user"} 3000`);
    expect(lines).toContain(`tunnelbore_peer_datagrams_total{${p},direction="tx",plane="kernel"} 30`);
    expect(lines).toContain(`tunnelbore_peer_datagrams_total{${p},direction="tx",plane="user"} 20`);
    expect(lines).toContain(`tunnelbore_peer_datagrams_total{${p},direction="rx",plane="kernel"} 20`);
    expect(lines).toContain(`tunnelbore_peer_datagrams_total{${p},direction="rx",plane="user"} 20`);
  });

  it("gives the handshake age in seconds, and no series before the first handshake", async () => {
    expect(await scrape([report()])).toContain(
      'tunnelbore_peer_handshake_age_seconds{interface="wg0",peer="AbCdEfGh"} 42',
    );
    const never = await scrape([report({ peers: [peer({ lastHandshake: 0 })] })]);
    expect(never.some((l) => l.startsWith("tunnelbore_peer_handshake_age_seconds"))).toBe(false);
  });

  it("counts ICE restarts by reason, every reason present", async () => {
    const lines = await scrape([report()]);
    const p = 'interface="wg0",peer="AbCdEfGh"';
    expect(lines).toContain(`tunnelbore_peer_ice_restarts_total{${p},reason="path-suspect"} 2`);
    expect(lines).toContain(`tunnelbore_peer_ice_restarts_total{${p},reason="upgrade"} 1`);
    expect(lines).toContain(`tunnelbore_peer_ice_restarts_total{${p},reason="retry"} 0`);
  });

  it("shows drops by reason, the intro connection's state and the forwarding mode", async () => {
    const lines = await scrape([report()]);
    expect(lines).toContain('tunnelbore_drops_total{interface="wg0",reason="bad-mac1"} 3');
    expect(lines).toContain('tunnelbore_drops_total{interface="wg0",reason="malformed"} 0');
    expect(lines).toContain('tunnelbore_intro_connection_state{interface="wg0",state="connected"} 1');
    expect(lines).toContain('tunnelbore_intro_connection_state{interface="wg0",state="retrying"} 0');
    expect(lines).toContain('tunnelbore_forwarding_mode{interface="wg0",mode="kernel"} 1');
    expect(lines).toContain('tunnelbore_forwarding_mode{interface="wg0",mode="user"} 0');
    const user = await scrape([
      report({ forwarding: { ...report().forwarding, mode: "user space", reason: "off" }, intro: null }),
    ]);
    expect(user).toContain('tunnelbore_forwarding_mode{interface="wg0",mode="user"} 1');
    expect(user.some((l) => l.startsWith("tunnelbore_intro_connection_state"))).toBe(false);
  });

  it("counts the configuration warnings status shows, 0 when there are none", async () => {
    expect(await scrape([report()])).toContain('tunnelbore_config_warnings{interface="wg0"} 0');
    const warned = await scrape([
      report({ warnings: ["wg0's MTU 65456 ...", "wg0.conf has SaveConfig ..."] }),
    ]);
    expect(warned).toContain('tunnelbore_config_warnings{interface="wg0"} 2');
  });

  it("shows a userspace WireGuard's socket buffer and drops; nothing for the kernel's or unknown figures", async () => {
    const socket = { port: 51820, receiveBufferBytes: 212992, drops: 30123, sockets: [], unknown: null };
    const lines = await scrape([report({ wireguardSocket: socket })]);
    expect(lines).toContain('tunnelbore_wireguard_socket_receive_buffer_bytes{interface="wg0"} 212992');
    expect(lines).toContain('tunnelbore_wireguard_socket_drops_total{interface="wg0"} 30123');
    const unknown = { ...socket, receiveBufferBytes: null, drops: null, unknown: "ss not found" };
    for (const wireguardSocket of [null, unknown]) {
      const none = await scrape([report({ wireguardSocket })]);
      expect(none.some((l) => l.startsWith("tunnelbore_wireguard_socket"))).toBe(false);
    }
  });

  it("labels each report by its interface, and a peer gone leaves no series behind", async () => {
    const registry = new Registry();
    const metrics = new StatusMetrics(registry);
    metrics.render([report(), report({ interface: "wg1", peers: [peer({ publicKey: KEY_B })] })], NOW);
    let text = await registry.metrics();
    expect(text).toContain('tunnelbore_peer_state{interface="wg1",peer="ZyXwVuTs",state="connected"} 1');
    expect(text).toContain('tunnelbore_peer_state{interface="wg0",peer="AbCdEfGh",state="connected"} 1');
    metrics.render([report({ peers: [] })], NOW);
    text = await registry.metrics();
    expect(text).not.toContain("AbCdEfGh");
    expect(text).not.toContain('interface="wg1"');
  });

  it("says ready only while the interface is served", async () => {
    expect(await scrape([report()])).toContain('tunnelbore_ready{interface="wg0"} 1');
    expect(await scrape([report({ ready: false, waitingFor: "interface wg0 to appear" })])).toContain(
      'tunnelbore_ready{interface="wg0"} 0',
    );
  });
});

describe("runHealth", () => {
  it("is healthy while every interface is served", () => {
    expect(runHealth([report()])).toEqual({ healthy: true, text: "ok: serving wg0" });
  });

  it("is unhealthy while waiting for an interface or starting, and says why", () => {
    const waiting = runHealth([report({ ready: false, waitingFor: "interface wg0 to appear" })]);
    expect(waiting).toEqual({ healthy: false, text: "wg0: waiting for interface wg0 to appear" });
    expect(runHealth([report(), report({ interface: "wg1", ready: false })]).healthy).toBe(false);
    expect(runHealth([]).healthy).toBe(false);
  });
});
