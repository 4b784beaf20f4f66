// A relayed path's TURN channel, as the kernel fast path will use it: two IceSessions forced to relay
// through a real coturn on loopback. coturn's lifetimes are cut to seconds (channel 5 s, permission 3 s,
// allocation 6 s), so a channel nobody refreshes is gone within the test, and werift's own allocation
// refresh is exercised too. ChannelData "from the allocation's five-tuple" is sent through a raw socket
// with exactly the addresses and ports channelRoute() names, as the kernel would send it.
import { execFile } from "node:child_process";
import type { Socket } from "node:dgram";
import { Writable } from "node:stream";
import { promisify } from "node:util";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { CandidatePairState, StunOverTurnProtocol, StunProtocol, type TurnProtocol } from "werift-ice";
import type { IcePath } from "../../src/ice/ice-path.js";
import { IceSession, type IceSessionOptions } from "../../src/ice/ice-session.js";
import type { IceSignal } from "../../src/ice/ice-signal.js";
import { isUdpTransport } from "../../src/ice/werift-internals.js";
import type { ChannelRoute } from "../../src/proxy/path.js";
import { turnRestCredentials } from "../lab/coturn.js";
import { type LoopbackCoturn, startLoopbackCoturn } from "../support/loopback-coturn.js";
import { waitFor } from "../support/wait-for.js";

const execFileAsync = promisify(execFile);

// --- sessions --------------------------------------------------------------------------------------

const loopbackOnly = (addr: string) => !addr.startsWith("127.");
const sessions: IceSession[] = [];

function makePair(
  a: Partial<IceSessionOptions>,
  b: Partial<IceSessionOptions>,
): { a: IceSession; b: IceSession } {
  const pair = {} as { a: IceSession; b: IceSession };
  const send = (to: () => IceSession) => (m: IceSignal) => {
    const copy = JSON.parse(JSON.stringify(m)) as unknown;
    setImmediate(() => to().handleSignal(copy));
  };
  const common = { stunUrls: [], excludeAddresses: loopbackOnly, ipv6: false };
  pair.a = new IceSession({ ...common, ...a, controlling: true, sendSignal: send(() => pair.b) });
  pair.b = new IceSession({ ...common, ...b, controlling: false, sendSignal: send(() => pair.a) });
  sessions.push(pair.a, pair.b);
  return pair;
}

/** Paths of both sides, each with a count of its onRouteChange calls (set as soon as the path exists). */
async function connect(pair: { a: IceSession; b: IceSession }): Promise<{
  pa: IcePath;
  pb: IcePath;
  changes: { a: number; b: number };
}> {
  const changes = { a: 0, b: 0 };
  const next = (session: IceSession, side: "a" | "b") =>
    new Promise<IcePath>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no path in time")), 20_000);
      session.once("path", (path) => {
        clearTimeout(timer);
        path.onRouteChange = () => {
          changes[side]++;
        };
        resolve(path);
      });
    });
  const paths = Promise.all([next(pair.a, "a"), next(pair.b, "b")]);
  pair.b.start();
  pair.a.start();
  const [pa, pb] = await paths;
  return { pa, pb, changes };
}

function turnOf(path: IcePath): TurnProtocol {
  const protocol = path.pair?.protocol;
  if (!(protocol instanceof StunOverTurnProtocol)) throw new Error("not a pair on our TURN allocation");
  return protocol.turn;
}

function turnSocket(path: IcePath): Socket {
  const transport = turnOf(path).transport;
  if (!isUdpTransport(transport)) throw new Error("TURN is not over UDP");
  return transport.socket;
}

/** Everything `path` delivers from now on, as strings. */
function received(path: IcePath): string[] {
  const got: string[] = [];
  path.onDatagram = (d) => got.push(d.toString());
  return got;
}

/** Datagrams arriving at `socket` (observed next to werift's own listener). */
function arrivals(socket: Socket): Buffer[] {
  const seen: Buffer[] = [];
  socket.on("message", (msg: Buffer) => seen.push(Buffer.from(msg)));
  return seen;
}

