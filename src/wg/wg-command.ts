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
  /** The mark WireGuard's own socket carries (wg-quick sets it for a full tunnel); 0 when off. */
  fwmark: number;
  peers: WireGuardPeerInfo[];
  /**
   * How `peers` differ from the list the same reader handed out before (absent: unknown, look at all).
   * Never crosses the IPC channel: the parent and the worker each make their own.
   */
  delta?: PeerDelta;
}

/**
 * A read's peers against the reader's previous list `from`: a peer not in `changed` is the very object
 * it was in `from`, and `removed` are the keys gone. A hub's read with one peer's counters moved then
 * needs a look at that peer only, not at its 10,000 (issue 15).
 */
export interface PeerDelta {
  from: WireGuardPeerInfo[];
  changed: WireGuardPeerInfo[];
  removed: string[];
}

/** Parses `wg show IF dump`: a line for the interface, then a line per peer, tab-separated. */
export function parseDump(name: string, text: string): WireGuardInterfaceInfo {
  const lines = text.split("\n").filter((l) => l.length > 0);
  return { ...parseDumpHead(name, lines[0]), peers: lines.slice(1).map((line) => parseDumpPeer(name, line)) };
}

const none = (v: string | undefined) => (v === undefined || v === "(none)" || v === "off" ? null : v);

/** The dump's first line: the interface's own fields. */
export function parseDumpHead(name: string, line: string | undefined): Omit<WireGuardInterfaceInfo, "peers"> {
  const head = line?.split("\t");
  if (!head || head.length < 4) {
    throw new RuntimeError("bad-dump", `unexpected output of wg show ${name} dump`, { interface: name });
  }
  return {
    name,
    privateKey: none(head[0]),
    publicKey: none(head[1]),
    listenPort: Number(head[2]) || 0,
    fwmark: parseFwmark(head[3]),
  };
}

/** One peer's line of the dump (its preshared key, the second field, is not kept). */
export function parseDumpPeer(name: string, line: string): WireGuardPeerInfo {
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
}

/** The dump's fwmark field: "off", or the mark in hex ("0xca6c"). */
function parseFwmark(text: string | undefined): number {
  const mark = text === undefined || text === "off" ? 0 : Number(text);
  return Number.isInteger(mark) && mark > 0 && mark <= 0xffffffff ? mark : 0;
}

async function wg(args: string[], name: string): Promise<string> {
  return (await wgBytes(args, name)).toString();
}

/** `wg ARGS`'s output as bytes (InterfaceReader compares a hub's dump line by line without decoding it). */
async function wgBytes(args: string[], name: string): Promise<Buffer> {
  try {
    const { stdout } = await execFileAsync("wg", args, { maxBuffer: 64 << 20, encoding: "buffer" });
    return stdout;
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: Buffer | string };
    throw wgFailure(name, args, e.code, e.stderr?.toString().trim() ?? "", e.message);
  }
}

/** What a failed `wg` run means for the user: a missing tool or interface, no permission, or else. */
export function wgFailure(
  name: string,
  args: string[],
  code: string | number | undefined,
  stderr: string,
  message = "",
): ConfigError | RuntimeError {
  if (code === "ENOENT") {
    return new ConfigError(
      "wg-missing",
      "the `wg` command is not installed (apt-get install wireguard-tools)",
    );
  }
  // wg says "Unable to access interface: <strerror>" for both of these: the errno decides.
  if (/Operation not permitted|Permission denied/i.test(stderr)) {
    return new ConfigError(
      "not-permitted",
      `wg cannot access interface ${name}: ${stderr} (run as root or with CAP_NET_ADMIN)`,
      { interface: name },
    );
  }
  // Without the kernel module, an interface wireguard-go does not serve either is EPROTONOSUPPORT.
  if (/No such device|does not exist|Protocol not supported/i.test(stderr)) {
    return new ConfigError(
      "interface-missing",
      `WireGuard interface ${name} does not exist (check --interface)`,
      {
        interface: name,
      },
    );
  }
  return new RuntimeError("wg-failed", `wg ${args.slice(0, 3).join(" ")} failed: ${stderr || message}`, {
    interface: name,
  });
}

