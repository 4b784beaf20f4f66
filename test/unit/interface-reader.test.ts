import { describe, expect, it } from "vitest";
import { InterfaceReader } from "../../src/wg/interface-reader.js";
import { parseDump } from "../../src/wg/wg-command.js";

const PRIV = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const PUB = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const A = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
const B = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
const C = "Zm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyZm9vYmFyMTI=";

const head = `${PRIV}\t${PUB}\t51820\toff`;
const line = (key: string, rx: number, endpoint = "192.0.2.7:51820") =>
  `${key}\t(none)\t${endpoint}\t10.0.0.2/32,10.1.0.0/16\t1700000000\t${rx}\t200\t25`;
const dump = (...lines: string[]) => Buffer.from(`${[head, ...lines].join("\n")}\n`);

describe("InterfaceReader", () => {
  it("reads what parseDump reads", () => {
    const text = dump(line(A, 1), line(B, 2, "[2001:db8::1]:51820"));
    expect(new InterfaceReader("wg0").readDump(text)).toEqual(parseDump("wg0", text.toString()));
  });

  it("hands out the same object for a line that did not change, in any order, and parses changed lines", () => {
    const reader = new InterfaceReader("wg0");
    const first = reader.readDump(dump(line(A, 1), line(B, 2)));
    // wireguard-go lists its peers in a different order at every read.
    const second = reader.readDump(dump(line(B, 2), line(A, 5)));
    expect(second.peers[0]).toBe(first.peers[1]);
    expect(second.peers[1]).not.toBe(first.peers[0]);
    expect(second.peers[1]).toMatchObject({ publicKey: A, rxBytes: 5 });
  });

  it("hands out the very same list while nothing changed, a new one when a peer changed, came or went", () => {
    const reader = new InterfaceReader("wg0");
    const first = reader.readDump(dump(line(A, 1), line(B, 2))).peers;
    expect(reader.readDump(dump(line(B, 2), line(A, 1))).peers).toBe(first);
    const changed = reader.readDump(dump(line(A, 1), line(B, 3))).peers;
    expect(changed).not.toBe(first);
    expect(reader.readDump(dump(line(A, 1), line(B, 3))).peers).toBe(changed);
    expect(reader.readDump(dump(line(A, 1))).peers).toHaveLength(1);
    expect(reader.readDump(dump(line(A, 1), line(C, 1))).peers).toHaveLength(2);
  });

  it("forgets a removed peer: back again, it is parsed anew", () => {
    const reader = new InterfaceReader("wg0");
    const first = reader.readDump(dump(line(A, 1), line(B, 2)));
    expect(reader.readDump(dump(line(A, 1))).peers).toEqual([first.peers[0]]);
    const back = reader.readDump(dump(line(A, 1), line(B, 2), line(C, 3)));
    expect(back.peers[1]).toEqual(first.peers[1]);
    expect(back.peers[1]).not.toBe(first.peers[1]);
    expect(back.peers.map((p) => p.publicKey)).toEqual([A, B, C]);
  });

  it("a key listed twice gives two peers, the later line remembered", () => {
    const reader = new InterfaceReader("wg0");
    const info = reader.readDump(dump(line(A, 1), line(A, 2)));
    expect(info.peers.map((p) => p.rxBytes)).toEqual([1, 2]);
    expect(reader.readDump(dump(line(A, 2))).peers[0]).toBe(info.peers[1]);
  });

  it("refuses a malformed dump with the interface named", () => {
    expect(() => new InterfaceReader("wg0").readDump(Buffer.from("hello\n"))).toThrow(
      /unexpected output of wg show wg0/,
    );
    expect(() => new InterfaceReader("wg0").readDump(dump("short\tline"))).toThrow(
      /unexpected peer line in wg show wg0/,
    );
  });

  it("reads a dump without peers, or without its last newline", () => {
    expect(new InterfaceReader("wg0").readDump(Buffer.from(head)).peers).toEqual([]);
    expect(new InterfaceReader("wg0").readDump(Buffer.from(`${head}\n${line(A, 1)}`)).peers).toHaveLength(1);
  });
});

// The same interface as a userspace WireGuard's UAPI socket answers `get=1` (keys in hex).
const hex = (key: string) => Buffer.from(key, "base64").toString("hex");
const uapiHead = `private_key=${hex(PRIV)}\nlisten_port=51820\n`;
const block = (key: string, rx: number, endpoint = "192.0.2.7:51820") =>
  `public_key=${hex(key)}\npreshared_key=${"0".repeat(64)}\nprotocol_version=1\nendpoint=${endpoint}\n` +
  `last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=5\ntx_bytes=200\nrx_bytes=${rx}\n` +
  "persistent_keepalive_interval=25\nallowed_ip=10.0.0.2/32\nallowed_ip=10.1.0.0/16\n";
const uapi = (...blocks: string[]) => Buffer.from(`${uapiHead}${blocks.join("")}errno=0\n\n`);

