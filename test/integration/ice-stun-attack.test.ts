// The red team's STUN attacks on a connected pair of real werift agents (two IceSessions on loopback):
// forged Binding requests sent from sockets of this test to the nominated pair's local socket.
//   3. Unauthenticated ICE-CONTROLLING/ICE-CONTROLLED: werift swapped roles, then probes got 487.
//   4. Checks from many source ports ("victims"): werift learnt a peer-reflexive candidate and a pair
//      for each and sent triggered checks to them (1 request -> 6 packets), memory grew without bound.
// Each victim is a real loopback socket that never answers: what it receives is what the attack
// reflected onto it.
import { randomBytes } from "node:crypto";
import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { type Connection, classes, Message, methods } from "werift-ice";
import type { IcePath } from "../../src/ice/ice-path.js";
import { MAX_PAIRS, MAX_PEER_REFLEXIVE } from "../../src/ice/stun-budget.js";
import { connect, makePair, type Pair, sessions } from "../support/ice-loopback-pair.js";

/** A Binding request as an attacker forges it; `key` signs it (MESSAGE-INTEGRITY), `fingerprint` adds FINGERPRINT. */
function forgedRequest(fields: {
  username?: string;
  key?: string;
  controlling?: bigint;
  controlled?: bigint;
  fingerprint?: boolean;
}): Buffer {
  const request = new Message(methods.BINDING, classes.REQUEST);
  if (fields.username !== undefined) request.setAttribute("USERNAME", fields.username);
  request.setAttribute("PRIORITY", 1853824767);
  if (fields.controlling !== undefined) request.setAttribute("ICE-CONTROLLING", fields.controlling);
  if (fields.controlled !== undefined) request.setAttribute("ICE-CONTROLLED", fields.controlled);
  if (fields.key !== undefined) request.addMessageIntegrity(Buffer.from(fields.key, "utf8"));
  if (fields.fingerprint) request.addFingerprint();
  return request.bytes;
}

interface Victims {
  readonly sockets: Socket[];
  /** Datagrams the victims received, in total. */
  received(): number;
  close(): void;
}

/** `count` loopback sockets that count what they receive and never answer. */
async function openVictims(count: number): Promise<Victims> {
  let received = 0;
  const sockets = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<Socket>((resolve) => {
          const socket = createSocket("udp4");
          socket.on("message", () => received++);
          socket.bind(0, "127.0.0.1", () => resolve(socket));
        }),
    ),
  );
  return {
    sockets,
    received: () => received,
    close: () => {
      for (const socket of sockets) socket.close();
    },
  };
}