/** `wg show NAME dump`'s arguments: every read of an interface's peers asks for this. */
export const dumpArgs = (name: string): string[] => ["show", name, "dump"];

export async function readInterface(name: string): Promise<WireGuardInterfaceInfo> {
  return parseDump(name, await wg(dumpArgs(name), name));
}

/** `wg show IF dump` as bytes, for InterfaceReader. */
export function readDump(name: string): Promise<Buffer> {
  return wgBytes(dumpArgs(name), name);
}

export async function setPeerEndpoint(name: string, publicKey: string, endpoint: string): Promise<void> {
  await wg(["set", name, "peer", publicKey, "endpoint", endpoint], name);
}

/** One peer's new endpoint, in a batch. */
export interface EndpointChange {
  publicKey: string;
  endpoint: string;
}

/** A peer of a batch whose endpoint could not be set, and why. */
export interface EndpointChangeFailure {
  publicKey: string;
  error: Error;
}

/**
 * What the arguments of one `wg set` may add up to: far below ARG_MAX (2 MiB with the usual 8 MiB
 * stack, environment included), so that about 1,500 peers go in one invocation.
 */
const MAX_SET_ARGUMENT_BYTES = 192 << 10;

/** The changes in chunks whose `wg set` arguments stay under MAX_SET_ARGUMENT_BYTES. */
export function chunkEndpointChanges(
  changes: EndpointChange[],
  maxBytes = MAX_SET_ARGUMENT_BYTES,
): EndpointChange[][] {
  const chunks: EndpointChange[][] = [];
  let chunk: EndpointChange[] = [];
  let bytes = 0;
  for (const change of changes) {
    // "peer", the key, "endpoint", the endpoint: each with its NUL and its argv pointer.
    const size = 5 + change.publicKey.length + 1 + 9 + change.endpoint.length + 1 + 4 * 8;
    if (chunk.length > 0 && bytes + size > maxBytes) {
      chunks.push(chunk);
      chunk = [];
      bytes = 0;
    }
    chunk.push(change);
    bytes += size;
  }
  if (chunk.length > 0) chunks.push(chunk);
  return chunks;
}

/**
 * Sets many peers' endpoints with one `wg set IF peer A endpoint X peer B endpoint Y ...` per chunk
 * (about 20 ms each, whatever its size, where one per peer took 20 ms per peer). A chunk `wg` refuses
 * is tried again peer by peer, so that one bad peer fails alone; failures are returned, not thrown,
 * except those that concern the whole interface (missing, not permitted, no `wg`).
 */
export async function setPeerEndpoints(
  name: string,
  changes: EndpointChange[],
): Promise<EndpointChangeFailure[]> {
  const failures: EndpointChangeFailure[] = [];
  for (const chunk of chunkEndpointChanges(changes)) {
    const args = ["set", name];
    for (const { publicKey, endpoint } of chunk) args.push("peer", publicKey, "endpoint", endpoint);
    try {
      await wg(args, name);
    } catch (err) {
      if (err instanceof ConfigError || chunk.length === 1) {
        if (err instanceof ConfigError) throw err;
        failures.push({ publicKey: chunk[0]!.publicKey, error: err as Error });
        continue;
      }
      for (const { publicKey, endpoint } of chunk) {
        await setPeerEndpoint(name, publicKey, endpoint).catch((single: unknown) => {
          if (single instanceof ConfigError) throw single;
          failures.push({ publicKey, error: single as Error });
        });
      }
    }
  }
  return failures;
}

/**
 * The tunnel's own ranges (the peers' allowed IPs), never ICE candidates: ICE must not run inside the
 * tunnel. Catch-all routes (/0 to /7) are left out, or nothing would remain.
 */
export function tunnelRanges(info: WireGuardInterfaceInfo): string[] {
  return info.peers.flatMap((p) => p.allowedIps).filter((cidr) => Number(cidr.split("/")[1] ?? 32) >= 8);
}
