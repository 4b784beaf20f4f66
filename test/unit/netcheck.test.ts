// netcheck's parts that need no network of their own: TURN targets per transport, the exit code, the
// text, the validation of the running instance's answer; and a whole run against loopback servers.
import { describe, expect, it } from "vitest";
import { startStunResponder } from "../../intro-server/stun.js";
import { createLogger } from "../../src/log.js";
import { formatNetcheck } from "../../src/netcheck/format.js";
import { iceServersAnswerSchema } from "../../src/netcheck/ice-servers.js";
import {
  type NetcheckReport,
  netcheckExitCode,
  runNetcheck,
  turnTargets,
} from "../../src/netcheck/netcheck.js";
import { turnFailureReason } from "../../src/netcheck/turn-check.js";

const notConfigured = { status: "not configured" } as const;
const blocked: NetcheckReport = {
  source: "flags",
  localAddresses: ["10.0.0.2"],
  stun: { servers: ["203.0.113.1:3478", "203.0.113.1:41000"], localPort: 5000, mapped: [null, null] },
  mapping: "unknown",
  udpBlocked: true,
  turn: { udp: notConfigured, tcp: notConfigured, tls: notConfigured },
  mtu: { interface: null, uplink: 1500, wireguard: null, warning: null },
};

describe("turnTargets", () => {
  it("one server per transport; TCP falls back to the UDP URL's server as run does; TLS needs turns:", () => {
    const targets = turnTargets(["turn:t.example:3479"]);
    expect(targets.udp).toMatchObject({ host: "t.example", port: 3479, transport: "udp" });
    expect(targets.tcp).toMatchObject({ host: "t.example", port: 3479, transport: "udp" });
    expect(targets.tls).toBeNull();
    const all = turnTargets(["turns:t.example:5349", "turn:t.example:3479?transport=tcp", "turn:u.example"]);
    expect(all.udp).toMatchObject({ host: "u.example", port: 3478 });
    expect(all.tcp).toMatchObject({ host: "t.example", port: 3479, transport: "tcp" });
    expect(all.tls).toMatchObject({ host: "t.example", port: 5349, transport: "tls" });
  });
});

describe("netcheckExitCode", () => {
  it("1 when UDP is blocked and nothing works", () => {
    expect(netcheckExitCode(blocked)).toBe(1);
  });
  it("0 when UDP works", () => {
    expect(netcheckExitCode({ ...blocked, udpBlocked: false })).toBe(0);
  });
  it("0 when UDP is blocked but TURN over TCP allocates", () => {
    const tcp = {
      status: "ok",
      server: "tcp 203.0.113.1:3479",
      relayed: "203.0.113.1:50000",
      mapped: null,
    } as const;
    expect(netcheckExitCode({ ...blocked, turn: { ...blocked.turn, tcp } })).toBe(0);
  });
});

describe("formatNetcheck", () => {
  it("says UDP is blocked, and each TURN transport's outcome", () => {
    const text = formatNetcheck({
      ...blocked,
      turn: {
        udp: { status: "failed", server: "udp 203.0.113.1:3479", reason: "no allocation within 4 s" },
        tcp: { status: "ok", server: "tcp 203.0.113.1:3479", relayed: "203.0.113.1:50000", mapped: null },
        tls: notConfigured,
      },
    });
    expect(text).toMatch(/^UDP: +blocked \(no STUN answer\)$/m);
    expect(text).toMatch(/^STUN 203\.0\.113\.1:3478 from port 5000: no answer$/m);
    expect(text).toMatch(/^TURN over UDP: failed \(udp 203\.0\.113\.1:3479\): no allocation within 4 s$/m);
    expect(text).toMatch(
      /^TURN over TCP: ok \(tcp 203\.0\.113\.1:3479\): relayed address 203\.0\.113\.1:50000$/m,
    );
    expect(text).toMatch(/^TURN over TLS: not configured$/m);
    expect(text).toMatch(/^MTU: +uplink 1500$/m);
  });

  it("says whether WireGuard's full-size packets fit the uplink, and what to set when not", () => {
    const fits = { interface: "wg0", uplink: 1500, wireguard: 1420, warning: null };
    expect(formatNetcheck({ ...blocked, mtu: fits })).toMatch(
      /^MTU: +uplink 1500, wg0 1420: full-size packets leave in one piece$/m,
    );
    const warning = 'wg0\'s MTU 65456 ... set "MTU = 1420" ...';
    const over = { interface: "wg0", uplink: 1500, wireguard: 65456, warning };
    expect(formatNetcheck({ ...blocked, mtu: over })).toContain(
      `MTU:           uplink 1500, wg0 65456: ${warning}`,
    );
    expect(formatNetcheck({ ...blocked, mtu: null })).toMatch(/^MTU: +not known/m);
  });
});

describe("the running instance's answer", () => {
  it("is validated: extra fields, wrong types and oversized lists are refused", () => {
    expect(iceServersAnswerSchema.safeParse({ stunUrls: ["stun:a:1"], turn: null }).success).toBe(true);
    expect(iceServersAnswerSchema.safeParse({ stunUrls: "stun:a:1", turn: null }).success).toBe(false);
    expect(iceServersAnswerSchema.safeParse({ stunUrls: [], turn: null, more: 1 }).success).toBe(false);
    expect(
      iceServersAnswerSchema.safeParse({ stunUrls: Array(17).fill("stun:a:1"), turn: null }).success,
    ).toBe(false);
    expect(
      iceServersAnswerSchema.safeParse({ stunUrls: [], turn: { urls: ["turn:a"], username: "u" } }).success,
    ).toBe(false);
  });
});

describe("turnFailureReason", () => {
  it("names the server's error code, else the socket's error", () => {
    const response = {
      getAttributeValue: (name: string) => (name === "ERROR-CODE" ? [401, "Unauthorized"] : undefined),
    };
    expect(turnFailureReason({ response })).toBe("error 401 Unauthorized");
    const refused = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:1"), { code: "ECONNREFUSED" });
    expect(turnFailureReason(refused)).toBe("connect ECONNREFUSED 127.0.0.1:1");
  });
});

describe("runNetcheck on loopback", () => {
  it("two answers from the two STUN ports: UDP works, no NAT; TURN not configured", async () => {
    const responder = await startStunResponder({
      host: "127.0.0.1",
      port: 0,
      altPort: 0,
      logger: createLogger("test", "silent"),
    });
    try {
      const report = await runNetcheck({
        source: "flags",
        stunUrls: [`stun:127.0.0.1:${responder.port}`, `stun:127.0.0.1:${responder.altPort}`],
        turn: null,
        timeoutMs: 2000,
      });
      expect(report.udpBlocked).toBe(false);
      expect(report.mapping).toBe("no-nat");
      expect(report.stun?.mapped).toEqual([
        `127.0.0.1:${report.stun?.localPort}`,
        `127.0.0.1:${report.stun?.localPort}`,
      ]);
      expect(report.turn.udp.status).toBe("not configured");
      expect(netcheckExitCode(report)).toBe(0);
    } finally {
      await responder.close();
    }
  });

  it("no answer: UDP blocked, exit 1", async () => {
    const report = await runNetcheck({
      source: "flags",
      stunUrls: ["stun:127.0.0.1:9"],
      turn: null,
      timeoutMs: 300,
    });
    expect(report.udpBlocked).toBe(true);
    expect(netcheckExitCode(report)).toBe(1);
  });
});
