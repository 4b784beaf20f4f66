import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { formatEndpoint, isLoopbackHost, parseEndpoint } from "../../src/proxy/endpoint.js";

describe("parseEndpoint", () => {
  it("parses IPv4, IPv6 and hostnames", () => {
    expect(parseEndpoint("192.0.2.1:51820")).toEqual({ host: "192.0.2.1", port: 51820 });
    expect(parseEndpoint("[2001:db8::1]:443")).toEqual({ host: "2001:db8::1", port: 443 });
    expect(parseEndpoint("peer.example.net:1")).toEqual({ host: "peer.example.net", port: 1 });
  });

  it.each(["", "1.2.3.4", "1.2.3.4:0", "1.2.3.4:65536", "2001:db8::1:80", "[host]:80", "a b:80", ":80"])(
    "rejects %j with a ConfigError",
    (text) => {
      expect(() => parseEndpoint(text)).toThrow(ConfigError);
    },
  );

  it("formats back, bracketing IPv6", () => {
    expect(formatEndpoint({ host: "2001:db8::1", port: 1 })).toBe("[2001:db8::1]:1");
    expect(formatEndpoint({ host: "10.0.0.1", port: 2 })).toBe("10.0.0.1:2");
  });

  it("knows loopback hosts", () => {
    expect(isLoopbackHost("127.4.5.6")).toBe(true);
    expect(isLoopbackHost("::1")).toBe(true);
    expect(isLoopbackHost("128.0.0.1")).toBe(false);
  });
});
