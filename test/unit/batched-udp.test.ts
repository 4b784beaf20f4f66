import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../src/log.js";
import {
  type BatchedUdpSocket,
  batchedUdpAvailability,
  openBatchedUdpSocket,
  type ReceivedBatch,
  type UdpIo,
} from "../../src/proxy/batched-udp.js";
import { formatIpv6 } from "../../src/proxy/batched-udp-native.js";
import { waitFor } from "../support/wait-for.js";

const logger = createLogger("test", "silent");
const HOST = "127.0.0.1";
const opened: BatchedUdpSocket[] = [];

async function open(io: UdpIo, address = HOST, type: "udp4" | "udp6" = "udp4"): Promise<BatchedUdpSocket> {
  const socket = await openBatchedUdpSocket({ address, port: 0, role: "test", type, logger, io });
  opened.push(socket);
  return socket;
}

interface Received {
  bytes: Buffer[];
  from: string[];
  batches: number;
}

/** Collects what a socket receives (copies nothing: batch views stay valid after the callback). */
function collect(socket: BatchedUdpSocket): Received {
  const r: Received = { bytes: [], from: [], batches: 0 };
  socket.onBatch = (batch: ReceivedBatch) => {
    r.batches++;
    for (let i = 0; i < batch.count; i++) {
      r.bytes.push(batch.datagram(i));
      r.from.push(`${batch.address(i)}:${batch.port(i)}`);
    }
  };
  return r;
}

/** Datagram `n` of a test sequence: its size, and bytes that say which one it is. */
function datagram(n: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (n * 31 + i) & 0xff;
  return b;
}

afterEach(() => {
  for (const s of opened.splice(0)) s.close();
  delete process.env.TBT_UDP_IO;
});

it("has the native addon here (CI builds it at npm ci; a missing addon would hide the batched path)", () => {
  expect(batchedUdpAvailability()).toEqual({ io: "native", reason: null });
});

describe.each(["native", "dgram"] as const)("BatchedUdpSocket (%s)", (io) => {
  it("delivers datagrams in order with their sizes (empty, small, 65507) and their source", async () => {
    const [a, b] = [await open(io), await open(io)];
    const got = collect(b);
    const sizes = [0, 1, 100, 1420, 9000, 65507, 0, 1452];
    for (const [n, size] of sizes.entries()) a.send(datagram(n, size), b.address().port, HOST);
    await waitFor(() => got.bytes.length === sizes.length, { what: "every datagram" });
    expect(got.bytes.map((x) => x.length)).toEqual(sizes);
    for (const [n, x] of got.bytes.entries()) expect(x.equals(datagram(n, sizes[n]!))).toBe(true);
    expect(new Set(got.from)).toEqual(new Set([`${HOST}:${a.address().port}`]));
  });

  it("carries a burst larger than one batch sent while a batch is delivered, in order (same sizes and a shorter last one)", async () => {
    const [relay, sink, source] = [await open(io), await open(io), await open(io)];
    const got = collect(sink);
    const count = 700;
    const sizes = Array.from({ length: count }, (_, n) =>
      n === count - 1 ? 300 : n < 400 ? 1420 : 60 + (n % 5),
    );
    relay.onBatch = () => {
      // Sent from inside a delivery: queued, and sent together (native) when it ends.
      for (const [n, size] of sizes.entries()) relay.send(datagram(n, size), sink.address().port, HOST);
    };
    source.send(Buffer.from("go"), relay.address().port, HOST);
    await waitFor(() => got.bytes.length === count, { what: `${count} datagrams` });
    expect(got.bytes.map((x) => x.length)).toEqual(sizes);
    for (const [n, x] of got.bytes.entries())
      expect(x.equals(datagram(n, sizes[n]!)), `datagram ${n}`).toBe(true);
    // Batched receive: far fewer deliveries than datagrams (dgram delivers one at a time).
    if (io === "native") expect(got.batches).toBeLessThan(count / 4);
    else expect(got.batches).toBe(count);
  });

  it("forwards the datagrams of a delivered batch as they are (natively sent from the batch's own memory)", async () => {
    const [source, relay, sink, trigger] = [await open(io), await open(io), await open(io), await open(io)];
    const got = collect(sink);
    const sizes = Array.from({ length: 500 }, (_, n) => (n % 10 < 7 ? 1420 : n % 10 === 7 ? 0 : 1 + n));
    source.onBatch = () => {
      for (const [n, size] of sizes.entries()) source.send(datagram(n, size), relay.address().port, HOST);
    };
    relay.onBatch = (batch) => {
      for (let i = 0; i < batch.count; i++) relay.send(batch.datagram(i), sink.address().port, HOST);
    };
    trigger.send(Buffer.from("go"), source.address().port, HOST);
    await waitFor(() => got.bytes.length === sizes.length, { what: "every forwarded datagram" });
    for (const [n, x] of got.bytes.entries())
      expect(x.equals(datagram(n, sizes[n]!)), `datagram ${n}`).toBe(true);
  });

  it("reports EMSGSIZE and a bad destination to onError, never throws, and keeps working", async () => {
    const [a, b] = [await open(io), await open(io)];
    const got = collect(b);
    const errors: string[] = [];
    a.onError = (err) => errors.push(err.code ?? "none");
    expect(() => a.send(Buffer.alloc(70_000), b.address().port, HOST)).not.toThrow();
    // Nobody listens there: an unconnected socket hears nothing back, and nothing throws.
    const gone = await open(io);
    const closedPort = gone.address().port;
    gone.close();
    expect(() => a.send(Buffer.from("nobody"), closedPort, HOST)).not.toThrow();
    a.send(Buffer.from("after"), b.address().port, HOST);
    await waitFor(() => got.bytes.length === 1 && errors.length >= 1, {
      what: "the datagram after the errors",
    });
    expect(errors).toContain("EMSGSIZE");
    expect(got.bytes[0]?.toString()).toBe("after");
  });

  it("stops delivering when closed during its own delivery, and a send after close is a no-op", async () => {
    const [a, b] = [await open(io), await open(io)];
    let delivered = 0;
    b.onBatch = (batch) => {
      delivered += batch.count;
      b.close();
      b.send(Buffer.from("too late"), a.address().port, HOST);
    };
    for (let i = 0; i < 200; i++) a.send(datagram(i, 100), b.address().port, HOST);
    await waitFor(() => delivered > 0, { what: "the first delivery" });
    const atClose = delivered;
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(delivered).toBe(atClose);
    // The port is free again at once.
    const again = await openBatchedUdpSocket({
      address: HOST,
      port: b.address().port,
      role: "test",
      logger,
      io,
    });
    opened.push(again);
  });

  it("refuses a busy address with the port-busy ConfigError", async () => {
    const a = await open(io);
    await expect(open(io, HOST).then(() => undefined)).resolves.toBeUndefined();
    await expect(
      openBatchedUdpSocket({ address: HOST, port: a.address().port, role: "test", logger, io }),
    ).rejects.toMatchObject({ name: "ConfigError", code: "port-busy" });
  });

  it("receives over IPv6 with the sender's address as dgram writes it", async () => {
    const [a, b] = [await open(io, "::1", "udp6"), await open(io, "::1", "udp6")];
    const got = collect(b);
    a.send(Buffer.from("six"), b.address().port, "::1");
    await waitFor(() => got.bytes.length === 1, { what: "the IPv6 datagram" });
    expect(got.from[0]).toBe(`::1:${a.address().port}`);
    expect(b.address()).toMatchObject({ address: "::1", family: "IPv6" });
  });
});

