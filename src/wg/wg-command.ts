import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { ConfigError, RuntimeError } from "../errors.js";

const execFileAsync = promisify(execFile);

/** One peer of `wg show IF dump`. The preshared key is deliberately not kept. */
export interface WireGuardPeerInfo {
  publicKey: string;
  /** "ip:port", or null when WireGuard has none. */
  endpoint: string | null;
  allowedIps: string[];
  /** Unix seconds, 0 when never. */
  latestHandshake: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number;
}

export interface WireGuardInterfaceInfo {
  name: string;
  /** Held only in memory, to attribute initiations; never logged. */
  privateKey: string | null;
  publicKey: string | null;
  listenPort: number;
  peers: WireGuardPeerInfo[];
}

/** Parses `wg show IF dump`: a line for the interface, then a line per peer, tab-separated. */
export function parseDump(name: string, text: string): WireGuardInterfaceInfo {
  const lines = text.split("\n").filter((l) => l.length > 0);
  const head = lines[0]?.split("\t");
  if (!head || head.length < 4) {
    throw new RuntimeError("bad-dump", `unexpected output of wg show ${name} dump`, { interface: name });
  }
  const none = (v: string | undefined) => (v === undefined || v === "(none)" || v === "off" ? null : v);
  const peers = lines.slice(1).map((line) => {
    const f = line.split("\t");
    if (f.length < 8) {
      throw new RuntimeError("bad-dump", `unexpected peer line in wg show ${name} dump`, { interface: name });
    }
    return {
      publicKey: f[0] as string,
      endpoint: none(f[2]),
      allowedIps: none(f[3])?.split(",") ?? [],
      latestHandshake: Number(f[4]) || 0,
      rxBytes: Number(f[5]) || 0,
      txBytes: Number(f[6]) || 0,
      persistentKeepalive: Number(f[7]) || 0,
    };
  });
  return {
    name,
    privateKey: none(head[0]),
    publicKey: none(head[1]),
    listenPort: Number(head[2]) || 0,
    peers,
  };
}

async function wg(args: string[], name: string): Promise<string> {
  try {
    const { stdout } = await execFileAsync("wg", args, { maxBuffer: 64 << 20 });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === "ENOENT") {
      throw new ConfigError(
        "wg-missing",
        "the `wg` command is not installed (apt-get install wireguard-tools)",
      );
    }
    const stderr = e.stderr?.trim() ?? "";
    if (/No such device|Unable to access interface|does not exist/i.test(stderr)) {
      throw new ConfigError(
        "interface-missing",
        `WireGuard interface ${name} does not exist (check --interface)`,
        {
          interface: name,
        },
      );
    }
    if (/Operation not permitted|Permission denied/i.test(stderr)) {
      throw new ConfigError("not-permitted", "wg needs root or CAP_NET_ADMIN", { interface: name });
    }
    throw new RuntimeError("wg-failed", `wg ${args.slice(0, 3).join(" ")} failed: ${stderr || e.message}`, {
      interface: name,
    });
  }
}

export async function readInterface(name: string): Promise<WireGuardInterfaceInfo> {
  return parseDump(name, await wg(["show", name, "dump"], name));
}

export async function setPeerEndpoint(name: string, publicKey: string, endpoint: string): Promise<void> {
  await wg(["set", name, "peer", publicKey, "endpoint", endpoint], name);
}
