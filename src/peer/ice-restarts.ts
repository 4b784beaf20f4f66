/**
 * Why a peer restarted ICE, as a small fixed set (a metrics label must not carry free text), and how
 * often for each. The free-text reason still goes to the ICE session and its log lines.
 */
export const ICE_RESTART_REASONS = [
  /** A fresh controlled session asks the controlling side for an offer. */
  "new-session",
  /** WireGuard holds a handshake and the peer has no path. */
  "initiation-held",
  /** Liveness judged the path in use suspect. */
  "path-suspect",
  /** Our addresses or routes changed. */
  "network-changed",
  /** Our signalling went unanswered; the link to the introduction server was replaced. */
  "signalling-stalled",
  /** One of us was away from the introduction server while an attempt was under way. */
  "signalling-reconnected",
  /** The peer came back online and its path is gone or does not answer. */
  "peer-online-again",
  /** The retry after a failed attempt (backoff). */
  "retry",
  /** The controlling side on a relay looks for a direct path. */
  "upgrade",
] as const;
export type IceRestartReason = (typeof ICE_RESTART_REASONS)[number];

export type IceRestartCounts = Record<IceRestartReason, number>;

export function newIceRestartCounts(): IceRestartCounts {
  return Object.fromEntries(ICE_RESTART_REASONS.map((r) => [r, 0])) as IceRestartCounts;
}
