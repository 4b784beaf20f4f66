import { isIP } from "node:net";
import { ConfigError } from "../errors.js";

/** A peer's real endpoint as the user gave it: an IP literal or a hostname, and a port. */
export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/** Parses "1.2.3.4:51820", "[2001:db8::1]:51820" or "peer.example.net:51820". */
export function parseEndpoint(text: string): Endpoint {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9._-]+)):(\d{1,5})$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2];
  const port = Number(match?.[3]);
  if (!match || !host || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError("bad-endpoint", `endpoint "${text}" is not HOST:PORT (IPv6 as [ADDR]:PORT)`, {
      endpoint: text,
    });
  }
  if (match[1] && isIP(host) !== 6) {
    throw new ConfigError("bad-endpoint", `endpoint "${text}": only IPv6 addresses go in brackets`, {
      endpoint: text,
    });
  }
  return { host, port };
}

export function formatEndpoint(e: { host: string; port: number }): string {
  return isIP(e.host) === 6 ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

/** True for 127.0.0.0/8 and ::1: such an endpoint is ours (or the user's catch-all), never a real peer. */
export function isLoopbackHost(host: string): boolean {
  return host.startsWith("127.") || host === "::1" || host === "localhost";
}
