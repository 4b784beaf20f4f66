// Sends hostile datagrams to one UDP address and prints how many went out as JSON. Run inside a test
// namespace: node --import tsx test/e2e/fuzz-sender.ts HOST PORT COUNT MODE SEED PEER_PUBLIC_KEY
// MODE "catch-all": anything that must be dropped there; "loopback": the same minus the well-formed
// cookie replies and transport messages, which L(P) forwards by design (only the peer can judge them).
import { createSocket } from "node:dgram";
import { setImmediate } from "node:timers/promises";
import { buildInitiation } from "../support/noise.js";

const [
  host = "127.0.0.1",
  portText = "0",
  countText = "0",
  mode = "catch-all",
  seedText = "1",
  peerKey = "",
] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
let seed = Number(seedText) >>> 0 || 1;

/** xorshift32: reproducible from the seed, so a failure can be replayed. */
function rand(): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed;
}
function randInt(n: number): number {
  return rand() % n;
}
function randomBytes(n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = rand() & 0xff;
  return b;
}

const SIZES: Record<number, number> = { 1: 148, 2: 92, 3: 64 };
const template = Buffer.from(
  buildInitiation({
    initiatorPrivateKey: new Uint8Array(32).fill(7),
    responderPublicKey: Buffer.from(peerKey, "base64"),
    senderIndex: 1234,
  }),
);

function hostile(): Buffer {
  switch (randInt(8)) {
    case 0: // random bytes of a random length, up to beyond any MTU
      return randomBytes(randInt(2000));
    case 1: {
      // a handshake of the right type and length whose mac1 is wrong
      const type = 1 + randInt(2);
      const b = randomBytes(SIZES[type] as number);
      b.writeUInt32LE(type, 0);
      return b;
    }
    case 2: {
      // a real initiation with one byte changed where mac1 covers it (or mac1 itself)
      const b = Buffer.from(template);
      const at = randInt(132);
      b[at] = (b[at] as number) ^ (1 + randInt(255));
      return b;
    }
    case 3: // a real initiation, truncated or extended
      return randInt(2)
        ? template.subarray(0, randInt(148))
        : Buffer.concat([template, randomBytes(1 + randInt(64))]);
    case 4: {
      // a known type with a non-zero reserved byte
      const b = randomBytes(SIZES[1 + randInt(3)] as number);
      b[0] = 1 + randInt(3);
      b[1 + randInt(3)] = 1 + randInt(255);
      return b;
    }
    case 5: {
      // an unknown type
      const b = randomBytes(32 + randInt(200));
      b.writeUInt32LE(5 + randInt(250), 0);
      return b;
    }
    case 6: {
      if (mode === "loopback") return randomBytes(randInt(31)); // too short for anything
      // a cookie reply or transport message to an index nobody announced
      const type = 3 + randInt(2);
      const b = randomBytes(type === 3 ? 64 : 32 + randInt(1400));
      b.writeUInt32LE(type, 0);
      return b;
    }
    default: // oversized
      return randomBytes(2000 + randInt(7000));
  }
}

/** Well-formed cookie replies and transport messages, which L(P) forwards by design. */
function forwardedByDesign(b: Buffer): boolean {
  if (b.length < 4 || b[1] !== 0 || b[2] !== 0 || b[3] !== 0) return false;
  return (b[0] === 3 && b.length === 64) || (b[0] === 4 && b.length >= 32);
}

function next(): Buffer {
  for (;;) {
    const b = hostile();
    // A mutated byte 0 can turn an initiation into a well-formed transport message.
    if (mode !== "loopback" || !forwardedByDesign(b)) return b;
  }
}

const socket = createSocket("udp4");
let sent = 0;
let failed = 0;
for (let i = 0; i < count; i++) {
  socket.send(next(), port, host, (err) => {
    if (err) failed++;
    else sent++;
  });
  // Yield now and then so the send queue drains and the receiver keeps up.
  if (i % 256 === 255) await setImmediate();
}
while (sent + failed < count) await setImmediate();
socket.close();
process.stdout.write(`${JSON.stringify({ sent, failed })}\n`);