function sendFrom(socket: Socket, datagram: Buffer, to: string): Promise<void> {
  const [host, port] = to.split(":");
  return new Promise((resolve, reject) =>
    socket.send(datagram, Number(port), host, (err) => (err ? reject(err) : resolve())),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Connected {
  readonly pair: Pair;
  readonly pathA: IcePath;
  readonly pathB: IcePath;
  readonly connA: Connection;
  readonly connB: Connection;
  /** A's local socket of the nominated pair, "127.0.0.1:port": where the attacker sends. */
  readonly target: string;
}

async function connected(): Promise<Connected> {
  const pair = makePair();
  const { pa, pb } = await connect(pair);
  const pathA = pa as IcePath;
  const pathB = pb as IcePath;
  const target = pair.a.selectedPair?.local;
  if (!target) throw new Error("no selected pair");
  return { pair, pathA, pathB, connA: pathA.conn, connB: pathB.conn, target };
}

/** What werift keeps about the peer: peer-reflexive candidates and pairs. */
function kept(conn: Connection): { prflx: number; pairs: number } {
  return {
    prflx: conn.remoteCandidates.filter((c) => c.type === "prflx").length,
    pairs: conn.checkList.length,
  };
}

const opened: Victims[] = [];
afterEach(async () => {
  for (const victims of opened.splice(0)) victims.close();
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

describe("forged STUN against a connected agent", () => {
  it("an unauthenticated ICE-CONTROLLING/ICE-CONTROLLED spray changes neither role nor pair, probes keep working", async () => {
    const { pair, pathA, pathB, connA, connB, target } = await connected();
    const targetB = pair.b.selectedPair?.local ?? "";
    const before = { a: pair.a.selectedPair, b: pair.b.selectedPair };
    const [attacker] = (await openVictims(1)).sockets as [Socket];
    let answered = 0;
    attacker.on("message", () => answered++);
    const sniffedA = `${connA.localUsername}:${connA.remoteUsername}`;
    for (let i = 0; i < 100; i++) {
      // Without USERNAME, with the sniffed USERNAME but no MESSAGE-INTEGRITY, and with a forged one.
      const variant = [{}, { username: sniffedA }, { username: sniffedA, key: "guess" }][i % 3];
      await sendFrom(attacker, forgedRequest({ ...variant, controlling: 2n ** 64n - 1n }), target);
      await sendFrom(attacker, forgedRequest({ controlled: 0n, fingerprint: true }), targetB);
    }
    await sleep(500);
    expect(connA.iceControlling).toBe(true);
    expect(connB.iceControlling).toBe(false);
    for (let i = 0; i < 3; i++) {
      expect(await pathA.probe(2000)).toEqual(expect.any(Number));
      expect(await pathB.probe(2000)).toEqual(expect.any(Number));
    }
    expect(pair.a.selectedPair).toEqual(before.a);
    expect(pair.b.selectedPair).toEqual(before.b);
    expect(pair.a.state).toBe("connected");
    expect(answered).toBe(0);
    attacker.close();
  });

  it("checks with the sniffed USERNAME but a wrong MESSAGE-INTEGRITY from 300 ports reflect nothing", async () => {
    const { connA, target } = await connected();
    const before = kept(connA);
    const victims = await openVictims(300);
    opened.push(victims);
    const username = `${connA.localUsername}:${connA.remoteUsername}`;
    const wrongKey = randomBytes(16).toString("hex");
    await Promise.all(
      victims.sockets.map((s) =>
        sendFrom(s, forgedRequest({ username, key: wrongKey, controlled: 1n, fingerprint: true }), target),
      ),
    );
    await sleep(2000); // werift's triggered checks retransmit for ~1.6 s
    expect(victims.received()).toBe(0);
    expect(kept(connA)).toEqual(before);
  });

  it("even checks with the right credentials from 300 ports are bounded: few packets, capped candidates and pairs", async () => {
    const { pathA, connA, target } = await connected();
    const victims = await openVictims(300);
    opened.push(victims);
    const username = `${connA.localUsername}:${connA.remoteUsername}`;
    await Promise.all(
      victims.sockets.map((s) =>
        sendFrom(
          s,
          forgedRequest({ username, key: connA.localPassword, controlled: 1n, fingerprint: true }),
          target,
        ),
      ),
    );
    await sleep(2000);
    const now = kept(connA);
    console.log(`300 authenticated spoofed checks: ${victims.received()} packets to victims`, now);
    // Each admitted new address costs at most a response and one triggered check (5 transmissions).
    expect(victims.received()).toBeLessThanOrEqual(MAX_PEER_REFLEXIVE * 6);
    expect(victims.received()).toBeLessThan(300);
    expect(now.prflx).toBeLessThanOrEqual(MAX_PEER_REFLEXIVE);
    expect(now.pairs).toBeLessThanOrEqual(MAX_PAIRS);
    expect(connA.iceControlling).toBe(true);
    expect(await pathA.probe(2000)).toEqual(expect.any(Number));
  });

  it("11,000 authenticated checks from distinct ports: candidates and pairs stay capped (RSS and CPU logged)", async () => {
    const { pathA, connA, target } = await connected();
    const username = `${connA.localUsername}:${connA.remoteUsername}`;
    const request = () =>
      forgedRequest({ username, key: connA.localPassword, controlled: 1n, fingerprint: true });
    const rss0 = process.memoryUsage().rss;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let reflected = 0;
    const batch = 500;
    for (let sent = 0; sent < 11_000; sent += batch) {
      const victims = await openVictims(batch);
      await Promise.all(victims.sockets.map((s) => sendFrom(s, request(), target)));
      await sleep(100);
      reflected += victims.received();
      victims.close();
    }
    await sleep(2000);
    const cpu = process.cpuUsage(cpu0);
    const rssMiB = (process.memoryUsage().rss - rss0) / 2 ** 20;
    const now = kept(connA);
    console.log(
      `11,000 authenticated spoofed checks: +${rssMiB.toFixed(1)} MiB RSS, ` +
        `${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU, ${(performance.now() - t0).toFixed(0)} ms, ` +
        `${reflected} packets seen by victims`,
      now,
    );
    expect(now.prflx).toBeLessThanOrEqual(MAX_PEER_REFLEXIVE);
    expect(now.pairs).toBeLessThanOrEqual(MAX_PAIRS);
    expect(reflected).toBeLessThanOrEqual(MAX_PEER_REFLEXIVE * 6);
    expect(await pathA.probe(2000)).toEqual(expect.any(Number));
  }, 120_000);
});
