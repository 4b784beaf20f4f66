// The real `wg-quick up FILE` inside a test namespace. This kernel has no WireGuard module, so wg-quick
// falls back to WG_QUICK_USERSPACE_IMPLEMENTATION (wireguard-go), which it starts as a daemon; with
// `AllowedIPs = 0.0.0.0/0, ::/0` it sets up the full tunnel itself (fwmark 51820, table 51820, its rules
// and nft table). The configuration has no DNS line (that would need resolvconf). Interface names are
// unique across parallel tests: wireguard-go's UAPI sockets share /var/run/wireguard. `down` runs
// `wg-quick down`, then ends the daemon by PID should it still run.
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { nsRun, onTeardown, run } from "./netns.js";
import { uniqueInterfaceName, type WireGuardInterface, wireGuardControls } from "./wireguard.js";

export interface WgQuickPeer {
  publicKey: string;
  allowedIps: string[];
  endpoint?: string;
  persistentKeepalive?: number;
}

export interface WgQuickConfig {
  privateKey: string;
  listenPort: number;
  /** The interface's addresses with prefix ("10.77.0.1/24", "fd77::1/64"). */
  addresses: string[];
  /** wg-quick's `Table` ("off": neither routes nor fwmark); by default wg-quick decides. */
  table?: string;
  peers: WgQuickPeer[];
}

export interface WgQuickInterface extends Omit<WireGuardInterface, "process" | "stop"> {
  /** The configuration file wg-quick was given (its name is the interface's). */
  readonly file: string;
  /** The wireguard-go daemon wg-quick started. */
  readonly pid: number;
  /** `wg-quick down FILE`; safe to call twice. */
  down(): Promise<void>;
}

/** The configuration file's text, in wg-quick's syntax. */
export function wgQuickConfigText(config: WgQuickConfig): string {
  const lines = [
    "[Interface]",
    `PrivateKey = ${config.privateKey}`,
    `ListenPort = ${config.listenPort}`,
    `Address = ${config.addresses.join(", ")}`,
  ];
  if (config.table !== undefined) lines.push(`Table = ${config.table}`);
  for (const peer of config.peers) {
    lines.push("", "[Peer]", `PublicKey = ${peer.publicKey}`, `AllowedIPs = ${peer.allowedIps.join(", ")}`);
    if (peer.endpoint) lines.push(`Endpoint = ${peer.endpoint}`);
    if (peer.persistentKeepalive) lines.push(`PersistentKeepalive = ${peer.persistentKeepalive}`);
  }
  return `${lines.join("\n")}\n`;
}

/** `wg-quick up` of `config` in `ns` (interface `name`); the lab's teardown brings it down. */
export async function wgQuickUp(
  ns: string,
  config: WgQuickConfig,
  name = uniqueInterfaceName("tbq"),
): Promise<WgQuickInterface> {
  const dir = await mkdtemp(join(tmpdir(), "tbt-wgq-"));
  const file = join(dir, `${name}.conf`);
  await writeFile(file, wgQuickConfigText(config), { mode: 0o600 });
  let pid = 0;
  let isDown = false;
  const down = async () => {
    if (isDown) return;
    isDown = true;
    unregister();
    // The namespace may be gone already (the lab's teardown ended wireguard-go with it).
    await nsRun(ns, "wg-quick", ["down", file]).catch(() => undefined);
    if (pid !== 0 && (await isWireGuardGo(pid, name))) process.kill(pid, "SIGKILL");
    // wireguard-go removes its UAPI socket only on a clean exit.
    await rm(`/var/run/wireguard/${name}.sock`, { force: true });
    await rm(dir, { recursive: true, force: true });
  };
  const unregister = onTeardown(down);
  try {
    await nsRun(ns, "env", ["WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go", "wg-quick", "up", file]);
    pid = await daemonPid(ns, name);
  } catch (err) {
    await down();
    throw err;
  }
  return { ...wireGuardControls(ns, name), file, pid, down };
}

/** The wireguard-go daemon of interface `name` among the namespace's processes. */
async function daemonPid(ns: string, name: string): Promise<number> {
  const pids = (await run("ip", ["netns", "pids", ns])).split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) if (await isWireGuardGo(pid, name)) return pid;
  throw new Error(`wg-quick up ${name}: no wireguard-go process in ${ns}`);
}

async function isWireGuardGo(pid: number, name: string): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, "utf8").catch(() => "");
  const [cmd, arg] = cmdline.split("\0");
  return cmd?.endsWith("wireguard-go") === true && arg === name;
}
