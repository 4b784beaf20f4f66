// The static paths' shared socket: one socket per family, inbound datagrams told apart by their source.
import { createSocket, type Socket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import { StaticPath } from "../../src/proxy/static-path.js";
import { StaticSockets } from "../../src/proxy/static-sockets.js";
import { waitFor } from "../support/wait-for.js";

const silent = createLogger("test", "silent");
const opened: Socket[] = [];
const pools: StaticSockets[] = [];

/** A remote on loopback that records what it receives and can answer from its own address. */
async function remote(): Promise<{ socket: Socket; port: number; received: Buffer[] }> {
  const socket = createSocket("udp4");
  opened.push(socket);
  const received: Buffer[] = [];
  socket.on("message", (msg) => received.push(msg));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  return { socket, port: socket.address().port, received };
}

function pool(): StaticSockets {
  const sockets = new StaticSockets(silent, "dgram");
  pools.push(sockets);
  return sockets;
}

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
  for (const p of pools.splice(0)) p.close();
});

describe("StaticSockets", () => {
  it("serves many remotes from one socket and delivers each datagram to its source's path", async () => {
    const sockets = pool();
    let foreign = 0;
    sockets.onForeignDatagram = () => foreign++;
    const a = await remote();
    const b = await remote();
    const stranger = await remote();
    const gotA: string[] = [];
    const gotB: string[] = [];
    const leaseA = await sockets.lease(4, "127.0.0.1", a.port, (d) => gotA.push(d.toString()));
    const leaseB = await sockets.lease(4, "127.0.0.1", b.port, (d) => gotB.push(d.toString()));
    expect(leaseA.localPort).toBe(leaseB.localPort);
    leaseA.send(Buffer.from("to a"));
    leaseB.send(Buffer.from("to b"));
    await waitFor(() => a.received.length === 1 && b.received.length === 1, { what: "both remotes reached" });
    expect(a.received[0]?.toString()).toBe("to a");
    expect(b.received[0]?.toString()).toBe("to b");
    a.socket.send("from a", leaseA.localPort, "127.0.0.1");
    b.socket.send("from b", leaseA.localPort, "127.0.0.1");
    stranger.socket.send("from nobody", leaseA.localPort, "127.0.0.1");
    await waitFor(() => gotA.length === 1 && gotB.length === 1 && foreign === 1, { what: "demultiplexed" });
    expect(gotA).toEqual(["from a"]);
    expect(gotB).toEqual(["from b"]);
    // A closed lease no longer receives: its remote's datagrams are foreign from then on.
    leaseA.close();
    a.socket.send("late", leaseB.localPort, "127.0.0.1");
    await waitFor(() => foreign === 2, { what: "late datagram counted as foreign" });
    expect(gotA).toEqual(["from a"]);
  });

  it("gives a second path to the same remote a socket of its own", async () => {
    const sockets = pool();
    const a = await remote();
    const first: string[] = [];
    const second: string[] = [];
    const one = await sockets.lease(4, "127.0.0.1", a.port, (d) => first.push(d.toString()));
    const two = await sockets.lease(4, "127.0.0.1", a.port, (d) => second.push(d.toString()));
    expect(two.localPort).not.toBe(one.localPort);
    a.socket.send("one", one.localPort, "127.0.0.1");
    a.socket.send("two", two.localPort, "127.0.0.1");
    await waitFor(() => first.length === 1 && second.length === 1, { what: "both delivered" });
    expect([first, second]).toEqual([["one"], ["two"]]);
    two.close();
    one.close();
  });

  it("renews: new leases get a fresh socket, the old one serves its leases until the last goes", async () => {
    const sockets = pool();
    const a = await remote();
    const got: string[] = [];
    const old = await sockets.lease(4, "127.0.0.1", a.port, (d) => got.push(`old ${d}`));
    sockets.renew();
    const fresh = await sockets.lease(4, "127.0.0.1", a.port, (d) => got.push(`new ${d}`));
    expect(fresh.localPort).not.toBe(old.localPort);
    a.socket.send("x", old.localPort, "127.0.0.1");
    a.socket.send("y", fresh.localPort, "127.0.0.1");
    await waitFor(() => got.length === 2, { what: "both sockets deliver" });
    expect(got.sort()).toEqual(["new y", "old x"]);
    old.close();
    fresh.close();
  });

  it("carries a static path both ways, as a socket of its own did", async () => {
    const sockets = pool();
    const a = await remote();
    const path = new StaticPath({ host: "127.0.0.1", port: a.port }, silent, sockets);
    const got: string[] = [];
    path.onDatagram = (d) => got.push(d.toString());
    await path.open();
    const route = path.udpRoute();
    expect(route).toMatchObject({ remoteAddress: "127.0.0.1", remotePort: a.port });
    path.send(Buffer.from("hello"));
    await waitFor(() => a.received.length === 1, { what: "sent" });
    a.socket.send("back", route?.localPort ?? 0, "127.0.0.1");
    await waitFor(() => got.length === 1, { what: "received" });
    expect(got).toEqual(["back"]);
    path.close();
    expect(path.udpRoute()).toBeNull();
  });
});
