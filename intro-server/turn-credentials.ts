/**
 * TURN REST API credentials (draft-uberti-behave-turn-rest), the scheme coturn checks with
 * `use-auth-secret` / `static-auth-secret`: username = "<expiry unix seconds>:<user id>",
 * credential = base64(HMAC-SHA1(shared secret, username)).
 */
import { createHash, createHmac } from "node:crypto";
import type { TurnCredentials } from "../src/signalling/protocol.js";

/**
 * The longest a credential lives, whatever `--turn-ttl` says: a credential outlives its key's
 * membership by at most this (coturn checks the expiry on every request, Refresh included).
 */
export const MAX_TURN_TTL_SECONDS = 86_400;

export interface TurnIssuerOptions {
  urls: string[];
  secret: string;
  ttlSeconds: number;
}

export function issueTurnCredentials(
  options: TurnIssuerOptions,
  clientPublicKey: string,
  nowMs = Date.now(),
): TurnCredentials {
  const ttlSeconds = Math.min(options.ttlSeconds, MAX_TURN_TTL_SECONDS);
  const expiresAt = Math.floor(nowMs / 1000) + ttlSeconds;
  // A pseudonym rather than the key itself: TURN servers log usernames.
  const userId = createHash("sha256").update(clientPublicKey).digest("hex").slice(0, 16);
  const username = `${expiresAt}:${userId}`;
  const credential = createHmac("sha1", options.secret).update(username).digest("base64");
  return { urls: [...options.urls], username, credential, ttlSeconds };
}

export interface IssuedTurnCredentials {
  credentials: TurnCredentials;
  issuedAtMs: number;
}

/**
 * The answer to `turn-refresh`: the credentials already held while more than half of their lifetime
 * is left (the client asks at 80%), fresh ones after that. Asking often does not extend anything.
 */
export function refreshTurnCredentials(
  options: TurnIssuerOptions,
  clientPublicKey: string,
  held: IssuedTurnCredentials | undefined,
  nowMs = Date.now(),
): IssuedTurnCredentials {
  if (held && nowMs - held.issuedAtMs < (held.credentials.ttlSeconds * 1000) / 2) return held;
  return { credentials: issueTurnCredentials(options, clientPublicKey, nowMs), issuedAtMs: nowMs };
}
