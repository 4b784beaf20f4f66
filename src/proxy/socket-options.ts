import { lookup } from "node:dns";
import { isIP } from "node:net";

/**
 * Socket buffer size we ask for (Linux caps it at net.core.rmem_max / wmem_max, which we never change).
 * Several MiB absorb bursts while the event loop is busy.
 */
export const SOCKET_BUFFER_BYTES = 8 << 20;

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * A dgram `lookup` that answers IP literals at once: Node resolves the destination of every `send`,
 * and its default (dns.lookup) defers even a literal to the next tick, about 10 % of the CPU spent per
 * forwarded datagram. Names still go to dns.lookup.
 */
export function ipLiteralLookup(hostname: string, options: unknown, callback: LookupCallback): void {
  const family = isIP(hostname);
  if (family !== 0) {
    callback(null, hostname, family);
    return;
  }
  const wanted =
    typeof options === "number" ? options : ((options as { family?: number } | null)?.family ?? 0);
  lookup(hostname, { family: wanted }, (err, address, resolvedFamily) =>
    callback(err, address, resolvedFamily),
  );
}
