// WireGuard's sockets as `ss -uanmH` shows them: real output of iproute2 6.1 (wireguard-go's two
// sockets; a socket that dropped datagrams; the one-line -O form), read strictly, and anything else
// "unknown", never a crash or a guess.
import { describe, expect, it } from "vitest";
import {
  isUserspaceInterface,
  parseSocketMemory,
  readWireGuardSockets,
} from "../../src/wg/wireguard-sockets.js";

/** wireguard-go 0.0.20220316 on port 51999: IPv4 and IPv6 (v6only), the kernel's 208 KiB default. */
const WIREGUARD_GO = [
  "UNCONN 0      0      0.0.0.0:51999 0.0.0.0:*",
  "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)",
  "UNCONN 0      0         [::]:51999    [::]:*",
  "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)",
  "",
].join("\n");

/** A whole namespace (no filter): a socket that dropped 2,908 datagrams, a connected one, a dual-stack one. */
const NAMESPACE = [
  "UNCONN 0      0        0.0.0.0:51820   0.0.0.0:*    ",
  "\t skmem:(r0,rb212992,t0,tb212992,f4096,w0,o0,bl0,d2908)",
  "ESTAB  0      0      127.0.0.1:51822 127.0.0.1:51820",
  "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)      ",
  "UNCONN 0      0           [::]:51820      [::]:*    ",
  "\t skmem:(r0,rb14680064,t0,tb212992,f0,w0,o0,bl0,d7)      ",
  "UNCONN 0      0              *:51821         *:*    ",
  "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)      ",
  "",
].join("\n");

/** `ss -uanmHO`: skmem on the socket's own line. */
const ONE_LINE = [
  "UNCONN 0      0      0.0.0.0:51820 0.0.0.0:* skmem:(r0,rb212992,t0,tb212992,f4096,w0,o0,bl0,d2908)",
  "UNCONN 0      0         [::]:51820    [::]:* skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)      ",
].join("\n");

describe("parseSocketMemory", () => {
  it("reads wireguard-go's IPv4 and IPv6 sockets", () => {
    expect(parseSocketMemory(WIREGUARD_GO, 51999)).toEqual([
      { local: "0.0.0.0:51999", receiveBufferBytes: 212992, drops: 0 },
      { local: "[::]:51999", receiveBufferBytes: 212992, drops: 0 },
    ]);
  });

  it("keeps only the sockets bound to the port, with their drops", () => {
    expect(parseSocketMemory(NAMESPACE, 51820)).toEqual([
      { local: "0.0.0.0:51820", receiveBufferBytes: 212992, drops: 2908 },
      { local: "[::]:51820", receiveBufferBytes: 14680064, drops: 7 },
    ]);
    expect(parseSocketMemory(NAMESPACE, 51821)).toEqual([
      { local: "*:51821", receiveBufferBytes: 212992, drops: 0 },
    ]);
    expect(parseSocketMemory(NAMESPACE, 4500)).toEqual([]);
  });

  it("reads the one-line form", () => {
    expect(parseSocketMemory(ONE_LINE, 51820)).toEqual([
      { local: "0.0.0.0:51820", receiveBufferBytes: 212992, drops: 2908 },
      { local: "[::]:51820", receiveBufferBytes: 212992, drops: 0 },
    ]);
  });

  it("reads an address with a scope or a device", () => {
    const text =
      "UNCONN 0 0 [fe80::1]%eth0:51820 [::]:*\n\t skmem:(r0,rb425984,t0,tb212992,f0,w0,o0,bl0,d3)\n";
    expect(parseSocketMemory(text, 51820)).toEqual([
      { local: "[fe80::1]%eth0:51820", receiveBufferBytes: 425984, drops: 3 },
    ]);
  });

  it("has no drops where an old kernel shows none, and no sockets in empty output", () => {
    const old = "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0)\n";
    expect(parseSocketMemory(old, 51820)).toEqual([
      { local: "0.0.0.0:51820", receiveBufferBytes: 212992, drops: null },
    ]);
    expect(parseSocketMemory("", 51820)).toEqual([]);
    expect(parseSocketMemory("\n\n", 51820)).toEqual([]);
  });

  it.each([
    ["a header line", `State Recv-Q Send-Q Local Address:Port Peer Address:Port\n${WIREGUARD_GO}`],
    ["no skmem (ss without -m)", "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n"],
    ["no rb", "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n\t skmem:(r0,t0,tb212992,d0)\n"],
    ["a field that is not a number", "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n\t skmem:(r0,rbx,t0,d0)\n"],
    ["a negative size", "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n\t skmem:(r0,rb-1,d0)\n"],
    ["an address without a port", "UNCONN 0 0 0.0.0.0 0.0.0.0:*\n\t skmem:(r0,rb212992,d0)\n"],
    ["a continuation before any socket", "\t skmem:(r0,rb212992,t0,tb212992,f0,w0,o0,bl0,d0)\n"],
    ["an error message", 'Error: an inet prefix is expected rather than ":x".\n'],
    [
      "a number past what is exact",
      "UNCONN 0 0 0.0.0.0:51820 0.0.0.0:*\n\t skmem:(rb99999999999999999999,d0)\n",
    ],
    ["binary noise", "\u0000\u0001\u0002skmem:(((\n"],
  ])("is unknown for %s", (_what, text) => {
    expect(parseSocketMemory(text, 51820)).toBe("unknown");
  });
});