/** Datagrams `socket` sends from now on (werift's and the taps' sends go through socket.send). */
function departures(socket: Socket): Buffer[] {
  const seen: Buffer[] = [];
  const original = socket.send.bind(socket) as (...args: unknown[]) => void;
  const recording = (...args: unknown[]) => {
    const [data] = args;
    if (Buffer.isBuffer(data)) seen.push(Buffer.from(data));
    else if (Array.isArray(data)) seen.push(Buffer.concat(data as Buffer[]));
    original(...args);
  };
  (socket as unknown as { send: typeof recording }).send = recording;
  return seen;
}

function channelData(channel: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(channel, 0);
  header.writeUInt16BE(payload.length, 2);
  return Buffer.concat([header, payload]);
}

function channelOf(datagram: Buffer): number | null {
  return datagram.length >= 4 && (datagram[0]! & 0xc0) === 0x40 ? datagram.readUInt16BE(0) : null;
}

// A UDP datagram with exactly this five-tuple, as the kernel fast path sends it: a raw socket (the
// TURN client's own socket holds the port), the kernel adds the IPv4 header, the UDP checksum is 0.
const RAW_UDP = `
import socket, struct, sys
src, sport, dst, dport, data = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), bytes.fromhex(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
s.bind((src, 0))
s.sendto(struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data, (dst, 0))
`;

async function sendFromFiveTuple(route: ChannelRoute, payload: Buffer): Promise<void> {
  await execFileAsync("python3", [
    "-c",
    RAW_UDP,
    route.localAddress,
    String(route.localPort),
    route.remoteAddress,
    String(route.remotePort),
    channelData(route.channel, payload).toString("hex"),
  ]);
}

function datagram(tag: string): Buffer {
  return Buffer.from(`${tag}:`.padEnd(120, "x"));
}

let coturn: LoopbackCoturn;

beforeAll(async () => {
  coturn = await startLoopbackCoturn({
    extra: ["channel-lifetime=5", "permission-lifetime=3", "max-allocate-lifetime=6"],
  });
});

afterEach(async () => {
  await Promise.all(sessions.splice(0).map((s) => s.close()));
});

afterAll(async () => {
  await coturn?.stop();
});

function turnOptions(user: string, transport: "udp" | "tcp" = "udp"): Partial<IceSessionOptions> {
  const { username, password: credential } = turnRestCredentials(coturn.secret, user, 600);
  return {
    forceRelay: true,
    turn: { urls: [`turn:127.0.0.1:${coturn.port}?transport=${transport}`], username, credential },
    turnChannelRefreshMs: 1000,
  };
}

