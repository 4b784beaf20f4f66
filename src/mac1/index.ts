// Public API of src/mac1: WireGuard message codec, BLAKE2s, mac1/mac2, peer identification by mac1,
// and the Noise IK first message.
export * from "./blake2s.js";
export { checkKey, decodeKey, encodeKey, KEY_LENGTH } from "./keys.js";
export * from "./mac1.js";
export * from "./messages.js";
export {
  buildInitiation,
  buildResponse,
  CONSTRUCTION,
  decryptInitiation,
  decryptInitiatorStatic,
  generateKeyPair,
  IDENTIFIER,
  type InitiationOptions,
  type InitiatorState,
  initiateHandshake,
  openResponse,
  publicKeyFromPrivate,
  type ResponseOptions,
  tai64n,
} from "./noise.js";
export { PeerKeyTable } from "./peer-key-table.js";
