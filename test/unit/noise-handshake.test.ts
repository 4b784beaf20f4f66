import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/errors.js";
import { decodeKey, encodeKey } from "../../src/wireguard/keys.js";
import { Mac1Key } from "../../src/wireguard/mac1.js";
import {
  InitiationOffset,
  MessageType,
  messageType,
  parseInitiation,
  parseResponse,
} from "../../src/wireguard/messages.js";
import {
  buildInitiation,
  buildResponse,
  decryptInitiation,
  decryptInitiatorStatic,
  generateKeyPair,
  initiateHandshake,
  openResponse,
  publicKeyFromPrivate,
  tai64n,
} from "../support/noise.js";

const hex = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString("hex") : String(b));
const fromHex = (s: string) => new Uint8Array(Buffer.from(s, "hex"));

const initiator = generateKeyPair();
const responder = generateKeyPair();

describe("keys", () => {
  it("derives X25519 public keys (RFC 7748 section 6.1)", () => {
    const alice = fromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
    expect(hex(publicKeyFromPrivate(alice))).toBe(
      "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    );
    expect(hex(publicKeyFromPrivate(initiator.privateKey))).toBe(hex(initiator.publicKey));
  });

  it("decodes and encodes canonical base64 keys only", () => {
    const b64 = encodeKey(responder.publicKey);
    expect(b64).toHaveLength(44);
    expect(hex(decodeKey(b64))).toBe(hex(responder.publicKey));
    const bad = [
      "",
      b64.slice(0, 43),
      `${b64}=`,
      `${b64.slice(0, 42)}B=`, // non-zero padding bits: a second spelling of some key
      `${b64.slice(0, 10)}*${b64.slice(11)}`,
      Buffer.alloc(31).toString("base64"),
    ];
    for (const s of bad) expect(() => decodeKey(s), s).toThrow(ConfigError);
    expect(() => encodeKey(new Uint8Array(31))).toThrow(ConfigError);
  });
});

describe("Noise IK initiation", () => {
  it("builds a well-formed initiation whose mac1 is keyed with the responder and mac2 is zero", () => {
    const msg = buildInitiation({
      initiatorPrivateKey: initiator.privateKey,
      responderPublicKey: responder.publicKey,
      senderIndex: 0xdeadbeef,
    });
    expect(messageType(msg)).toBe(MessageType.Initiation);
    const parsed = parseInitiation(msg);
    expect(parsed.senderIndex).toBe(0xdeadbeef);
    expect(parsed.mac2.every((b) => b === 0)).toBe(true);
    expect(new Mac1Key(responder.publicKey).verify(msg)).toBe(true);
    expect(new Mac1Key(initiator.publicKey).verify(msg)).toBe(false);
  });

  it("round-trips the initiator's static key and timestamp to the responder only", () => {
    const timestamp = tai64n(new Date(1_700_000_000_123));
    const msg = buildInitiation({
      initiatorPrivateKey: initiator.privateKey,
      responderPublicKey: responder.publicKey,
      senderIndex: 1,
      timestamp,
    });
    expect(hex(decryptInitiatorStatic(responder.privateKey, msg))).toBe(hex(initiator.publicKey));
    const full = decryptInitiation(responder.privateKey, msg);
    expect(hex(full?.initiatorStatic)).toBe(hex(initiator.publicKey));
    expect(hex(full?.timestamp)).toBe(hex(timestamp));
    expect(full?.senderIndex).toBe(1);
    expect(decryptInitiatorStatic(initiator.privateKey, msg)).toBeNull();
    expect(decryptInitiatorStatic(generateKeyPair().privateKey, msg)).toBeNull();
  });

  it("returns null for tampered fields and non-initiations", () => {
    const msg = buildInitiation({
      initiatorPrivateKey: initiator.privateKey,
      responderPublicKey: responder.publicKey,
      senderIndex: 2,
    });
    for (const at of [
      InitiationOffset.EPHEMERAL,
      InitiationOffset.STATIC + 5,
      InitiationOffset.STATIC + 47,
    ]) {
      const bad = msg.slice();
      bad[at]! ^= 1;
      expect(decryptInitiatorStatic(responder.privateKey, bad), `byte ${at}`).toBeNull();
    }
    // The timestamp does not protect the static key, but a full decryption needs it.
    const badTime = msg.slice();
    badTime[InitiationOffset.TIMESTAMP]! ^= 1;
    expect(hex(decryptInitiatorStatic(responder.privateKey, badTime))).toBe(hex(initiator.publicKey));
    expect(decryptInitiation(responder.privateKey, badTime)).toBeNull();
    // A low-order ephemeral (all zero) makes DH fail instead of throwing.
    const zeroEphemeral = msg.slice();
    zeroEphemeral.fill(0, InitiationOffset.EPHEMERAL, InitiationOffset.EPHEMERAL + 32);
    expect(decryptInitiatorStatic(responder.privateKey, zeroEphemeral)).toBeNull();
    expect(decryptInitiatorStatic(responder.privateKey, msg.subarray(0, 147))).toBeNull();
    expect(decryptInitiatorStatic(responder.privateKey, new Uint8Array(148))).toBeNull();
    expect(() => decryptInitiatorStatic(new Uint8Array(31), msg)).toThrow(ConfigError);
  });

  it("is deterministic given the ephemeral key and timestamp", () => {
    const opts = {
      initiatorPrivateKey: initiator.privateKey,
      responderPublicKey: responder.publicKey,
      senderIndex: 3,
      ephemeralPrivateKey: generateKeyPair().privateKey,
      timestamp: tai64n(new Date(0)),
    };
    expect(hex(buildInitiation(opts))).toBe(hex(buildInitiation(opts)));
    expect(hex(buildInitiation(opts))).not.toBe(
      hex(buildInitiation({ ...opts, ephemeralPrivateKey: undefined })),
    );
  });
});

describe("Noise IK response", () => {
  it("builds a response the initiator accepts, with and without a preshared key", () => {
    const psk = new Uint8Array(32).fill(9);
    for (const presharedKey of [undefined, psk]) {
      const { message, state } = initiateHandshake({
        initiatorPrivateKey: initiator.privateKey,
        responderPublicKey: responder.publicKey,
        senderIndex: 77,
      });
      const response = buildResponse({
        responderPrivateKey: responder.privateKey,
        initiation: message,
        senderIndex: 88,
        presharedKey,
      });
      const parsed = parseResponse(response);
      expect(parsed.senderIndex).toBe(88);
      expect(parsed.receiverIndex).toBe(77);
      expect(new Mac1Key(initiator.publicKey).verify(response)).toBe(true);
      expect(openResponse(state, response, presharedKey)).toBe(true);
      expect(openResponse(state, response, presharedKey ? undefined : psk)).toBe(false);
      const tampered = response.slice();
      tampered[50]! ^= 1;
      expect(openResponse(state, new Mac1Key(initiator.publicKey).sign(tampered), presharedKey)).toBe(false);
    }
  });

  it("refuses to answer an initiation meant for another key", () => {
    const msg = buildInitiation({
      initiatorPrivateKey: initiator.privateKey,
      responderPublicKey: responder.publicKey,
      senderIndex: 1,
    });
    expect(() =>
      buildResponse({ responderPrivateKey: initiator.privateKey, initiation: msg, senderIndex: 2 }),
    ).toThrow(RangeError);
  });
});

describe("tai64n", () => {
  it("encodes 2^62 + 10 + seconds big endian, then nanoseconds", () => {
    expect(hex(tai64n(new Date(1_500)))).toBe("400000000000000b1dcd6500");
  });
});