describe("isUserspaceInterface", () => {
  it("is a tun device only: not loopback, not a name the kernel would refuse", async () => {
    expect(await isUserspaceInterface("lo")).toBe(false);
    expect(await isUserspaceInterface("../../../proc")).toBe(false);
    expect(await isUserspaceInterface("tbt-absent0")).toBe(false);
  });
});

describe("readWireGuardSockets", () => {
  const userspace = async () => true;

  it("is null for the kernel's WireGuard, without running ss", async () => {
    let ran = false;
    const ss = async () => {
      ran = true;
      return WIREGUARD_GO;
    };
    expect(await readWireGuardSockets("wg0", 51999, { ss, isUserspace: async () => false })).toBeNull();
    expect(ran).toBe(false);
  });

  it("asks ss for the port's sockets only, and sums their drops under the smallest buffer", async () => {
    const asked: string[][] = [];
    const ss = async (args: string[]) => {
      asked.push(args);
      return NAMESPACE;
    };
    expect(await readWireGuardSockets("wg0", 51820, { ss, isUserspace: userspace })).toEqual({
      port: 51820,
      receiveBufferBytes: 212992,
      drops: 2915,
      sockets: [
        { local: "0.0.0.0:51820", receiveBufferBytes: 212992, drops: 2908 },
        { local: "[::]:51820", receiveBufferBytes: 14680064, drops: 7 },
      ],
      unknown: null,
    });
    expect(asked).toEqual([["-uanmH", "sport = :51820"]]);
  });

  it("says why the figures are unknown", async () => {
    const read = (ss: (args: string[]) => Promise<string>, port = 51820) =>
      readWireGuardSockets("wg0", port, { ss, isUserspace: userspace });
    const missing = Object.assign(new Error("spawn ss ENOENT"), { code: "ENOENT" });
    expect((await read(() => Promise.reject(missing)))?.unknown).toBe("ss (iproute2) is not installed");
    const failed = Object.assign(new Error("exit 1"), { code: 1, stderr: "Cannot open netlink socket\n" });
    expect((await read(() => Promise.reject(failed)))?.unknown).toBe("ss failed: Cannot open netlink socket");
    expect((await read(async () => "garbage\n"))?.unknown).toBe("unexpected output of ss -m");
    expect(await read(async () => "")).toMatchObject({
      receiveBufferBytes: null,
      drops: null,
      sockets: [],
      unknown: "no UDP socket on port 51820 in this network namespace",
    });
    expect((await read(async () => WIREGUARD_GO, 0))?.unknown).toBe("the interface has no listen port");
  });

  it("has unknown drops when a socket shows none", async () => {
    const ss = async () => `${WIREGUARD_GO}UNCONN 0 0 10.0.0.1:51999 0.0.0.0:*\n\t skmem:(r0,rb212992)\n`;
    expect(await readWireGuardSockets("wg0", 51999, { ss, isUserspace: userspace })).toMatchObject({
      receiveBufferBytes: 212992,
      drops: null,
      unknown: null,
    });
  });
});
