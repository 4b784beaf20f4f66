// The checked-in handshake captured from real wireguard-go (test/fixtures/handshakes.json, remade by
// `npx tsx test/fixtures/capture-handshakes.ts`): our mac1, identification and Noise decryption must
// agree with what wireguard-go produced.
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { decodeKey } from "../../src/wireguard/keys.js";
import {
  analyseCapture,
  expectedFacts,
  FIXTURES_PATH,
  fixtureMessages,
  type HandshakeFixtures,
  TEST_KEYS,
} from "../fixtures/capture-handshakes.js";
import { publicKeyFromPrivate } from "../support/noise.js";

const fixtures = JSON.parse(readFileSync(FIXTURES_PATH, "utf8")) as HandshakeFixtures;

describe("checked-in wireguard-go handshake", () => {
  it("uses the published test keys, consistently", () => {
    expect(fixtures.initiator).toEqual(TEST_KEYS.initiator);
    expect(fixtures.responder).toEqual(TEST_KEYS.responder);
    for (const k of [fixtures.initiator, fixtures.responder]) {
      expect(Buffer.from(publicKeyFromPrivate(decodeKey(k.privateKey))).toString("base64")).toBe(k.publicKey);
    }
  });

  it("verifies mac1, identifies both handshake messages and decrypts the initiator's static key", () => {
    const facts = analyseCapture(fixtures, fixtureMessages(fixtures));
    const { timestampSeconds, ...rest } = facts;
    expect(rest).toEqual(expectedFacts(fixtures.initiator.publicKey));
    const captured = Date.parse(fixtures.capturedAt) / 1000;
    expect(Math.abs((timestampSeconds ?? 0) - captured)).toBeLessThan(60);
  });
});
