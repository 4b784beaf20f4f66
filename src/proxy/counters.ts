/** Why a datagram was not forwarded. Each has a counter; none is ever logged per packet. */
export const DROP_REASONS = [
  "malformed",
  "bad-mac1",
  "unknown-peer",
  "unknown-index",
  "no-path",
  "foreign-source",
  "send-failed",
  // A held or deferred handshake replaced by a newer one, or made moot (the handshake completed
  // otherwise): not sent, by design, and counted so that every datagram is accounted for.
  "superseded",
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export type DropCounters = Record<DropReason, number>;

export function newDropCounters(): DropCounters {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as DropCounters;
}

/** Traffic counters of one peer (bytes and datagrams each way, as seen by the proxy). */
export interface TrafficCounters {
  txBytes: number;
  txDatagrams: number;
  rxBytes: number;
  rxDatagrams: number;
}

export function newTrafficCounters(): TrafficCounters {
  return { txBytes: 0, txDatagrams: 0, rxBytes: 0, rxDatagrams: 0 };
}
