import { endianness } from "node:os";
import { describe, expect, it } from "vitest";
import { parseProcNetUdp } from "../../src/proxy/port-holder.js";

describe.runIf(endianness() === "LE")("parseProcNetUdp", () => {
  it("reads address, port, uid and inode of each socket, and skips what it cannot read", () => {
    const udp = [
      "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
      "  123: 0100007F:CA6D 00000000:0000 07 00000000:00000000 00:00000000 00000000 65534        0 4242 2 0000000000000000 0",
      "  124: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0",
      "  125: garbage",
      "",
    ].join("\n");
    expect(parseProcNetUdp(udp, 4)).toEqual([
      { address: "127.0.0.1", port: 51821, uid: 65534, inode: 4242 },
      { address: "0.0.0.0", port: 53, uid: 0, inode: 99 },
    ]);
    const udp6 = [
      "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops",
      "  7: 00000000000000000000000000000000:CA6D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 77 2 0000000000000000 0",
      "  9: 00000000000000000000000001000000:CA6D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 79 2 0000000000000000 0",
      "  8: 0000000000000000FFFF00000100007F:CA6D 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000  1000        0 78 2 0000000000000000 0",
    ].join("\n");
    expect(parseProcNetUdp(udp6, 6)).toEqual([
      { address: "::", port: 51821, uid: 1000, inode: 77 },
      { address: "::1", port: 51821, uid: 0, inode: 79 },
      { address: "::ffff:127.0.0.1", port: 51821, uid: 1000, inode: 78 },
    ]);
  });
});
