// Whether WireGuard can hear from L6(P) ([::1]:port): its listen port bound on an IPv6 socket that
// takes datagrams to ::1 (bound to :: or to ::1). wireguard-go and the kernel module open one beside
// the IPv4 socket wherever the host has IPv6; without it, delivering from [::1] would lose every
// datagram, so the peer keeps its IPv4 L(P). Read from /proc/net/udp6: one file read, no tools.
import { readFile } from "node:fs/promises";
import { parseProcNetUdp } from "../proxy/port-holder.js";

/** /proc/net/udp6's text; a parameter for tests. */
export type Udp6Table = () => Promise<string>;

const readUdp6: Udp6Table = () => readFile("/proc/net/udp6", "utf8");

/** True when a socket in the table is bound to `port` on :: or ::1; false when none is, or unreadable. */
export async function listensOnIpv6Loopback(port: number, table: Udp6Table = readUdp6): Promise<boolean> {
  let text: string;
  try {
    text = await table();
  } catch {
    return false; // no IPv6 in this kernel, or no /proc: the peer keeps its IPv4 L(P)
  }
  return parseProcNetUdp(text, 6).some((s) => s.port === port && (s.address === "::" || s.address === "::1"));
}
