// mac1 scanning cost: key checks per second (ours against @noble/hashes in the same run, pre-keyed and
// one-shot) and the time to identify a handshake among 1, 100 and 10,000 peers in the worst case (the
// match is the last key scanned, or there is no match). Rates are per second of CPU time. Run
// standalone: npx tsx bench/mac1.ts
import { blake2s as nobleBlake2s } from "@noble/hashes/blake2.js";
import { Blake2sPrekeyed, blake2s as ourBlake2s } from "../src/wireguard/blake2s.js";
import { Mac1Key, mac1KeyFor } from "../src/wireguard/mac1.js";
import { InitiationOffset } from "../src/wireguard/messages.js";
import { PeerKeyTable } from "../src/wireguard/peer-key-table.js";
import { buildInitiation, buildResponse, generateKeyPair } from "../test/support/noise.js";
import { type BenchRow, formatTable } from "./table.js";

/** This process's CPU time in ms (all threads, so garbage collection helpers count too). */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Calls fn repeatedly for about `ms` after a warm-up; returns calls per second of CPU time. Every loop
 * here is single-threaded and CPU-bound, so on a shared machine CPU time leaves out the time the
 * process spent waiting for a core, which wall time would charge to whichever row was running.
 */
function rate(fn: () => void, ms = 400): number {
  const warmUntil = performance.now() + ms / 4;
  while (performance.now() < warmUntil) fn();
  let calls = 0;
  const start = performance.now();
  const cpuStart = cpuMs();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 16; i++) fn();
    calls += 16;
    now = performance.now();
  }
  return (calls / (cpuMs() - cpuStart)) * 1000;
}

/** Distinct 32-byte public keys without X25519 work: mac1 only hashes them. */
function fakeKey(i: number): Uint8Array {
  const k = new Uint8Array(32);
  const v = new DataView(k.buffer);
  for (let w = 0; w < 8; w++) v.setUint32(w * 4, Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(w + 1, 0x85ebca6b));
  return k;
}

export async function benchMac1(): Promise<BenchRow[]> {
  const responder = generateKeyPair();
  const initiator = generateKeyPair();
  const initiation = buildInitiation({
    initiatorPrivateKey: initiator.privateKey,
    responderPublicKey: responder.publicKey,
    senderIndex: 1,
  });
  const response = buildResponse({ responderPrivateKey: responder.privateKey, initiation, senderIndex: 2 });
  const rows: BenchRow[] = [];

  // Key checks per second: a table of 1000 keys that never match, so every identify checks all.
  const checkKeys = 1000;
  const noMatch = new PeerKeyTable<number>();
  for (let i = 0; i < checkKeys; i++) noMatch.add(fakeKey(i), i);
  let sink = 0;
  const oursInit =
    rate(() => {
      if (noMatch.identify(initiation) !== undefined) sink++;
    }) * checkKeys;
  rows.push({
    name: "key checks, initiation (ours)",
    value: oursInit,
    unit: "checks/s",
    note: "PeerKeyTable, 1000 keys",
  });
  const oursResp =
    rate(() => {
      if (noMatch.identify(response) !== undefined) sink++;
    }) * checkKeys;
  rows.push({
    name: "key checks, response (ours)",
    value: oursResp,
    unit: "checks/s",
    note: "one compression per key",
  });

  const mac1 = new Mac1Key(responder.publicKey);
  rows.push({
    name: "Mac1Key.verify, initiation",
    value: rate(() => {
      if (!mac1.verify(initiation)) sink++;
    }),
    unit: "verifies/s",
    note: "single key, includes parsing",
  });

  // One key, one initiation: our pre-keyed state against @noble/hashes at its best (a keyed state made
  // once and cloned into a reused object per check) and at its simplest (one call with the key).
  // Each must reproduce the initiation's mac1, or the run fails.
  const macKey = mac1KeyFor(responder.publicKey);
  const mac1At = InitiationOffset.MAC1;
  const covered = initiation.subarray(0, mac1At);
  const expected = initiation.subarray(mac1At, mac1At + 16);
  const tag = new Uint8Array(16);
  const tagWrong = () => tag[0] !== expected[0] || tag[15] !== expected[15];
  const prekeyed = new Blake2sPrekeyed(macKey, 16);
  const words = new Int32Array(8);
  const expectedWord = new DataView(expected.buffer, expected.byteOffset).getInt32(0, true);
  const oursOne = rate(() => {
    prekeyed.macWordsInto(initiation, 0, mac1At, words);
    if (words[0] !== expectedWord) sink++;
  });
  rows.push({
    name: "one key, initiation, pre-keyed (ours)",
    value: oursOne,
    unit: "checks/s",
    note: "Blake2sPrekeyed.macWordsInto",
  });
  rows.push({
    name: "one key, initiation, one-shot (ours)",
    value: rate(() => {
      tag.set(ourBlake2s(covered, { key: macKey, outLen: 16 }));
      if (tagWrong()) sink++;
    }),
    unit: "checks/s",
    note: "blake2s(msg, {key}): key block each time",
  });
  const nobleKeyed = nobleBlake2s.create({ key: macKey, dkLen: 16 });
  const nobleScratch = nobleBlake2s.create({ dkLen: 16 });
  const noblePrekeyedRate = rate(() => {
    nobleKeyed._cloneInto(nobleScratch).update(covered).digestInto(tag);
    if (tagWrong()) sink++;
  });
  rows.push({
    name: "one key, initiation, pre-keyed (@noble/hashes)",
    value: noblePrekeyedRate,
    unit: "checks/s",
    note: "keyed state _cloneInto a reused one",
  });
  const nobleRate = rate(() => {
    tag.set(nobleBlake2s(covered, { key: macKey, dkLen: 16 }));
    if (tagWrong()) sink++;
  });
  rows.push({
    name: "one key, initiation, one-shot (@noble/hashes)",
    value: nobleRate,
    unit: "checks/s",
    note: "blake2s(msg, {key, dkLen})",
  });
  rows.push({
    name: "speed-up over @noble/hashes pre-keyed",
    value: oursOne / noblePrekeyedRate,
    unit: "x",
    note: "one key, pre-keyed both",
  });
  rows.push({
    name: "speed-up over @noble/hashes one-shot",
    value: oursInit / nobleRate,
    unit: "x",
    note: "PeerKeyTable key checks vs one-shot",
  });

  for (const peers of [1, 100, 10_000]) {
    const table = new PeerKeyTable<number>();
    for (let i = 0; i < peers - 1; i++) table.add(fakeKey(i + 10_000_000), i);
    table.add(responder.publicKey, -1); // scanned last
    const last = rate(() => {
      if (table.identify(initiation) !== -1) sink++;
    }, 300);
    rows.push({ name: `identify initiation, ${peers} peers, match last`, value: 1e6 / last, unit: "µs" });
    table.remove(responder.publicKey);
    table.add(fakeKey(peers + 20_000_000), -2);
    const none = rate(() => {
      if (table.identify(initiation) !== undefined) sink++;
    }, 300);
    rows.push({ name: `identify initiation, ${peers} peers, no match`, value: 1e6 / none, unit: "µs" });
  }
  if (sink !== 0) throw new Error("benchmark self-check failed: a lookup returned the wrong peer");
  return rows;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  console.log(formatTable(await benchMac1()));
}
