// Reads of the host's links and routes through `ip`, shared by the address watch and the MTU check:
// `ip -o` output parsed as monitor lines are (monitor-line.ts), and the default routes of both families.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { type MonitorLine, parseMonitorLine } from "./monitor-line.js";

const execFileAsync = promisify(execFile);

/**
 * What `ip -o ARGS` prints now, parsed as monitor lines are, or null when it cannot be read. Over 16 MiB
 * (a full BGP table: some 200,000 routes) is not read: the links' routes are then not known, as before.
 */
export async function readIpState(args: string[]): Promise<MonitorLine[] | null> {
  try {
    const { stdout } = await execFileAsync("ip", ["-o", ...args], { maxBuffer: 16 << 20 });
    return stdout.split("\n").filter(Boolean).map(parseMonitorLine);
  } catch {
    return null;
  }
}

/** `ip route show default` of both families, as one text; rejects when IPv4's cannot be read. */
export async function readDefaultRoutes(): Promise<string> {
  const { v4, v6 } = await readDefaultRoutesByFamily();
  return `${v4}\n${v6}`;
}

/** `ip route show default` of each family; IPv6's is empty where it cannot be read (no IPv6). */
export async function readDefaultRoutesByFamily(): Promise<{ v4: string; v6: string }> {
  const [v4, v6] = await Promise.all([
    execFileAsync("ip", ["-4", "route", "show", "default"]).then((r) => r.stdout),
    execFileAsync("ip", ["-6", "route", "show", "default"]).then(
      (r) => r.stdout,
      () => "",
    ),
  ]);
  return { v4, v6 };
}

/** A default route: its device, gateway (null: on the link), its own MTU if it has one, its family if known. */
export interface DefaultRoute {
  device: string;
  via: string | null;
  mtu: number | null;
  family?: 4 | 6;
}

/** A route line to a prefix rather than a default route. */
const TO_PREFIX = /^\s*[0-9a-f:.]+(?:\/\d+)?\s/i;

/**
 * The routes of `ip route show default` output (a multipath route's `nexthop` lines each one); a line
 * without a device (`nhid N` alone) or to a prefix is skipped.
 */
export function parseDefaultRoutes(text: string, family?: 4 | 6): DefaultRoute[] {
  const routes: DefaultRoute[] = [];
  for (const line of text.split("\n")) {
    const device = /\bdev (\S+)/.exec(line)?.[1];
    if (!device || TO_PREFIX.test(line)) continue;
    const mtu = /\bmtu (?:lock )?(\d+)\b/.exec(line)?.[1];
    const route: DefaultRoute = {
      device,
      via: /\bvia (\S+)/.exec(line)?.[1] ?? null,
      mtu: mtu ? Number(mtu) : null,
    };
    routes.push(family ? { ...route, family } : route);
  }
  return routes;
}
