// Real wireguard-go against src/mac1: a live capture must check out like the checked-in fixtures, and
// wireguard-go must accept an initiation from buildInitiation and a response from buildResponse.
// Needs root, wireguard-go, wg and ip; everything runs in a tbt-m1-* namespace on its loopback.
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decodeKey, encodeKey } from "../../src/wireguard/keys.js";
import { Mac1Key } from "../../src/wireguard/mac1.js";
import { MessageType, messageType, receiverIndex } from "../../src/wireguard/messages.js";
import {
  analyseCapture,
  B_PORT,
  type CaptureLab,
  expectedFacts,
  FIXTURES_PATH,
  fixtureMessages,
  type HandshakeFixtures,
  startCaptureLab,
  TEST_KEYS,
} from "../fixtures/capture-handshakes.js";
import { nsRun, teardownAll } from "../lab/netns.js";
import { startWireGuard, uniqueInterfaceName } from "../lab/wireguard.js";
import {
  buildResponse,
  decryptInitiatorStatic,
  generateKeyPair,
  initiateHandshake,
  openResponse,
} from "../support/noise.js";
import { waitFor } from "../support/wait-for.js";

type Capture = Awaited<ReturnType<CaptureLab["handshake"]>>;

describe("handshakes of real wireguard-go", () => {
  let lab: CaptureLab | undefined;
  let live: Capture;
  /** Datagrams that arrive on the relay sockets the lab does not forward (2 and 3). */
  const extra: { socket: number; from: number; data: Uint8Array }[] = [];

  beforeAll(async () => {
    lab = await startCaptureLab(2);
    const forward = lab.relay.onDatagram;
    lab.relay.onDatagram = (socket, from, data) => {
      if (socket >= 2) extra.push({ socket, from, data });
      else forward?.(socket, from, data);
    };
    live = await lab.handshake();
  });

  afterAll(async () => {
    try {
      await lab?.close();
    } finally {
      await teardownAll();
    }
  });

  it("a live capture verifies, identifies and decrypts", () => {
    const { timestampSeconds, ...facts } = analyseCapture(TEST_KEYS, live);
    expect(facts).toEqual(expectedFacts(TEST_KEYS.initiator.publicKey));
    expect(Math.abs((timestampSeconds ?? 0) - Date.now() / 1000)).toBeLessThan(60);
  });

  it("the checked-in fixtures check out the same way", () => {
    const fixtures = JSON.parse(readFileSync(FIXTURES_PATH, "utf8")) as HandshakeFixtures;
    const { timestampSeconds: _, ...facts } = analyseCapture(fixtures, fixtureMessages(fixtures));
    expect(facts).toEqual(expectedFacts(fixtures.initiator.publicKey));
  });

  it("wireguard-go answers an initiation from buildInitiation, and its response opens", async () => {
    const senderIndex = 0x7e570001;
    // wireguard-go drops initiations from one peer less than 20 ms apart and ones not newer than the last.
    await new Promise((r) => setTimeout(r, 50));
    const { message, state } = initiateHandshake({
      initiatorPrivateKey: decodeKey(TEST_KEYS.initiator.privateKey),
      responderPublicKey: decodeKey(TEST_KEYS.responder.publicKey),
      senderIndex,
    });
    lab!.relay.send(2, B_PORT, message);
    const isAnswer = (d: (typeof extra)[number]) =>
      d.socket === 2 && messageType(d.data) === MessageType.Response && receiverIndex(d.data) === senderIndex;
    await waitFor(() => extra.some(isAnswer), { what: "wireguard-go's response", timeoutMs: 5000 });
    const response = extra.find(isAnswer)!.data;
    expect(openResponse(state, response)).toBe(true);
    const tampered = response.slice();
    tampered[50]! ^= 1;
    expect(openResponse(state, tampered)).toBe(false);
  });

  it("wireguard-go accepts a response from buildResponse and sends data under it", async () => {
    const ns = lab!.ns;
    const c = generateKeyPair(); // a wireguard-go initiator
    const d = generateKeyPair(); // a peer that only this test plays
    const cPort = 51003;
    const iface = await startWireGuard(
      ns,
      {
        privateKey: encodeKey(c.privateKey),
        listenPort: cPort,
        address: "10.202.0.1/32",
        peers: [
          {
            publicKey: encodeKey(d.publicKey),
            allowedIps: "10.202.1.0/24",
            endpoint: `127.0.0.1:${lab!.relay.ports[3]}`,
          },
        ],
      },
      uniqueInterfaceName("tbm1c"),
    );
    try {
      await nsRun(ns, "ip", ["route", "add", "10.202.1.0/24", "dev", iface.name, "src", "10.202.0.1"]);
      const ourIndex = 0x5eed1234;
      const answered = new Set<number>();
      const transport = () =>
        extra.find(
          (x) =>
            x.socket === 3 &&
            messageType(x.data) === MessageType.Transport &&
            receiverIndex(x.data) === ourIndex,
        );
      await waitFor(
        async () => {
          extra.forEach((x, i) => {
            if (x.socket !== 3 || answered.has(i) || messageType(x.data) !== MessageType.Initiation) return;
            answered.add(i);
            expect(new Mac1Key(d.publicKey).verify(x.data)).toBe(true);
            expect(encodeKey(decryptInitiatorStatic(d.privateKey, x.data)!)).toBe(encodeKey(c.publicKey));
            const response = buildResponse({
              responderPrivateKey: d.privateKey,
              initiation: x.data,
              senderIndex: ourIndex,
            });
            lab!.relay.send(3, x.from, response);
          });
          if (transport()) return true;
          await nsRun(ns, "ping", ["-c", "1", "-W", "1", "10.202.1.5"]).catch(() => undefined);
          return false;
        },
        {
          what: "a transport message from wireguard-go under our response",
          timeoutMs: 20_000,
          intervalMs: 50,
        },
      );
      expect(answered.size).toBeGreaterThan(0);
      expect(transport()!.from).toBe(cPort);
    } finally {
      await iface.stop();
    }
  });
});
