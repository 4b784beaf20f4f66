/**
 * Turns one WebSocket frame from a client into a validated message, or into the close code and
 * reason that refuse it. Pure: the server decides what to do with either.
 */
import type { RawData } from "ws";
import {
  type ClientMessage,
  type ClientMessageType,
  CloseCode,
  clientMessageSchemas,
} from "../src/signalling/protocol.js";
import { isCanonicalPublicKey, NON_CANONICAL_KEY_REASON } from "./canonical-key.js";

export type FrameVerdict =
  | { ok: true; message: ClientMessage; text: string }
  | { ok: false; code: number; reason: string };

const refuse = (code: number, reason: string): FrameVerdict => ({ ok: false, code, reason });
const NOT_AN_OBJECT = "a message is a JSON object with a string `type`";

/** The frame's bytes as one buffer (ws hands over a buffer, fragments or an ArrayBuffer). */
export function frameBytes(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  return Buffer.concat(Array.isArray(data) ? data : [Buffer.from(data)]);
}

export function parseClientFrame(frame: Buffer): FrameVerdict {
  const text = frame.toString("utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return refuse(CloseCode.malformedJson, "malformed JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return refuse(CloseCode.invalidMessage, NOT_AN_OBJECT);
  }
  const type = (parsed as { type?: unknown }).type;
  if (typeof type !== "string") return refuse(CloseCode.invalidMessage, NOT_AN_OBJECT);
  if (!Object.hasOwn(clientMessageSchemas, type)) {
    return refuse(CloseCode.unknownType, `unknown message type ${JSON.stringify(type.slice(0, 32))}`);
  }
  const messageType = type as ClientMessageType;
  const result = clientMessageSchemas[messageType].safeParse(parsed);
  if (!result.success) {
    const issue = result.error.issues[0];
    const where = issue?.path.length ? issue.path.join(".") : "message";
    return refuse(CloseCode.invalidMessage, `invalid ${messageType}: ${where}: ${issue?.message ?? ""}`);
  }
  const message = result.data as ClientMessage;
  // Keys with bit 255 set pass the schema (they are 32 bytes) but name another key's identity.
  if (message.type === "auth" && !isCanonicalPublicKey(message.publicKey)) {
    return refuse(CloseCode.invalidMessage, `invalid auth: publicKey: ${NON_CANONICAL_KEY_REASON}`);
  }
  if (message.type === "peers" && !message.peers.every(isCanonicalPublicKey)) {
    return refuse(CloseCode.invalidMessage, `invalid peers: peers: ${NON_CANONICAL_KEY_REASON}`);
  }
  return { ok: true, message, text };
}
