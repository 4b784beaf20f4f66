// `tunnelbore ping`: which peer a prefix names, the control socket's request line, one probe of a path
// (live on ICE, the latest handshake on a static path), and what the command prints.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import {
  describePath,
  formatHeader,
  formatMs,
  formatProbe,
  formatStatic,
  formatSummary,
  type ProbeResult,
  staticReachable,
  summarize,
} from "../../src/commands/ping.js";
import { matchPeerPrefix, onlyRunningInterface } from "../../src/commands/ping-target.js";
import {
  formatPingRequest,
  type PingAnswer,
  type PingTarget,
  parsePingRequest,
  probePath,
} from "../../src/control/path-probe.js";
import { ConfigError } from "../../src/errors.js";
import type { BatchedUdpSocket } from "../../src/proxy/batched-udp.js";
import { LivenessMonitor } from "../../src/proxy/liveness.js";
import type { PeerPath } from "../../src/proxy/path.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";

const KEY_A = `AbCdEf${"a".repeat(37)}=`;
const KEY_B = `AbCdXy${"b".repeat(37)}=`;
const KEY_C = `Zz${"c".repeat(41)}=`;
const KEYS = [KEY_A, KEY_B, KEY_C];

function thrown(f: () => unknown): ConfigError {
  try {
    f();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("did not throw");
}

describe("matchPeerPrefix", () => {
  it("takes a whole key, or a prefix only one key has", () => {
    expect(matchPeerPrefix(KEY_B, KEYS, "wg0")).toBe(KEY_B);
    expect(matchPeerPrefix("AbCdE", [KEY_A, KEY_C], "wg0")).toBe(KEY_A);
    expect(matchPeerPrefix("AbCdX", KEYS, "wg0")).toBe(KEY_B);
    expect(matchPeerPrefix("Z", KEYS, "wg0")).toBe(KEY_C);
  });

  it("takes a key as status shows it, cut short with an ellipsis", () => {
    expect(matchPeerPrefix(`${KEY_A.slice(0, 10)}…`, KEYS, "wg0")).toBe(KEY_A);
    expect(matchPeerPrefix(`${KEY_B.slice(0, 10)}...`, KEYS, "wg0")).toBe(KEY_B);
  });

  it("refuses an ambiguous prefix, naming every candidate", () => {
    const err = thrown(() => matchPeerPrefix("AbCd", KEYS, "wg0"));
    expect(err.code).toBe("ambiguous-peer");
    expect(err.message).toContain(KEY_A);
    expect(err.message).toContain(KEY_B);
    expect(err.message).not.toContain(KEY_C);
    expect(err.message).toContain("wg0");
  });

  it("says that no peer matched an unknown prefix", () => {
    const err = thrown(() => matchPeerPrefix("Qq", KEYS, "wg0"));
    expect(err.code).toBe("unknown-peer");
    expect(err.message).toBe('no peer of wg0 matches "Qq"');
  });

  it("is case-sensitive, as base64 is", () => {
    expect(thrown(() => matchPeerPrefix("abcdef", KEYS, "wg0")).code).toBe("unknown-peer");
  });

  it("refuses an empty prefix", () => {
    expect(thrown(() => matchPeerPrefix("…", KEYS, "wg0")).code).toBe("bad-usage");
  });
});

describe("onlyRunningInterface", () => {
  const dir = mkdtempSync(join(tmpdir(), "tbt-ping-run-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("takes the only control socket, and lists them when there are several", async () => {
    const run = join(dir, "one");
    mkdirSync(run);
    await expect(onlyRunningInterface(run)).rejects.toThrow(/no tunnelbore run is active/);
    writeFileSync(join(run, "wg0.sock"), "");
    expect(await onlyRunningInterface(run)).toBe("wg0");
    writeFileSync(join(run, "home.sock"), "");
    await expect(onlyRunningInterface(run)).rejects.toThrow(
      "several interfaces are running (home, wg0): name one with --interface",
    );
  });
});

describe("the ping request line", () => {
  it("round-trips and fits the control socket's 256 bytes", () => {
    const line = formatPingRequest({ peer: KEY_A, timeoutMs: 4000 });
    expect(parsePingRequest(line)).toEqual({ peer: KEY_A, timeoutMs: 4000 });
    expect(Buffer.byteLength(`${line}\n`)).toBeLessThan(256);
  });

  it.each([
    ["ping", "no key"],
    [`ping ${KEY_A}`, "no timeout"],
    [`ping AbCd 1000`, "a prefix, not a key"],
    [`ping ${KEY_A} 0`, "zero timeout"],
    [`ping ${KEY_A} 4001`, "timeout too long"],
    [`ping ${KEY_A} 1e3`, "not a plain number"],
    [`ping ${KEY_A} 1000 extra`, "trailing words"],
  ])("refuses %j (%s)", (line) => {
    expect(thrown(() => parsePingRequest(line)).code).toBe("bad-ping-request");
  });
});

function fakePath(kind: PeerPath["kind"], rtt?: number | null): PeerPath & { timeouts: number[] } {
  const timeouts: number[] = [];
  const path = {
    kind,
    remote: "198.51.100.7:40000",
    onDatagram: null,
    send: () => undefined,
    close: () => undefined,
    timeouts,
  };
  if (rtt === undefined) return path;
  return Object.assign(path, {
    probe: async (timeoutMs: number) => {
      timeouts.push(timeoutMs);
      return rtt;
    },
  });
}

function target(path: PeerPath | null, more: Partial<PingTarget> = {}): PingTarget {
  return {
    publicKey: KEY_A,
    state: "connected(direct)",
    path,
    kernel: false,
    handshakeRttMs: null,
    lastHandshake: 0,
    ...more,
  };
}

describe("probePath", () => {
  it("probes an ICE path live, with the caller's timeout", async () => {
    const path = fakePath("direct", 1.23456);
    const answer = await probePath(target(path, { kernel: true }), 750);
    expect(path.timeouts).toEqual([750]);
    expect(answer).toEqual({
      peer: KEY_A,
      state: "connected(direct)",
      path: { kind: "direct", remote: "198.51.100.7:40000", kernel: true },
      live: true,
      rttMs: 1.235,
    });
  });

  it("reports an unanswered probe as a null round trip", async () => {
    const answer = await probePath(target(fakePath("relay", null)), 500);
    expect(answer).toMatchObject({ live: true, rttMs: null, path: { kind: "relay" } });
  });

  it("says so when there is no path", async () => {
    expect(await probePath(target(null, { state: "signalling" }), 500)).toEqual({
      peer: KEY_A,
      state: "signalling",
      path: null,
    });
  });

  it("gives a static path's latest handshake, its age and round trip, as no live probe", async () => {
    const path = fakePath("static");
    const now = () => 1_000_000_000_000;
    const answer = await probePath(
      target(path, {
        state: "connected(static)",
        handshakeRttMs: 12.3456,
        lastHandshake: 1_000_000_000 - 42,
      }),
      500,
      now,
    );
    expect(answer).toMatchObject({ live: false, handshakeRttMs: 12.346, handshakeAgeS: 42 });
    const never = await probePath(target(path), 500, now);
    expect(never).toMatchObject({ live: false, handshakeRttMs: null, handshakeAgeS: null });
  });
});

describe("a ping's probes and liveness", () => {
  it("are not counted: unanswered ones raise no doubt, answered ones do not put off consent renewal", async () => {
    let now = 1_000_000;
    let answers: number | null = null;
    let probes = 0;
    const path = Object.assign(fakePath("direct"), {
      probe: async () => {
        probes++;
        return answers;
      },
    });
    const data = new ProxyPeer(
      KEY_A,
      new Uint8Array(32).fill(7),
      { address: "127.1.2.3", port: 51822 },
      {} as BatchedUdpSocket,
    );
    data.path = path;
    const monitor = new LivenessMonitor(() => [data], { now: () => now, random: () => 0.5 });
    const events: string[] = [];
    for (const event of ["doubt", "suspect", "dead", "quiet"] as const)
      monitor.on(event, () => events.push(event));
    monitor.tick();
    const pingFor = async (ms: number) => {
      for (const end = now + ms; now < end; now += 250) {
        if (now % 1000 === 0) await probePath(target(path), 500);
        monitor.tick();
        await Promise.resolve();
      }
    };
    // Ten seconds of unanswered pings on an idle path: liveness neither probes nor doubts.
    await pingFor(10_000);
    expect(probes).toBe(10);
    expect(monitor.stats.probesSent).toBe(0);
    expect(events).toEqual([]);
    // Answered pings: liveness still renews consent with its own probe at its interval (22.5 s here).
    answers = 2;
    await pingFor(13_000);
    expect(monitor.stats.probesSent).toBe(1);
    expect(events).toEqual([]);
  });
});

describe("what ping prints", () => {
  const direct = { kind: "direct" as const, remote: "198.51.100.7:40000", kernel: true };
  const relay = { kind: "relay" as const, remote: "203.0.113.1:49200", kernel: false };

  it("rounds round trips to about three significant digits", () => {
    expect(formatMs(0.04512)).toBe("0.045");
    expect(formatMs(1.2345)).toBe("1.23");
    expect(formatMs(12.345)).toBe("12.3");
    expect(formatMs(123.45)).toBe("123");
  });

  it("heads with the path kind, kernel when the kernel carries it, and the remote", () => {
    expect(describePath(direct)).toBe("direct (kernel) 198.51.100.7:40000");
    const live: PingAnswer = { peer: KEY_A, state: "connected(direct)", path: direct, live: true, rttMs: 1 };
    expect(formatHeader(live)).toBe(
      `PING ${KEY_A} via direct (kernel) 198.51.100.7:40000: STUN binding requests on the ICE pair`,
    );
    expect(formatHeader({ peer: KEY_A, state: "idle", path: null })).toBe(`PING ${KEY_A}: no path (idle)`);
  });

  it("prints each probe, and a line when the path changed", () => {
    expect(formatProbe({ seq: 1, path: direct, rttMs: 0.5 }, direct, 2000)).toBe(
      "probe 1: answer from 198.51.100.7:40000: time=0.500 ms",
    );
    expect(formatProbe({ seq: 2, path: direct, rttMs: null }, direct, 2000)).toBe(
      "probe 2: no answer within 2000 ms",
    );
    expect(formatProbe({ seq: 3, path: relay, rttMs: 20 }, direct, 2000)).toBe(
      "path changed: relay 203.0.113.1:49200\nprobe 3: answer from 203.0.113.1:49200: time=20.0 ms",
    );
    expect(formatProbe({ seq: 4, path: null, rttMs: null }, relay, 2000)).toBe("probe 4: no path");
  });

  it("sums up sent, received, loss and min/avg/max", () => {
    const results: ProbeResult[] = [
      { seq: 1, path: direct, rttMs: 1 },
      { seq: 2, path: direct, rttMs: null },
      { seq: 3, path: direct, rttMs: 2 },
      { seq: 4, path: null, rttMs: null },
      { seq: 5, path: direct, rttMs: 6 },
    ];
    const summary = summarize(results);
    expect(summary).toEqual({
      sent: 5,
      received: 3,
      lossPercent: 40,
      rtt: { minMs: 1, avgMs: 3, maxMs: 6 },
    });
    expect(formatSummary("AbCd", summary)).toBe(
      "--- AbCd ping statistics ---\n5 probes sent, 3 received, 40% loss, rtt min/avg/max = 1.00/3.00/6.00 ms",
    );
    const lost = summarize([{ seq: 1, path: direct, rttMs: null }]);
    expect(formatSummary("AbCd", lost)).toBe(
      "--- AbCd ping statistics ---\n1 probes sent, 0 received, 100% loss",
    );
  });

  it("labels a static path's report as no live probe and judges it by the handshake's age", () => {
    const base = {
      peer: KEY_A,
      state: "connected(static)",
      path: { kind: "static" as const, remote: "192.0.2.9:51820", kernel: false },
      live: false as const,
    };
    const fresh = { ...base, handshakeRttMs: 4.5, handshakeAgeS: 42 };
    expect(formatStatic(fresh)).toBe(
      `not a live probe: latest handshake 42 s ago, its round trip 4.50 ms\n--- ${KEY_A} ---\nreachable: a handshake under 180 s old`,
    );
    expect(staticReachable(fresh)).toBe(true);
    const stale = { ...base, handshakeRttMs: null, handshakeAgeS: 180 };
    expect(staticReachable(stale)).toBe(false);
    expect(formatStatic(stale)).toMatch(
      /round trip not timed[\s\S]*unreachable: no handshake in the last 180 s/,
    );
    const never = { ...base, handshakeRttMs: null, handshakeAgeS: null };
    expect(staticReachable(never)).toBe(false);
    expect(formatStatic(never)).toMatch(/^not a live probe: no handshake with the peer yet/);
  });
});
