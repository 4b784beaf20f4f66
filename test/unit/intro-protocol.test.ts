import { createHmac, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { classes, Message, methods, parseMessage } from "werift-ice";
import { introServerOptionsFromArgs, parseListen } from "../../intro-server/cli.js";
import { buildBindingResponse } from "../../intro-server/stun.js";
import { issueTurnCredentials } from "../../intro-server/turn-credentials.js";
import { ConfigError } from "../../src/errors.js";
import {
  clientMessageSchemas,
  MAX_PEERS_PER_MESSAGE,
  publicKeySchema,
  serverMessageSchema,
} from "../../src/signalling/protocol.js";
import { TokenBucket } from "../../src/signalling/signalling-rate.js";

const key = () => randomBytes(32).toString("base64");

describe("message schemas", () => {
  it("accept a WireGuard key and nothing like one", () => {
    expect(publicKeySchema.safeParse(key()).success).toBe(true);
    for (const bad of [
      "",
      "abc",
      `${key().slice(0, 43)}`,
      `${key().slice(0, 42)}B=`,
      Buffer.alloc(33).toString("base64"),
    ]) {
      expect(publicKeySchema.safeParse(bad).success).toBe(false);
    }
  });

  it("accept the client messages and reject extra fields, wrong sizes and too many peers", () => {
    const envelope = { n: randomBytes(24).toString("base64"), c: randomBytes(40).toString("base64") };
    expect(clientMessageSchemas.send.safeParse({ type: "send", to: key(), envelope }).success).toBe(true);
    expect(clientMessageSchemas.send.safeParse({ type: "send", to: key(), envelope, x: 1 }).success).toBe(
      false,
    );
    expect(
      clientMessageSchemas.send.safeParse({
        type: "send",
        to: key(),
        envelope: { ...envelope, n: randomBytes(12).toString("base64") },
      }).success,
    ).toBe(false);
    expect(
      clientMessageSchemas.send.safeParse({ type: "send", to: key(), envelope: { ...envelope, c: "%%%%" } })
        .success,
    ).toBe(false);
    const peers = Array.from({ length: MAX_PEERS_PER_MESSAGE }, key);
    expect(clientMessageSchemas.peers.safeParse({ type: "peers", op: "replace", peers }).success).toBe(true);
    expect(
      clientMessageSchemas.peers.safeParse({ type: "peers", op: "replace", peers: [...peers, key()] })
        .success,
    ).toBe(false);
    expect(clientMessageSchemas.peers.safeParse({ type: "peers", op: "merge", peers: [] }).success).toBe(
      false,
    );
    expect(
      clientMessageSchemas.auth.safeParse({ type: "auth", version: 1, publicKey: key(), proof: "AAAA" })
        .success,
    ).toBe(false);
  });

  it("keep 1,000 peers in one message under 64 KiB", () => {
    const peers = Array.from({ length: MAX_PEERS_PER_MESSAGE }, key);
    expect(Buffer.byteLength(JSON.stringify({ type: "peers", op: "add", peers }))).toBeLessThan(64 * 1024);
  });

  it("let the client ignore fields a newer server adds", () => {
    const parsed = serverMessageSchema.parse({ type: "presence", peer: key(), online: true, since: 5 });
    expect(parsed.type).toBe("presence");
  });
});

describe("TURN REST credentials", () => {
  it("are <expiry>:<pseudonym> and base64(HMAC-SHA1(secret, username)), as coturn checks", () => {
    const now = 1_700_000_000_000;
    const client = key();
    const credentials = issueTurnCredentials(
      { urls: ["turn:t.example:3478"], secret: "s3cret", ttlSeconds: 600 },
      client,
      now,
    );
    expect(credentials.username).toMatch(/^1700000600:[0-9a-f]{16}$/);
    expect(credentials.username).not.toContain(client);
    expect(credentials.credential).toBe(
      createHmac("sha1", "s3cret").update(credentials.username).digest("base64"),
    );
    expect(credentials).toMatchObject({ urls: ["turn:t.example:3478"], ttlSeconds: 600 });
  });
});

describe("STUN binding responder codec", () => {
  it("answers a binding request with the source as XOR-MAPPED-ADDRESS and a fingerprint", () => {
    const request = new Message(methods.BINDING, classes.REQUEST);
    const response = buildBindingResponse(request.bytes, { address: "192.0.2.9", port: 40_000 });
    const parsed = parseMessage(response!);
    expect(parsed?.messageClass).toBe(classes.RESPONSE);
    expect(parsed?.transactionId).toEqual(request.transactionId);
    expect(parsed?.getAttributeValue("XOR-MAPPED-ADDRESS")).toEqual(["192.0.2.9", 40_000]);
    expect(parsed?.getAttributeValue("FINGERPRINT")).toBeTypeOf("number");
  });

  it("unmaps IPv4-mapped IPv6 sources", () => {
    const request = new Message(methods.BINDING, classes.REQUEST);
    const parsed = parseMessage(
      buildBindingResponse(request.bytes, { address: "::ffff:192.0.2.9", port: 1 })!,
    );
    expect(parsed?.getAttributeValue("XOR-MAPPED-ADDRESS")).toEqual(["192.0.2.9", 1]);
  });

  it("answers 420 to unknown comprehension-required attributes", () => {
    const request = new Message(methods.BINDING, classes.REQUEST).appendRawAttribute(0x7f01, Buffer.alloc(4));
    const parsed = parseMessage(buildBindingResponse(request.bytes, { address: "192.0.2.9", port: 1 })!);
    expect(parsed?.messageClass).toBe(classes.ERROR);
    expect(parsed?.getAttributeValue("ERROR-CODE")).toEqual([420, "Unknown Attribute"]);
  });

  it("ignores garbage, responses and other methods", () => {
    expect(buildBindingResponse(Buffer.from("hello"), { address: "192.0.2.9", port: 1 })).toBeUndefined();
    expect(buildBindingResponse(randomBytes(200), { address: "192.0.2.9", port: 1 })).toBeUndefined();
    const truncated = new Message(methods.BINDING, classes.REQUEST).appendRawAttribute(
      0x8022,
      Buffer.alloc(8),
    ).bytes;
    expect(
      buildBindingResponse(truncated.subarray(0, truncated.length - 4), { address: "192.0.2.9", port: 1 }),
    ).toBeUndefined();
    const response = new Message(methods.BINDING, classes.RESPONSE).bytes;
    expect(buildBindingResponse(response, { address: "192.0.2.9", port: 1 })).toBeUndefined();
    const allocate = new Message(methods.ALLOCATE, classes.REQUEST).bytes;
    expect(buildBindingResponse(allocate, { address: "192.0.2.9", port: 1 })).toBeUndefined();
  });
});

describe("TokenBucket", () => {
  it("allows the burst, then the refill rate", () => {
    let now = 0;
    const bucket = new TokenBucket(3, 10, () => now);
    expect([bucket.take(), bucket.take(), bucket.take(), bucket.take()]).toEqual([true, true, true, false]);
    now += 100; // one token back
    expect([bucket.take(), bucket.take()]).toEqual([true, false]);
    now += 10_000;
    expect(bucket.take(3)).toBe(true);
    expect(bucket.take(1)).toBe(false);
  });
});

describe("intro-server flags", () => {
  it("parse a full command line", async () => {
    const options = await introServerOptionsFromArgs([
      "--listen",
      "[::1]:8443",
      "--stun-port",
      "3479",
      "--turn-url",
      "turn:turn.example:3478",
      "--turn-url",
      "turns:turn.example:5349",
      "--turn-secret",
      "x",
      "--turn-ttl",
      "600",
    ]);
    expect(options).toMatchObject({
      host: "::1",
      port: 8443,
      stun: { port: 3479 },
      turn: { urls: ["turn:turn.example:3478", "turns:turn.example:5349"], secret: "x", ttlSeconds: 600 },
    });
    expect(await introServerOptionsFromArgs(["--listen", "0.0.0.0:1", "--no-stun"])).toMatchObject({
      stun: false,
    });
    expect(await introServerOptionsFromArgs(["--help"])).toBe("help");
    expect(parseListen("127.0.0.1:0")).toEqual({ host: "127.0.0.1", port: 0 });
  });

  it.each([
    [[], /--listen HOST:PORT is required/],
    [["--listen", "8443"], /--listen wants HOST:PORT/],
    [["--listen", "h:70000"], /port number/],
    [["--listen", "h:1", "--bogus"], /Unknown option/],
    [
      ["--listen", "h:1", "--no-stun", "--stun-port", "1"],
      /either --stun-port\/--stun-alt-port or --no-stun/,
    ],
    [["--listen", "h:1", "--turn-url", "turn:x"], /go together/],
    [["--listen", "h:1", "--turn-secret", "x"], /go together/],
    [["--listen", "h:1", "--turn-url", "http://x", "--turn-secret", "x"], /turn:HOST/],
    [["--listen", "h:1", "--tls-cert", "c.pem"], /--tls-cert and --tls-key go together/],
    [
      ["--listen", "h:1", "--tls-cert", "/nonexistent/c", "--tls-key", "/nonexistent/k"],
      /cannot read --tls-cert/,
    ],
    [["--listen", "h:1", "--turn-url", "turn:x", "--turn-secret", "x", "--turn-ttl", "5"], /--turn-ttl/],
  ])("reject %j with a message saying what to fix", async (argv, message) => {
    const attempt = introServerOptionsFromArgs(argv as string[]);
    await expect(attempt).rejects.toBeInstanceOf(ConfigError);
    await expect(attempt).rejects.toThrow(message);
  });
});
