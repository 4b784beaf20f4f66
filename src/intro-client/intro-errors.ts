import { TunnelboreError } from "../errors.js";
import { keyFingerprint } from "../signalling/protocol.js";

/** send() while not connected to the server, or while the peer is not online there. */
export class IntroOfflineError extends TunnelboreError {
  constructor(
    readonly peer: string,
    readonly reason: "disconnected" | "peer-offline",
  ) {
    super(
      "intro-offline",
      reason === "disconnected"
        ? "not connected to the introduction server"
        : `peer ${keyFingerprint(peer)}… is not online at the introduction server`,
      { peer, reason },
    );
  }
}

/** send() with a payload too large for one message, or faster than the queue can hold. */
export class IntroSendError extends TunnelboreError {}
