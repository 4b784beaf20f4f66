// What an IntroClient takes (its options) and tells (its events): the client's interface, apart from
// the connection logic in intro-client.ts.
import type { Logger } from "../log.js";
import type { EnvelopeCodecOptions, EnvelopeDropReason } from "../signalling/envelope.js";
import type { KeyAgreement } from "../signalling/key-agreement.js";
import type { ServerInfo } from "../signalling/protocol.js";
import type { IntroHostResolver } from "./server-list.js";

export interface IntroClientEvents {
  connected: [serverInfo: ServerInfo];
  /** cause: the transport error or the close code and reason, as status shows it; server: which one. */
  disconnected: [closed: { code: number; reason: string; cause: string; server: string }];
  "peer-online": [peer: string];
  "peer-offline": [peer: string];
  envelope: [peer: string, payload: unknown];
  /** An envelope was not delivered to the application: tampered, stale, replayed, ... */
  "envelope-dropped": [peer: string, reason: EnvelopeDropReason | "undeclared-peer"];
  /** The server could not deliver an envelope we sent (peer went offline meanwhile). */
  undeliverable: [peer: string];
  /** Fresh TURN credentials arrived. */
  "server-info": [serverInfo: ServerInfo];
}

export interface IntroClientOptions {
  /**
   * ws:// or wss:// URL of the introduction server, or several: one is used at a time, the next when
   * it goes away (src/intro-client/server-list.ts); a name with several addresses counts as several.
   */
  url: string | readonly string[];
  /** Resolves host names (default: the system's resolver). */
  resolveHost?: IntroHostResolver;
  /**
   * Hold envelopes while moving between servers instead of refusing them (see outbox.ts): send() to a
   * peer that was online when the connection ended does not throw; it goes out once both are back.
   */
  holdWhileMoving?: boolean;
  /** X25519 with the WireGuard private key (which may live in another process). */
  keys: KeyAgreement;
  /** If given, must be the public key of `keys` (a cheap guard against mixed-up keys). */
  publicKey?: string;
  logger?: Logger;
  /** Backoff of reconnects; `notMemberRetryMs`: the interval while the server does not serve our key. */
  reconnect?: { initialDelayMs?: number; maxDelayMs?: number; notMemberRetryMs?: number };
  /** Give up on an attempt that has not authenticated within this time. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Queued outgoing messages beyond which send() throws. Default 5,000. */
  maxQueuedMessages?: number;
  envelope?: Omit<EnvelopeCodecOptions, "keys">;
  /** Extra trust for wss:// (e.g. a private CA). */
  tls?: { ca?: string | Buffer };
}
