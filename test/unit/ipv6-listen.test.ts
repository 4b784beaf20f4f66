// listensOnIpv6Loopback over /proc/net/udp6 texts: WireGuard hears [::1] at its port only when a socket
// is bound to that port on :: or ::1 (as /proc prints them); anything else, or no table, is false.
import { describe, expect, it } from "vitest";
import { listensOnIpv6Loopback, type Udp6Table } from "../../src/wg/ipv6-listen.js";

const HEADER =
  "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops";
const ANY = "00000000000000000000000000000000";
const LOOPBACK = "00000000000000000000000001000000";
/** fe80::1 as /proc prints it (each 32-bit word in little-endian byte order). */
const LINK_LOCAL = "000080FE000000000000000001000000";
/** ::ffff:127.0.0.1: an IPv4-mapped loopback, which does not hear ::1. */
const MAPPED_LOOPBACK = "0000000000000000FFFF00000100007F";

/** One socket's line: `local` and `remote` as "HEXADDRESS:HEXPORT". */
function line(sl: number, local: string, remote = `${ANY}:0000`): string {
  return `  ${sl}: ${local} ${remote} 07 00000000:00000000 00:00000000 00000000     0        0 12345 2 0000000000000000 0`;
}

const table =
  (...lines: string[]): Udp6Table =>
  async () =>
    `${[HEADER, ...lines].join("\n")}\n`;

describe("listensOnIpv6Loopback", () => {
  it("true for a socket bound to :: at the port (the port in upper-case hex: 51820 is CA6C)", async () => {
    expect(await listensOnIpv6Loopback(51820, table(line(123, `${ANY}:CA6C`)))).toBe(true);
  });

  it("true for a socket bound to ::1 at the port", async () => {
    expect(await listensOnIpv6Loopback(51820, table(line(7, `${LOOPBACK}:CA6C`)))).toBe(true);
  });

  it("finds the socket among others, and pads a small port to four digits (53 is 0035)", async () => {
    const t = table(
      line(1, `${LINK_LOCAL}:0222`),
      line(2, `${ANY}:1194`),
      line(3, `${ANY}:0035`),
      line(4, `${LOOPBACK}:C000`),
    );
    expect(await listensOnIpv6Loopback(53, t)).toBe(true);
    expect(await listensOnIpv6Loopback(4500, t)).toBe(true);
    expect(await listensOnIpv6Loopback(49152, t)).toBe(true);
  });

  it("false for a socket at the port on another address (link-local, IPv4-mapped loopback)", async () => {
    expect(await listensOnIpv6Loopback(51820, table(line(1, `${LINK_LOCAL}:CA6C`)))).toBe(false);
    expect(await listensOnIpv6Loopback(51820, table(line(1, `${MAPPED_LOOPBACK}:CA6C`)))).toBe(false);
  });

  it("false for :: or ::1 at another port, and for the port only as a remote port", async () => {
    const t = table(
      line(1, `${ANY}:CA6D`),
      line(2, `${LOOPBACK}:CA6B`),
      line(3, `${LINK_LOCAL}:9C40`, `${LINK_LOCAL}:CA6C`),
    );
    expect(await listensOnIpv6Loopback(51820, t)).toBe(false);
  });

  it("false for a table with the header line only, or empty", async () => {
    expect(await listensOnIpv6Loopback(51820, table())).toBe(false);
    expect(await listensOnIpv6Loopback(51820, async () => "")).toBe(false);
  });

  it("false when the table cannot be read (rejects, or throws)", async () => {
    const rejects: Udp6Table = async () => {
      throw Object.assign(new Error("ENOENT: no such file or directory, open '/proc/net/udp6'"), {
        code: "ENOENT",
      });
    };
    const throws: Udp6Table = () => {
      throw new Error("no /proc");
    };
    await expect(listensOnIpv6Loopback(51820, rejects)).resolves.toBe(false);
    await expect(listensOnIpv6Loopback(51820, throws)).resolves.toBe(false);
  });
});
