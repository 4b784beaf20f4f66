import { isIP } from "node:net";
import { ConfigError } from "../errors.js";

/** Where `--metrics` listens: an IP address (IPv6 in brackets on the command line) and a port. */
export interface MetricsAddress {
  host: string;
  port: number;
}

/**
 * Parses `--metrics HOST:PORT`. HOST must be an IP address: a metrics port bound to a name that
 * resolves elsewhere later would be a surprise. Port 0 is allowed (the kernel picks one; tests).
 */
export function parseMetricsAddress(text: string, errorCode: string): MetricsAddress {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text.trim());
  const host = match?.[1] ?? match?.[2] ?? "";
  const port = Number(match?.[3]);
  const family = isIP(host);
  if (!match || port > 65535 || (match[1] ? family !== 6 : family !== 4)) {
    throw new ConfigError(
      errorCode,
      `--metrics "${text}" is not IP:PORT (e.g. 127.0.0.1:9101, [::1]:9101, 0.0.0.0:9101)`,
      { metrics: text },
    );
  }
  return { host, port };
}
