import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { xchacha20poly1305 } from "@noble/ciphers/chacha.js";
import { describe, expect, it } from "vitest";
import {
  authProof,
  envelopeKey,
  generateX25519KeyPair,
  IntroKeyError,
  publicKeyOf,
  x25519,
  x25519PrivateKeyObject,
  xchachaOpen,
  xchachaSeal,
} from "../../src/signalling/signalling-crypto.js";

const hex = (text: string) => Buffer.from(text.replace(/\s+/g, ""), "hex");

describe("X25519 through node:crypto", () => {
  // RFC 7748 section 6.1
  const alicePrivate = hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  const alicePublic = hex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
  const bobPrivate = hex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
  const bobPublic = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
  const shared = hex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");

  it("matches the RFC 7748 test vector", () => {
    expect(publicKeyOf(alicePrivate)).toBe(alicePublic.toString("base64"));
    expect(publicKeyOf(bobPrivate)).toBe(bobPublic.toString("base64"));
    expect(x25519(x25519PrivateKeyObject(alicePrivate), bobPublic)).toEqual(shared);
    expect(x25519(x25519PrivateKeyObject(bobPrivate), alicePublic)).toEqual(shared);
  });

  it("refuses a low-order public key and keys of the wrong length", () => {
    const own = x25519PrivateKeyObject(randomBytes(32));
    expect(() => x25519(own, Buffer.alloc(32))).toThrow(IntroKeyError);
    expect(() => x25519(own, Buffer.alloc(31, 9))).toThrow(IntroKeyError);
    expect(() => x25519PrivateKeyObject(Buffer.alloc(16))).toThrow(IntroKeyError);
  });
});

describe("XChaCha20-Poly1305 (HChaCha20 + node ChaCha20-Poly1305)", () => {
  it("matches the draft-irtf-cfrg-xchacha A.3.1 vector", () => {
    const key = hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    const nonce = hex("404142434445464748494a4b4c4d4e4f5051525354555657");
    const aad = hex("50515253c0c1c2c3c4c5c6c7");
    const plaintext = Buffer.from(
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.",
    );
    const expected =
      hex(`bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff921f9664c97637da9768812f615c68b13b52e
      c0875924c1c7987947deafd8780acf49`);
    expect(xchachaSeal(key, nonce, plaintext, aad)).toEqual(expected);
    expect(xchachaOpen(key, nonce, expected, aad)).toEqual(plaintext);
  });

  it("agrees with @noble/ciphers xchacha20poly1305 on random inputs", () => {
    for (const size of [0, 1, 63, 64, 65, 300, 4096, 20_000]) {
      const key = randomBytes(32);
      const nonce = randomBytes(24);
      const aad = randomBytes(size % 17);
      const plaintext = randomBytes(size);
      const ours = xchachaSeal(key, nonce, plaintext, aad);
      const noble = xchacha20poly1305(key, nonce, aad).encrypt(plaintext);
      expect(Buffer.from(noble)).toEqual(ours);
      expect(xchachaOpen(key, nonce, Buffer.from(noble), aad)).toEqual(plaintext);
    }
  });

  it("rejects a changed ciphertext, tag, nonce, AAD or key", () => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const aad = Buffer.from("aad");
    const sealed = xchachaSeal(key, nonce, Buffer.from("secret candidates"), aad);
    const flipped = (buffer: Buffer, index: number) => {
      const copy = Buffer.from(buffer);
      copy[index]! ^= 1;
      return copy;
    };
    expect(xchachaOpen(key, nonce, flipped(sealed, 0), aad)).toBeUndefined();
    expect(xchachaOpen(key, nonce, flipped(sealed, sealed.length - 1), aad)).toBeUndefined();
    expect(xchachaOpen(key, flipped(nonce, 20), sealed, aad)).toBeUndefined();
    expect(xchachaOpen(key, flipped(nonce, 3), sealed, aad)).toBeUndefined();
    expect(xchachaOpen(key, nonce, sealed, Buffer.from("aae"))).toBeUndefined();
    expect(xchachaOpen(randomBytes(32), nonce, sealed, aad)).toBeUndefined();
    expect(xchachaOpen(key, nonce, sealed.subarray(0, 10), aad)).toBeUndefined();
  });
});

describe("X25519 key pairs under garbage collection", () => {
  it("are made without hanging when a collection finalizes the key's own generation job", async () => {
    // Node 20 exported a JWK holding the key's mutex, and a GC meanwhile that finalized the
    // generateKeyPairSync job the key came from locked it again: the process hung for good (within
    // 20,000 pairs with a 1 MiB young generation, GCs every few pairs). A child process, since a
    // deadlocked thread cannot be stopped, only killed.
    const module = new URL("../../src/signalling/signalling-crypto.ts", import.meta.url).href;
    const script = [
      'import { generateKeyPairSync } from "node:crypto";',
      `import { generateX25519KeyPair, rawPublicKey } from ${JSON.stringify(module)};`,
      "for (let i = 0; i < 20000; i++) generateX25519KeyPair();",
      'for (let i = 0; i < 5000; i++) rawPublicKey(generateKeyPairSync("x25519").publicKey);',
      'process.stdout.write("made");',
    ].join("\n");
    const child = spawn(
      process.execPath,
      ["--max-semi-space-size=1", "--import", "tsx", "--input-type=module", "-e", script],
      { stdio: ["ignore", "pipe", "inherit"] },
    );
    let output = "";
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
    });
    const hung = setTimeout(() => child.kill("SIGKILL"), 40_000);
    const exit = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    clearTimeout(hung);
    expect({ exit, output }).toEqual({ exit: 0, output: "made" });
  });
});

describe("authentication proof", () => {
  it("is computed alike from either half of the DH and binds nonce, server key and client key", () => {
    const clientPrivate = randomBytes(32);
    const clientPublic = Buffer.from(publicKeyOf(clientPrivate), "base64");
    const server = generateX25519KeyPair();
    const nonce = randomBytes(32);
    const clientSide = authProof(
      x25519(x25519PrivateKeyObject(clientPrivate), server.publicKey),
      server.publicKey,
      nonce,
      clientPublic,
    );
    const serverShared = x25519(server.privateKey, clientPublic);
    expect(authProof(serverShared, server.publicKey, nonce, clientPublic)).toEqual(clientSide);
    expect(authProof(serverShared, server.publicKey, randomBytes(32), clientPublic)).not.toEqual(clientSide);
    const otherClient = Buffer.from(publicKeyOf(randomBytes(32)), "base64");
    expect(authProof(serverShared, server.publicKey, nonce, otherClient)).not.toEqual(clientSide);
  });
});

describe("envelope keys", () => {
  it("are the same on both sides and differ per direction", () => {
    const a = randomBytes(32);
    const b = randomBytes(32);
    const aPublic = Buffer.from(publicKeyOf(a), "base64");
    const bPublic = Buffer.from(publicKeyOf(b), "base64");
    const sharedA = x25519(x25519PrivateKeyObject(a), bPublic);
    const sharedB = x25519(x25519PrivateKeyObject(b), aPublic);
    const aToB = envelopeKey(sharedA, aPublic, bPublic);
    expect(envelopeKey(sharedB, aPublic, bPublic)).toEqual(aToB);
    expect(envelopeKey(sharedA, bPublic, aPublic)).not.toEqual(aToB);
    expect(aToB).toHaveLength(32);
  });
});