describe("native and fallback", () => {
  it("receive the same datagrams, in the same order, from a batched sender", async () => {
    const sender = await open("native");
    const [toNative, toDgram] = [await open("native"), await open("dgram")];
    const [n, d] = [collect(toNative), collect(toDgram)];
    const trigger = await open("dgram");
    const sizes = Array.from({ length: 300 }, (_, i) =>
      i % 3 === 0 ? 1420 : i % 7 === 0 ? 0 : 1 + (i % 900),
    );
    sender.onBatch = () => {
      for (const [i, size] of sizes.entries()) {
        sender.send(datagram(i, size), toNative.address().port, HOST);
        sender.send(datagram(i, size), toDgram.address().port, HOST);
      }
    };
    trigger.send(Buffer.from("go"), sender.address().port, HOST);
    await waitFor(() => n.bytes.length === sizes.length && d.bytes.length === sizes.length, {
      what: "both receivers' datagrams",
    });
    expect(n.bytes.map((x) => x.toString("hex"))).toEqual(d.bytes.map((x) => x.toString("hex")));
  });

  it("uses the fallback when TBT_UDP_IO=dgram, so CI keeps testing it", async () => {
    process.env.TBT_UDP_IO = "dgram";
    expect(batchedUdpAvailability().io).toBe("dgram");
    const socket = await openBatchedUdpSocket({ address: HOST, port: 0, role: "test", logger });
    opened.push(socket);
    expect(socket.io).toBe("dgram");
  });
});

it("formats IPv6 sources as libuv does", () => {
  const words = (hex: string) => {
    const b = Buffer.from(hex.padStart(32, "0"), "hex");
    return [0, 4, 8, 12].map((o) => b.readUInt32BE(o) | 0);
  };
  expect(formatIpv6(words("1"))).toBe("::1");
  expect(formatIpv6(words("0"))).toBe("::");
  expect(formatIpv6(words("fd000000000000000000000000000001"))).toBe("fd00::1");
  expect(formatIpv6(words("ffff01020304"))).toBe("::ffff:1.2.3.4");
  expect(formatIpv6(words("20010db8000000010000000000000001"))).toBe("2001:db8:0:1::1");
  expect(formatIpv6(words("20010db8000000000001000000000001"))).toBe("2001:db8::1:0:0:1");
  expect(formatIpv6(words("00010000000000000000000000000000"))).toBe("1::");
  expect(formatIpv6(words("00010002000300040005000600070008"))).toBe("1:2:3:4:5:6:7:8");
});
