/**
 * TURN REST API credentials (draft-uberti-behave-turn-rest), the scheme coturn checks with
 * `use-auth-secret` / `static-auth-secret`: username = "<expiry unix seconds>:<user id>",
 * credential = base64(HMAC-SHA1(shared secret, username)).
 */
import { createHash, createHmac } from "node:crypto";
import type { TurnCredentials } from "../src/signalling/protocol.js";

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
  const expiresAt = Math.floor(nowMs / 1000) + options.ttlSeconds;
  // A pseudonym rather than the key itself: TURN servers log usernames.
  const userId = createHash("sha256").update(clientPublicKey).digest("hex").slice(0, 16);
  const username = `${expiresAt}:${userId}`;
  const credential = createHmac("sha1", options.secret).update(username).digest("base64");
  return { urls: [...options.urls], username, credential, ttlSeconds: options.ttlSeconds };
}
