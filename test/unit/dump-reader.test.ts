import { describe, expect, it } from "vitest";
import { DumpReader } from "../../src/wg/dump-reader.js";
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

describe("DumpReader", () => {
  it("reads what parseDump reads", () => {
    const text = dump(line(A, 1), line(B, 2, "[2001:db8::1]:51820"));
    expect(new DumpReader("wg0").read(text)).toEqual(parseDump("wg0", text.toString()));
  });

  it("hands out the same object for a line that did not change, in any order, and parses changed lines", () => {
    const reader = new DumpReader("wg0");
    const first = reader.read(dump(line(A, 1), line(B, 2)));
    // wireguard-go lists its peers in a different order at every read.
    const second = reader.read(dump(line(B, 2), line(A, 5)));
    expect(second.peers[0]).toBe(first.peers[1]);
    expect(second.peers[1]).not.toBe(first.peers[0]);
    expect(second.peers[1]).toMatchObject({ publicKey: A, rxBytes: 5 });
  });

  it("forgets a removed peer: back again, it is parsed anew", () => {
    const reader = new DumpReader("wg0");
    const first = reader.read(dump(line(A, 1), line(B, 2)));
    expect(reader.read(dump(line(A, 1))).peers).toEqual([first.peers[0]]);
    const back = reader.read(dump(line(A, 1), line(B, 2), line(C, 3)));
    expect(back.peers[1]).toEqual(first.peers[1]);
    expect(back.peers[1]).not.toBe(first.peers[1]);
    expect(back.peers.map((p) => p.publicKey)).toEqual([A, B, C]);
  });

  it("a key listed twice gives two peers, the later line remembered", () => {
    const reader = new DumpReader("wg0");
    const info = reader.read(dump(line(A, 1), line(A, 2)));
    expect(info.peers.map((p) => p.rxBytes)).toEqual([1, 2]);
    expect(reader.read(dump(line(A, 2))).peers[0]).toBe(info.peers[1]);
  });

  it("refuses a malformed dump with the interface named", () => {
    expect(() => new DumpReader("wg0").read(Buffer.from("hello\n"))).toThrow(
      /unexpected output of wg show wg0/,
    );
    expect(() => new DumpReader("wg0").read(dump("short\tline"))).toThrow(
      /unexpected peer line in wg show wg0/,
    );
  });

  it("reads a dump without peers, or without its last newline", () => {
    expect(new DumpReader("wg0").read(Buffer.from(head)).peers).toEqual([]);
    expect(new DumpReader("wg0").read(Buffer.from(`${head}\n${line(A, 1)}`)).peers).toHaveLength(1);
  });
});
