import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { parseIceServerUrl } from "../../src/ice/ice-session.js";

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
  ])("rejects %j with a ConfigError", (url) => {
    expect(() => parseIceServerUrl(url)).toThrow(ConfigError);
  });
});
