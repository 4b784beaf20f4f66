/** Host names for the URLs the server hands out (STUN), from its options or the client's Host header. */
import { isIPv6 } from "node:net";

const HOST_HEADER = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** The host part of a Host header if it is a plain name or address, for the STUN URL. */
export function hostFromHeader(header: string | undefined): string | undefined {
  if (!header || !HOST_HEADER.test(header)) return undefined;
  if (header.startsWith("[")) return header.slice(0, header.indexOf("]") + 1);
  return header.split(":")[0];
}

export function formatHost(host: string): string {
  return isIPv6(host) ? `[${host}]` : host;
}
