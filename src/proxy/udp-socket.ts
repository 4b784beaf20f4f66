import { createSocket, type Socket } from "node:dgram";
import { lookup } from "node:dns";
import { isIP } from "node:net";
import { ConfigError } from "../errors.js";

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

export interface BindUdpSocketOptions {
  address: string;
  /** 0 for any free port. */
  port: number;
  /** What the socket is for, named in errors ("catch-all", "loopback", ...). */
  role: string;
  /** Default "udp4". */
  type?: "udp4" | "udp6";
  /** dgram's `exclusive` bind flag; default false (dgram's default). */
  exclusive?: boolean;
  /** Resolve destinations with `ipLiteralLookup` (default true); false keeps dgram's dns.lookup. */
  fastLookup?: boolean;
}

/**
 * The one way Tunnelbore opens a UDP socket: big buffers, `ipLiteralLookup`, bound before it is returned.
 * On failure the socket is closed and the promise rejects with a ConfigError: `port-busy` when the
 * address is in use (another tunnelbore, or a wrong --listen), else `bind-failed`.
 */
export async function bindUdpSocket(options: BindUdpSocketOptions): Promise<Socket> {
  const { address, port, role, type = "udp4", exclusive = false, fastLookup = true } = options;
  const socket = createSocket({
    type,
    recvBufferSize: SOCKET_BUFFER_BYTES,
    sendBufferSize: SOCKET_BUFFER_BYTES,
    ...(fastLookup ? { lookup: ipLiteralLookup } : {}),
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      socket.close();
      reject(bindError(err, role, address, port));
    };
    socket.once("error", onError);
    socket.bind({ address, port, exclusive }, () => {
      socket.off("error", onError);
      resolve();
    });
  });
  return socket;
}

/**
 * The ConfigError for a socket that could not be bound: `port-busy` when the address is in use, else
 * `bind-failed`. A busy or unbindable address is the user's to fix (another tunnelbore, or a wrong --listen).
 */
export function bindError(
  err: NodeJS.ErrnoException,
  role: string,
  address: string,
  port: number,
): ConfigError {
  return new ConfigError(
    err.code === "EADDRINUSE" ? "port-busy" : "bind-failed",
    err.code === "EADDRINUSE"
      ? `${role} address ${address}:${port} is already in use (is another tunnelbore running? see --listen)`
      : `cannot bind ${role} socket ${address}:${port}: ${err.message}`,
    { address, port, role },
    { cause: err },
  );
}
