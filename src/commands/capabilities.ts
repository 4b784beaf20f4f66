import { readFileSync } from "node:fs";

const CAP_NET_ADMIN = 12n;

/** True when this process may configure WireGuard: root, or CAP_NET_ADMIN in its effective set. */
export function hasNetAdmin(): boolean {
  if (process.getuid?.() === 0) return true;
  try {
    const status = readFileSync("/proc/self/status", "utf8");
    const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
    return hex !== undefined && ((BigInt(`0x${hex}`) >> CAP_NET_ADMIN) & 1n) === 1n;
  } catch {
    return false;
  }
}
