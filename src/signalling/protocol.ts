/**
 * Wire protocol of the introduction server, shared by the server and the client.
 * docs/protocol.md is the prose version of this file; keep the two in step.
 */
import { z } from "zod";

export const PROTOCOL_VERSION = 1;

/** Largest WebSocket message either side accepts (the ws library enforces it per message). */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Keys per `peers` message: 1,000 keys of 44 characters stay well under MAX_MESSAGE_BYTES. */
export const MAX_PEERS_PER_MESSAGE = 1000;
/** Keys one connection may have declared at once. */
export const DEFAULT_MAX_DECLARED_PEERS = 16_384;

/**
 * Close codes the server uses. 1009 (message too big) comes from the ws library itself, which
 * rejects an oversized frame from its header without reading it; every other refusal is ours.
 */
export const CloseCode = {
  normal: 1000,
  messageTooBig: 1009,
  malformedJson: 4000,
  binaryFrame: 4001,
  invalidMessage: 4002,
  unknownType: 4003,
  unexpectedMessage: 4004,
  authFailed: 4005,
  authTimeout: 4006,
  idleTimeout: 4007,
  rateLimited: 4008,
  tooManyPeers: 4009,
  replaced: 4010,
  serverShutdown: 4011,
  unsupportedVersion: 4012,
  /** The key authenticated but is not (or no longer) on the server's allowed list: retry slowly. */
  notMember: 4013,
  /** Too many connections from this address, or in total; the reason says which. */
  tooManyConnections: 4014,
} as const;
export type CloseCodeName = keyof typeof CloseCode;

/** A WireGuard public key: standard base64 of exactly 32 bytes (43 characters, one '='). */
export const publicKeySchema = z
  .string()
  .length(44)
  .regex(/^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/, "not the base64 of a 32-byte key");

/** Canonical standard base64 with padding, bounded so a hostile string cannot be huge. */
const base64 = (maxChars: number) =>
  z
    .string()
    .max(maxChars)
    .regex(/^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/, "not base64");

/** Base64 of an exact byte length (canonical form only). */
const base64OfBytes = (bytes: number) =>
  base64(Math.ceil(bytes / 3) * 4).refine((value) => Buffer.from(value, "base64").length === bytes, {
    message: `must decode to ${bytes} bytes`,
  });

/** An end-to-end encrypted envelope as it travels: the server only ever sees these two fields. */
export const sealedEnvelopeSchema = z.strictObject({
  /** XChaCha20-Poly1305 nonce, 24 random bytes. */
  n: base64OfBytes(24),
  /** Ciphertext and 16-byte tag. */
  c: base64(MAX_MESSAGE_BYTES),
});
export type SealedEnvelope = z.infer<typeof sealedEnvelopeSchema>;

export const turnCredentialsSchema = z.object({
  urls: z.array(z.string().max(512)).max(16),
  username: z.string().max(512),
  credential: z.string().max(512),
  ttlSeconds: z.number().int().positive(),
});
export type TurnCredentials = z.infer<typeof turnCredentialsSchema>;

// ---- client -> server (strict: the server accepts exactly these shapes) ----

export const authMessageSchema = z.strictObject({
  type: z.literal("auth"),
  version: z.number().int(),
  publicKey: publicKeySchema,
  /** HMAC proof of the private key, see signalling-crypto.ts. */
  proof: base64OfBytes(32),
});

export const peersMessageSchema = z.strictObject({
  type: z.literal("peers"),
  /** replace: the declared set becomes exactly `peers`; add/remove: change it by `peers`. */
  op: z.enum(["replace", "add", "remove"]),
  peers: z.array(publicKeySchema).max(MAX_PEERS_PER_MESSAGE),
});

export const sendMessageSchema = z.strictObject({
  type: z.literal("send"),
  to: publicKeySchema,
  envelope: sealedEnvelopeSchema,
});

export const turnRefreshMessageSchema = z.strictObject({ type: z.literal("turn-refresh") });
export const pingMessageSchema = z.strictObject({ type: z.literal("ping") });

export const clientMessageSchemas = {
  auth: authMessageSchema,
  peers: peersMessageSchema,
  send: sendMessageSchema,
  "turn-refresh": turnRefreshMessageSchema,
  ping: pingMessageSchema,
} as const;
export type ClientMessageType = keyof typeof clientMessageSchemas;
export type AuthMessage = z.infer<typeof authMessageSchema>;
export type PeersMessage = z.infer<typeof peersMessageSchema>;
export type SendMessage = z.infer<typeof sendMessageSchema>;
export type ClientMessage =
  | AuthMessage
  | PeersMessage
  | SendMessage
  | z.infer<typeof turnRefreshMessageSchema>
  | z.infer<typeof pingMessageSchema>;

// ---- server -> client (loose: a client ignores fields a newer server adds) ----

export const challengeMessageSchema = z.object({
  type: z.literal("challenge"),
  version: z.number().int(),
  /** The server's X25519 public key for this connection only. */
  serverKey: base64OfBytes(32),
  nonce: base64OfBytes(32),
});

export const welcomeMessageSchema = z.object({
  type: z.literal("welcome"),
  publicKey: publicKeySchema,
  keepaliveSeconds: z.number().positive(),
  stunUrls: z.array(z.string().max(512)).max(16),
  turn: turnCredentialsSchema.optional(),
  limits: z.object({
    maxMessageBytes: z.number().int().positive(),
    maxPeersPerMessage: z.number().int().positive(),
    maxDeclaredPeers: z.number().int().positive(),
    /** The per-connection rate limits (token buckets) the client must stay under. */
    messagesPerSecond: z.number().positive(),
    messageBurst: z.number().positive(),
    bytesPerSecond: z.number().positive(),
    byteBurst: z.number().positive(),
  }),
});

export const presenceMessageSchema = z.object({
  type: z.literal("presence"),
  peer: publicKeySchema,
  online: z.boolean(),
});

export const envelopeMessageSchema = z.object({
  type: z.literal("envelope"),
  from: publicKeySchema,
  envelope: sealedEnvelopeSchema,
});

export const undeliverableMessageSchema = z.object({
  type: z.literal("undeliverable"),
  to: publicKeySchema,
});

export const turnCredentialsMessageSchema = z.object({
  type: z.literal("turn-credentials"),
  turn: turnCredentialsSchema,
});

export const pongMessageSchema = z.object({ type: z.literal("pong") });

export const serverMessageSchema = z.discriminatedUnion("type", [
  challengeMessageSchema,
  welcomeMessageSchema,
  presenceMessageSchema,
  envelopeMessageSchema,
  undeliverableMessageSchema,
  turnCredentialsMessageSchema,
  pongMessageSchema,
]);
export type ServerMessage = z.infer<typeof serverMessageSchema>;
export type ChallengeMessage = z.infer<typeof challengeMessageSchema>;
export type WelcomeMessage = z.infer<typeof welcomeMessageSchema>;
export type PresenceMessage = z.infer<typeof presenceMessageSchema>;
export type EnvelopeMessage = z.infer<typeof envelopeMessageSchema>;
export type UndeliverableMessage = z.infer<typeof undeliverableMessageSchema>;
export type TurnCredentialsMessage = z.infer<typeof turnCredentialsMessageSchema>;

/** What the server tells a client about STUN and TURN. */
export interface ServerInfo {
  stunUrls: string[];
  turn?: TurnCredentials;
}

/** Short, stable text for logs: enough to tell keys apart, nothing more. */
export function keyFingerprint(publicKeyBase64: string): string {
  return publicKeyBase64.slice(0, 8);
}
