// Helpers to notice that the WireGuard interface was recreated (wireguard-go or the kernel module
// restarted: sessions and endpoints gone) and to get handshakes going again afterwards.
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

/** The interface's index (it changes when the interface is recreated), or null when unknown. */
export async function interfaceIndex(name: string): Promise<number | null> {
  if (!/^[A-Za-z0-9_.=+-]{1,15}$/.test(name)) return null;
  try {
    const text = await readFile(`/sys/class/net/${name}/ifindex`, "utf8");
    const index = Number(text.trim());
    return Number.isInteger(index) && index > 0 ? index : null;
  } catch {
    return null;
  }
}

/**
 * Makes WireGuard start a handshake with a peer now: turning persistent keepalive on makes it send a
 * keepalive at once (wireguard-go and the kernel both do), and without a session that is a handshake
 * initiation; the setting is then put back. Used after the interface was recreated, where the peer
 * still sends with keys the new interface does not have and would notice only after 15 s.
 */
export async function nudgeHandshake(
  interfaceName: string,
  publicKey: string,
  keepalive: number,
): Promise<void> {
  if (keepalive !== 0) return; // WireGuard sends keepalives (and so handshakes) by itself
  await execFileAsync("wg", ["set", interfaceName, "peer", publicKey, "persistent-keepalive", "25"]);
  await execFileAsync("wg", ["set", interfaceName, "peer", publicKey, "persistent-keepalive", "off"]);
}
