import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { parseIceServerUrl, weriftOptionSets } from "../../src/ice/ice-server-url.js";

function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error("did not throw");
}

const turn = (...urls: string[]) => ({ urls, username: "1700000000:peer", credential: "c2VjcmV0" });
const nothingExcluded = () => false;

describe("parseIceServerUrl", () => {
  it("parses stun, turn and turns URLs with default ports", () => {
    expect(parseIceServerUrl("stun:stun.example.net")).toEqual({
      scheme: "stun",
      host: "stun.example.net",
      port: 3478,
      transport: "udp",
    });
    expect(parseIceServerUrl("turn:192.0.2.1:3479?transport=tcp")).toMatchObject({
      port: 3479,
      transport: "tcp",
    });
    expect(parseIceServerUrl("turn:[2001:db8::1]")).toMatchObject({ host: "2001:db8::1", transport: "udp" });
    expect(parseIceServerUrl("turns:turn.example.net")).toMatchObject({ port: 5349, transport: "tls" });
  });

  it.each([
    "",
    "http://x",
    "stun:",
    "stun:host:0",
    "stun:host:70000",
    "stun:h?transport=tcp",
    "turn:[x]:1",
    "turns:h?transport=udp",
  ])("rejects %j with a ConfigError coded bad-ice-url", (url) => {
    const err = thrownBy(() => parseIceServerUrl(url));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: "bad-ice-url" });
  });
});

describe("weriftOptionSets", () => {
  it("gives werift no STUN server when none is configured (werift's default would be Google's)", () => {
    const { full } = weriftOptionSets({ stunUrls: [] }, nothingExcluded);
    expect(full.stunServer).toBeUndefined();
    expect(full.turnServer).toBeUndefined();
  });

  it("takes the first STUN URL and prefers TURN over UDP, then TCP, then TLS", () => {
    const { full } = weriftOptionSets(
      {
        stunUrls: ["turn:ignored.example", "stun:stun.example:3479", "stun:second.example"],
        turn: turn("turns:tls.example", "turn:tcp.example?transport=tcp", "turn:udp.example"),
      },
      nothingExcluded,
    );
    expect(full.stunServer).toEqual(["stun.example", 3479]);
    expect(full).toMatchObject({
      turnServer: ["udp.example", 3478],
      turnTransport: "udp",
      turnUsername: "1700000000:peer",
      turnPassword: "c2VjcmV0",
      forceTurn: false,
    });
  });

  it("derives the upgrade options (no TURN) and the TURN-over-TCP options", () => {
    const sets = weriftOptionSets({ stunUrls: [], turn: turn("turn:udp.example") }, nothingExcluded);
    expect(sets.direct.turnServer).toBeUndefined();
    expect(sets.direct.forceTurn).toBe(false);
    expect(sets.relayOverTcp).toMatchObject({ turnServer: ["udp.example", 3478], turnTransport: "tcp" });
    const tls = weriftOptionSets({ stunUrls: [], turn: turn("turns:tls.example") }, nothingExcluded);
    expect(tls.relayOverTcp.turnTransport).toBe("tls");
  });

  it("refuses relay-only ICE without a TURN server (no-turn-server)", () => {
    const err = thrownBy(() => weriftOptionSets({ stunUrls: [], forceRelay: true }, nothingExcluded));
    expect(err).toBeInstanceOf(ConfigError);
    expect(err).toMatchObject({ code: "no-turn-server" });
    const relayOnly = weriftOptionSets(
      { stunUrls: [], forceRelay: true, turn: turn("turn:t.example") },
      () => false,
    );
    expect(relayOnly.full.forceTurn).toBe(true);
  });

  it("never pairs an excluded address, on either side", () => {
    const { full } = weriftOptionSets({ stunUrls: [] }, (address) => address === "10.7.0.1");
    const pair = (local: string, remote: string) =>
      ({ localCandidate: { host: local }, remoteCandidate: { host: remote } }) as Parameters<
        NonNullable<typeof full.filterCandidatePair>
      >[0];
    expect(full.filterCandidatePair?.(pair("192.0.2.1", "198.51.100.1"))).toBe(true);
    expect(full.filterCandidatePair?.(pair("10.7.0.1", "198.51.100.1"))).toBe(false);
    expect(full.filterCandidatePair?.(pair("192.0.2.1", "10.7.0.1"))).toBe(false);
  });

  it("never pairs our relay candidate with the peer's private host candidate (TURN cannot reach it)", () => {
    const { full } = weriftOptionSets({ stunUrls: [] }, nothingExcluded);
    const pair = (local: [string, string], remote: [string, string]) =>
      ({
        localCandidate: { type: local[0], host: local[1] },
        remoteCandidate: { type: remote[0], host: remote[1] },
      }) as Parameters<NonNullable<typeof full.filterCandidatePair>>[0];
    const relay: [string, string] = ["relay", "203.0.113.3"];
    expect(full.filterCandidatePair?.(pair(relay, ["host", "192.168.2.10"]))).toBe(false);
    expect(full.filterCandidatePair?.(pair(relay, ["srflx", "203.0.113.11"]))).toBe(true);
    expect(full.filterCandidatePair?.(pair(relay, ["relay", "203.0.113.3"]))).toBe(true);
    expect(full.filterCandidatePair?.(pair(["host", "192.168.1.10"], ["host", "192.168.2.10"]))).toBe(true);
  });
});
