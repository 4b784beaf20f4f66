// The client's half of the introduction server's authentication: the challenge (protocol version,
// the server's X25519 key, a nonce) answered with a proof of our WireGuard key (signalling-crypto.ts).
import type { KeyAgreement } from "../signalling/key-agreement.js";
import { type ChallengeMessage, type ClientMessage, PROTOCOL_VERSION } from "../signalling/protocol.js";
import { authProof, decodeKey32 } from "../signalling/signalling-crypto.js";

/** The auth frame to send, or why the challenge cannot be answered (the connection is to be closed). */
export type ChallengeAnswer =
  | { ok: true; frame: string }
  | { ok: false; problem: "other-version" | "bad-server-key"; detail: string };

export async function answerChallenge(
  challenge: ChallengeMessage,
  keys: KeyAgreement,
): Promise<ChallengeAnswer> {
  if (challenge.version !== PROTOCOL_VERSION) {
    return { ok: false, problem: "other-version", detail: `server speaks version ${challenge.version}` };
  }
  let serverKey: Buffer;
  let shared: Uint8Array;
  try {
    serverKey = decodeKey32(challenge.serverKey, "server key");
    shared = await keys.x25519(serverKey);
  } catch (error) {
    return { ok: false, problem: "bad-server-key", detail: (error as Error).message };
  }
  const nonce = Buffer.from(challenge.nonce, "base64");
  const proof = authProof(shared, serverKey, nonce, Buffer.from(keys.publicKey, "base64"));
  const auth: ClientMessage = {
    type: "auth",
    version: PROTOCOL_VERSION,
    publicKey: keys.publicKey,
    proof: proof.toString("base64"),
  };
  return { ok: true, frame: JSON.stringify(auth) };
}
