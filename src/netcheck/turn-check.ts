// One TURN allocation (RFC 8656 Allocate, with the long-term credentials in use) over UDP, TCP or TLS,
// made with werift-ice's TURN client as `run` makes them, then released: does TURN work from here?
import { isIP } from "node:net";
import { createTurnClient, type TurnProtocol } from "werift-ice";
import { formatAddress } from "../ice/ice-path.js";
import type { IceServerUrl } from "../ice/ice-server-url.js";

export type TurnTransport = "udp" | "tcp" | "tls";

export type TurnCheck =
  | { status: "ok"; server: string; relayed: string; mapped: string | null }
  | { status: "failed"; server: string; reason: string }
  | { status: "not configured" };

export interface TurnCredentials {
  username: string;
  credential: string;
}

/** What a failed allocation says: the server's ERROR-CODE, else the socket's error. */
export function turnFailureReason(err: unknown): string {
  const response = (err as { response?: { getAttributeValue(name: string): unknown } } | null)?.response;
  const code = response?.getAttributeValue("ERROR-CODE");
  if (Array.isArray(code)) return `error ${String(code[0])} ${String(code[1] ?? "")}`.trim();
  const error = err as NodeJS.ErrnoException | null;
  if (error?.code)
    return error.message?.includes(error.code)
      ? error.message
      : `${error.code} ${error.message ?? ""}`.trim();
  if (error?.message) return error.message;
  return String(err);
}

function addressText(address: unknown): string | null {
  if (!Array.isArray(address) || typeof address[0] !== "string" || typeof address[1] !== "number")
    return null;
  return formatAddress(address[0], address[1]);
}

/** Allocates on `url`'s server over `transport`, within `timeoutMs`, and releases the allocation. */
export async function checkTurn(
  url: IceServerUrl,
  transport: TurnTransport,
  credentials: TurnCredentials,
  timeoutMs: number,
): Promise<TurnCheck> {
  const server = `${transport} ${formatAddress(url.host, url.port)}`;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  try {
    // The name as `run` gives it: werift's client picks the address for UDP as it does there (patches/
    // README.md, 4); TCP and TLS connect to the name (TLS checks the certificate against it).
    const allocation = createTurnClient(
      { address: [url.host, url.port], username: credentials.username, password: credentials.credential },
      {
        transport,
        ...(transport === "tls" && !isIP(url.host) ? { tlsOptions: { servername: url.host } } : {}),
      },
    );
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no allocation within ${timeoutMs / 1000} s`));
      }, timeoutMs);
    });
    // One that answers after the deadline is released all the same.
    allocation.then(
      (turn) => (timedOut ? void turn.close().catch(() => undefined) : undefined),
      () => undefined,
    );
    const turn: TurnProtocol = await Promise.race([allocation, deadline]);
    const relayed = addressText(turn.relayedAddress);
    const mapped = addressText(turn.mappedAddress);
    await turn.close().catch(() => undefined);
    if (!relayed) return { status: "failed", server, reason: "no relayed address in the answer" };
    return { status: "ok", server, relayed, mapped };
  } catch (err) {
    return { status: "failed", server, reason: turnFailureReason(err) };
  } finally {
    clearTimeout(timer);
  }
}