describe("InterfaceReader on a UAPI answer", () => {
  it("reads what the dump of the same interface reads, the public key computed from the private key", () => {
    const answer = uapi(block(A, 1), block(B, 2, "[2001:db8::1]:51820"));
    const fromDump = parseDump("wg0", dump(line(A, 1), line(B, 2, "[2001:db8::1]:51820")).toString());
    expect(new InterfaceReader("wg0").readUapi(answer)).toEqual(fromDump);
  });

  it("reads fwmark, a peer without endpoint or allowed IPs, and an interface without private key or peers", () => {
    const info = new InterfaceReader("wg0").readUapi(
      Buffer.from(`${uapiHead}fwmark=51820\npublic_key=${hex(C)}\nrx_bytes=3\nerrno=0\n\n`),
    );
    expect(info).toMatchObject({ fwmark: 51820, publicKey: PUB });
    expect(info.peers).toEqual([
      {
        publicKey: C,
        endpoint: null,
        allowedIps: [],
        latestHandshake: 0,
        rxBytes: 3,
        txBytes: 0,
        persistentKeepalive: 0,
      },
    ]);
    const bare = new InterfaceReader("wg0").readUapi(Buffer.from("errno=0\n\n"));
    expect(bare).toMatchObject({ privateKey: null, publicKey: null, listenPort: 0, peers: [] });
  });

  it("keeps unchanged peers' objects in any order, and sees a block that grew by a line", () => {
    const reader = new InterfaceReader("wg0");
    const first = reader.readUapi(uapi(block(A, 1), block(B, 2)));
    const second = reader.readUapi(uapi(block(B, 2), `${block(A, 1)}allowed_ip=10.9.0.0/24\n`));
    expect(second.peers[0]).toBe(first.peers[1]);
    expect(second.peers[1]?.allowedIps).toEqual(["10.0.0.2/32", "10.1.0.0/16", "10.9.0.0/24"]);
    expect(reader.changes.changed.map((p) => p.publicKey)).toEqual([A]);
    expect(reader.peer(B)).toBe(first.peers[1]);
  });

  it("tells keys apart whose first bytes are the same (one hash), as they come and go", () => {
    // Two keys sharing their first 8 hex digits land in one bucket.
    const twin = Buffer.from(`${hex(A).slice(0, 8)}${hex(B).slice(8)}`, "hex").toString("base64");
    const reader = new InterfaceReader("wg0");
    const first = reader.readUapi(uapi(block(A, 1), block(twin, 2)));
    expect(first.peers.map((p) => p.publicKey)).toEqual([A, twin]);
    // Nothing changed: the same list (in the order of the read that made it).
    const again = reader.readUapi(uapi(block(twin, 2), block(A, 1)));
    expect(again.peers).toBe(first.peers);
    expect(reader.changes.changed).toEqual([]);
    reader.readUapi(uapi(block(twin, 2)));
    expect(reader.changes.removed).toEqual([A]);
    expect(reader.peer(A)).toBeUndefined();
    expect(reader.peer(twin)).toBe(first.peers[1]);
    const back = reader.readUapi(uapi(block(A, 5), block(twin, 2)));
    expect(back.peers[0]).toMatchObject({ publicKey: A, rxBytes: 5 });
    expect(back.peers[1]).toBe(first.peers[1]);
  });

  it("tells a changed read as a delta from the list before it: changed and removed peers, the rest the same objects", () => {
    const reader = new InterfaceReader("wg0");
    const first = reader.readDump(dump(line(A, 1), line(B, 2)));
    expect(first.delta).toBeUndefined(); // nothing to be a delta from
    const second = reader.readDump(dump(line(B, 2), line(C, 1)));
    expect(second.delta?.from).toBe(first.peers);
    expect(second.delta?.changed.map((p) => p.publicKey)).toEqual([C]);
    expect(second.delta?.removed).toEqual([A]);
    expect(second.peers.find((p) => p.publicKey === B)).toBe(first.peers.find((p) => p.publicKey === B));
    // Nothing changed: the list before, which needs no delta.
    const third = reader.readDump(dump(line(B, 2), line(C, 1)));
    expect(third.peers).toBe(second.peers);
    expect(third.delta).toBeUndefined();
    const fourth = reader.readDump(dump(line(B, 3), line(C, 1)));
    expect(fourth.delta?.from).toBe(second.peers);
    expect(fourth.delta?.changed.map((p) => p.rxBytes)).toEqual([3]);
  });

  it("a change of format makes every peer new and does not chain from the read before", () => {
    const reader = new InterfaceReader("wg0");
    reader.readDump(dump(line(A, 1)));
    const before = reader.changes.read;
    reader.readUapi(uapi(block(A, 1)));
    expect(reader.changes.read).toBeGreaterThan(before + 1);
    expect(reader.changes.changed.map((p) => p.publicKey)).toEqual([A]);
    expect(reader.peer(A)?.rxBytes).toBe(1);
    expect(reader.readUapi(uapi(block(A, 1), block(B, 1))).delta?.changed.map((p) => p.publicKey)).toEqual([
      B,
    ]);
    expect(reader.readDump(dump(line(A, 1))).delta).toBeUndefined();
  });

  it("refuses a malformed key with the interface named", () => {
    expect(() => new InterfaceReader("wg0").readUapi(Buffer.from("public_key=zz\nerrno=0\n\n"))).toThrow(
      /unexpected answer from wg0's WireGuard socket/,
    );
  });
});
