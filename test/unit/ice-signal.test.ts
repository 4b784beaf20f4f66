import { describe, expect, it } from "vitest";
import { MAX_REMOTE_CANDIDATES, parseCandidate, parseIceSignal } from "../../src/ice/ice-signal.js";

const epoch = "0123456789abcdef";
const ufrag = "a1b2c3d4";
const pwd = "0123456789abcdef0123456789abcdef";
const host = "626da4e5384a0ce2d0d93678a 1 udp 2116026367 192.0.2.7 58017 typ host generation 0 ufrag 8bf5";
const srflx = "d2a0 1 udp 1694498815 203.0.113.9 40000 typ srflx raddr 192.0.2.7 rport 58017";
const relay = "f00d 1 udp 16777215 2001:db8::5 3479 typ relay raddr 203.0.113.9 rport 40001 generation 3";

describe("parseCandidate", () => {
  it("accepts werift's host, srflx and relay lines", () => {
    expect(parseCandidate(host)).toMatchObject({ host: "192.0.2.7", port: 58017, type: "host" });
    expect(parseCandidate(srflx)).toMatchObject({ host: "203.0.113.9", port: 40000, type: "srflx" });
    expect(parseCandidate(relay)).toMatchObject({ host: "2001:db8::5", port: 3479, type: "relay" });
  });

  it.each([
    ["a hostname (werift would resolve it with DNS)", "f 1 udp 1 peer.example.com 1 typ host"],
    ["an mDNS name (werift would query mDNS)", "f 1 udp 1 abcd.local 1 typ host"],
    ["TCP", "f 1 tcp 1 192.0.2.1 1 typ host tcptype passive"],
    ["component 2", "f 2 udp 1 192.0.2.1 1 typ host"],
    ["prflx (never signalled)", "f 1 udp 1 192.0.2.1 1 typ prflx"],
    ["port 0", "f 1 udp 1 192.0.2.1 0 typ host"],
    ["port 65536", "f 1 udp 1 192.0.2.1 65536 typ host"],
    ["priority 0", "f 1 udp 0 192.0.2.1 1 typ host"],
    ["a huge priority", "f 1 udp 99999999999 192.0.2.1 1 typ host"],
    ["a missing typ", "f 1 udp 1 192.0.2.1 1 xx host"],
    ["an unknown extension", "f 1 udp 1 192.0.2.1 1 typ host network-id 1"],
    ["a dangling key", "f 1 udp 1 192.0.2.1 1 typ host raddr"],
    ["a bad raddr", "f 1 udp 1 192.0.2.1 1 typ srflx raddr x rport 1"],
    ["too few fields", "f 1 udp 1 192.0.2.1 1 typ"],
    ["a foundation with spaces smuggled as tabs", "f\t1 1 udp 1 192.0.2.1 1 typ host"],
    ["an overlong line", `f 1 udp 1 192.0.2.1 1 typ host ufrag ${"a".repeat(300)}`],
  ])("rejects %s", (_what, line) => {
    expect(parseCandidate(line)).toBeNull();
  });
});

describe("parseIceSignal", () => {
  it("accepts every message type", () => {
    const messages = [
      { t: "offer", epoch, generation: 0, ufrag, pwd },
      { t: "answer", epoch, generation: 2, ufrag, pwd, candidates: [host, srflx], endOfCandidates: true },
      { t: "candidate", epoch, generation: 1, candidate: relay },
      { t: "end-of-candidates", epoch, generation: 1 },
      { t: "restart", epoch, generation: 4, reason: "suspect: no handshake" },
      { t: "restart", reason: "start" },
    ];
    for (const m of messages) expect(parseIceSignal(m)).toEqual(m);
  });

  it("strips unknown fields (forward compatible) but keeps the known ones", () => {
    expect(parseIceSignal({ t: "end-of-candidates", epoch, generation: 1, future: true })).toEqual({
      t: "end-of-candidates",
      epoch,
      generation: 1,
    });
  });

  it.each([
    ["null", null],
    ["a string", "offer"],
    ["an array", [1, 2]],
    ["an unknown type", { t: "bye", epoch, generation: 0 }],
    ["no type", { epoch, generation: 0 }],
    ["a short ufrag", { t: "offer", epoch, generation: 0, ufrag: "abc", pwd }],
    ["a short pwd", { t: "offer", epoch, generation: 0, ufrag, pwd: "short" }],
    ["a pwd with forbidden characters", { t: "offer", epoch, generation: 0, ufrag, pwd: `${pwd}"<>` }],
    ["a negative generation", { t: "end-of-candidates", epoch, generation: -1 }],
    ["a fractional generation", { t: "end-of-candidates", epoch, generation: 1.5 }],
    ["a string generation", { t: "end-of-candidates", epoch, generation: "1" }],
    ["a huge generation", { t: "end-of-candidates", epoch, generation: 2 ** 40 }],
    ["a bad epoch", { t: "end-of-candidates", epoch: "xyz", generation: 0 }],
    [
      "a bad candidate",
      { t: "candidate", epoch, generation: 0, candidate: "f 1 udp 1 evil.example 1 typ host" },
    ],
    [
      "a candidate that is not a string",
      { t: "candidate", epoch, generation: 0, candidate: { host: "1.2.3.4" } },
    ],
    [
      "too many candidates",
      {
        t: "offer",
        epoch,
        generation: 0,
        ufrag,
        pwd,
        candidates: Array(MAX_REMOTE_CANDIDATES + 1).fill(host),
      },
    ],
    [
      "one bad candidate among good ones",
      { t: "offer", epoch, generation: 0, ufrag, pwd, candidates: [host, "x"] },
    ],
    ["a long restart reason", { t: "restart", reason: "x".repeat(65) }],
    ["a restart reason with markup", { t: "restart", reason: "<script>" }],
  ])("rejects %s", (_what, input) => {
    expect(parseIceSignal(input)).toBeNull();
  });

  it("survives hostile objects without throwing", () => {
    const throwing = new Proxy(
      {},
      {
        get() {
          throw new Error("boom");
        },
      },
    );
    expect(() => parseIceSignal(throwing)).not.toThrow();
    expect(parseIceSignal(Object.create(null))).toBeNull();
    expect(parseIceSignal(JSON.parse('{"t":"offer","__proto__":{"epoch":"0123456789abcdef"}}'))).toBeNull();
  });
});