describe("a relayed path's TURN channel (coturn on loopback, relay forced)", () => {
  it("names the allocation's five-tuple and a bound channel, and keeps it bound while user space is silent", async () => {
    const { pa, pb, changes } = await connect(makePair(turnOptions("a"), turnOptions("b")));
    const pathAt = performance.now();
    expect(pa.kind).toBe("relay");
    const route = await waitFor(() => pa.channelRoute(), { what: "a's channel route", intervalMs: 1 });
    console.log(`channel route ${(performance.now() - pathAt).toFixed(1)} ms after both paths were up`);
    const routeB = await waitFor(() => pb.channelRoute(), { what: "b's channel route" });
    expect(changes.a).toBeGreaterThanOrEqual(1);
    expect(changes.b).toBeGreaterThanOrEqual(1);
    expect(pa.udpRoute()).toBeNull();

    // The allocation's flow: our TURN client socket (bound to the wildcard: the source the kernel picks)
    // and the server; coturn saw the same five-tuple (its XOR-MAPPED-ADDRESS; no NAT on loopback).
    const turn = turnOf(pa);
    expect(route.channel).toBeGreaterThanOrEqual(0x4000);
    expect(route.channel).toBeLessThanOrEqual(0x7fff);
    expect(route).toMatchObject({
      localAddress: "127.0.0.1",
      localPort: turnSocket(pa).address().port,
      remoteAddress: "127.0.0.1",
      remotePort: coturn.port,
    });
    expect([route.localAddress, route.localPort]).toEqual([turn.mappedAddress[0], turn.mappedAddress[1]]);

    // ChannelData made from the route reaches the peer: tuple and channel are right.
    const atB = received(pb);
    await sendFromFiveTuple(route, datagram("kernel-1"));
    await waitFor(() => atB.includes(datagram("kernel-1").toString()), { what: "raw ChannelData at b" });

    // User space sends ChannelData on that channel too (no Send indications), and what comes back from
    // the peer arrives as ChannelData on it (the kernel's inbound key).
    const outA = departures(turnSocket(pa));
    const inA = arrivals(turnSocket(pa));
    const inB = arrivals(turnSocket(pb));
    const atA = received(pa);
    for (let i = 0; i < 10; i++) pa.send(datagram(`user-${i}`));
    for (let i = 0; i < 10; i++) pb.send(datagram(`back-${i}`));
    await waitFor(() => atB.length >= 11 && atA.length >= 10, { what: "user-space datagrams both ways" });
    const dataOut = outA.filter((d) => channelOf(d) !== null || d.readUInt16BE(0) === 0x0016);
    expect(dataOut.map(channelOf)).toEqual(Array(10).fill(route.channel));
    expect(inA.filter((d) => channelOf(d) !== null).map(channelOf)).toEqual(Array(10).fill(route.channel));
    expect(inB.filter((d) => channelOf(d) !== null).map(channelOf)).toEqual(Array(10).fill(routeB.channel));

    // Longer than the channel, the permission and the allocation live without a refresh, with nothing
    // sent from user space: the keeper's ChannelBinds (and werift's allocation refresh) keep it all.
    await new Promise((r) => setTimeout(r, 8000));
    expect(pa.channelRoute()).toEqual(route);
    await sendFromFiveTuple(route, datagram("kernel-2"));
    await waitFor(() => atB.includes(datagram("kernel-2").toString()), {
      what: "raw ChannelData at b, later",
    });
    pb.send(datagram("back-later"));
    await waitFor(() => atA.includes(datagram("back-later").toString()), {
      what: "b's datagram at a, later",
    });

    // Closed: no route, and the change is reported.
    const before = changes.a;
    pa.close();
    expect(pa.channelRoute()).toBeNull();
    expect(changes.a).toBe(before + 1);

    // Nobody refreshes a's channel now: coturn lets it go, and the same ChannelData no longer passes
    // (b's side still keeps its own channel and permission).
    await new Promise((r) => setTimeout(r, 7000));
    await sendFromFiveTuple(route, datagram("kernel-3"));
    await new Promise((r) => setTimeout(r, 1000));
    expect(atB).not.toContain(datagram("kernel-3").toString());
    expect(pb.channelRoute()).toEqual(routeB);
  });

  it("a server that lost the allocation (restarted): the next refresh fails and the route is withdrawn", async () => {
    const messages: string[] = [];
    const logger = pino(
      { level: "debug" },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          messages.push((JSON.parse(chunk.toString()) as { msg: string }).msg);
          done();
        },
      }),
    );
    const { pa, changes } = await connect(
      makePair({ ...turnOptions("gone-a"), logger }, turnOptions("gone-b")),
    );
    await waitFor(() => pa.channelRoute(), { what: "a's channel route" });
    const before = changes.a;
    await coturn.restart();
    await waitFor(() => pa.channelRoute() === null, { what: "the route withdrawn" });
    expect(changes.a).toBe(before + 1);
    // coturn answers the ChannelBind of a five-tuple it has no allocation for with 400 (not 437).
    expect(messages).toContain("turn channel refresh failed: user space carries the path");
    await new Promise((r) => setTimeout(r, 3000));
    expect(pa.channelRoute()).toBeNull();
    expect(changes.a).toBe(before + 1);
  });

  it("a pair from our own socket to the peer's relay candidate is plain UDP: udpRoute, no channel", async () => {
    // b has no TURN server: its only candidate is a host one, paired with a's relay candidate.
    const { pa, pb } = await connect(
      makePair(turnOptions("mixed"), { extraHostAddresses: ["127.0.0.1"], turnChannelRefreshMs: 1000 }),
    );
    expect(pb.info).toMatchObject({ localType: "host", remoteType: "relay", relayed: true });
    expect(pb.kind).toBe("relay");
    const route = await waitFor(() => pa.channelRoute(), { what: "a's channel route" });
    const udp = pb.udpRoute();
    expect(pb.channelRoute()).toBeNull();
    expect(udp).toMatchObject({
      remoteAddress: turnOf(pa).relayedAddress[0],
      remotePort: turnOf(pa).relayedAddress[1],
    });

    // Both routes carry data as the kernel would send it.
    const atB = received(pb);
    const atA = received(pa);
    await sendFromFiveTuple(route, datagram("to-b"));
    await waitFor(() => atB.includes(datagram("to-b").toString()), { what: "ChannelData at b" });
    // b's own socket, to the remote udpRoute names: a's relayed address.
    const protocol = pb.pair?.protocol;
    if (!(protocol instanceof StunProtocol)) throw new Error("b's pair is not on a host socket");
    expect(protocol.transport.socket.address().port).toBe(udp?.localPort);
    protocol.transport.socket.send(datagram("to-a"), udp?.remotePort ?? 0, udp?.remoteAddress ?? "");
    await waitFor(() => atA.includes(datagram("to-a").toString()), { what: "plain UDP at a" });
  });

  it("switching to another pair on the allocation: the old channel's route goes, the new pair's comes", async () => {
    // b gathers a host and a relay candidate: a's relay candidate pairs with both.
    const { pa, pb, changes } = await connect(
      makePair(turnOptions("switch-a"), {
        ...turnOptions("switch-b"),
        forceRelay: false,
        extraHostAddresses: ["127.0.0.1"],
      }),
    );
    const first = await waitFor(() => pa.channelRoute(), { what: "a's channel route" });
    const other = await waitFor(
      () =>
        pa.conn.checkList.find(
          (p) =>
            p !== pa.pair && p.protocol === pa.pair?.protocol && p.state === CandidatePairState.SUCCEEDED,
        ),
      { what: "another validated pair on a's allocation" },
    );
    const before = changes.a;
    pa.switchTo(other);
    expect(changes.a).toBe(before + 1);
    const second = await waitFor(() => pa.channelRoute(), { what: "the new pair's channel route" });
    expect(changes.a).toBe(before + 2);
    expect(second.channel).not.toBe(first.channel);
    expect({ ...second, channel: first.channel }).toEqual(first); // the same allocation's five-tuple
    const atB = received(pb);
    await sendFromFiveTuple(second, datagram("switched"));
    await waitFor(() => atB.includes(datagram("switched").toString()), {
      what: "ChannelData on the new channel at b",
    });
  });

  it("TURN over TCP: no channel route (ChannelData over TCP stays in user space), data still flows", async () => {
    const { pa, pb } = await connect(makePair(turnOptions("tcp-a", "tcp"), turnOptions("tcp-b", "tcp")));
    expect(pa.info?.relayTransport).toBe("tcp");
    const atB = received(pb);
    pa.send(datagram("over-tcp"));
    await waitFor(() => atB.includes(datagram("over-tcp").toString()), { what: "datagram over TCP TURN" });
    // Past the channel's and the permission's lifetimes: still carried (the keeper refreshes over TCP too).
    await new Promise((r) => setTimeout(r, 6000));
    pa.send(datagram("over-tcp-later"));
    await waitFor(() => atB.includes(datagram("over-tcp-later").toString()), {
      what: "later datagram over TCP",
    });
    expect(pa.channelRoute()).toBeNull();
    expect(pa.udpRoute()).toBeNull();
  });
});
