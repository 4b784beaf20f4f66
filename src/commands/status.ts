import { parseArgs } from "node:util";
import { controlSocketPath, DEFAULT_RUN_DIR, requestStatus } from "../control/control-socket.js";
import type { StatusReport } from "../control/status.js";
import { ConfigError } from "../errors.js";
import type { IcePairFacts } from "../peer/peer.js";
import { describePrivileges } from "../privsep/privilege-status.js";
import type { ForwardingStatus } from "../proxy/kernel-fast-path-choice.js";
import { formatBufferSize, isSmallReceiveBuffer } from "../wg/receive-buffer-check.js";
import type { WireGuardSocketStatus } from "../wg/wireguard-sockets.js";
import { askEveryInterface, runningInterfaces } from "./running-interfaces.js";

export const STATUS_USAGE = `Usage: tunnelbore status [--interface IF] [--json] [--run-dir DIR]

Shows each peer of a running \`tunnelbore run\`: state, path, remote address, round-trip time,
last handshake and bytes each way; with a userspace WireGuard (wireguard-go), its socket's receive
buffer and drops. Without --interface: every interface running, one section each (in JSON, a list
of them).

Options:
  -i, --interface IF   the interface (default: every one running)
      --json           machine-readable output
      --run-dir DIR    where the control sockets live (default ${DEFAULT_RUN_DIR})
  -h, --help           this help
`;

export async function statusCommand(argv: string[]): Promise<number> {
  let values: { interface?: string; json?: boolean; "run-dir"?: string; help?: boolean };
  try {
    values = parseArgs({
      args: argv,
      strict: true,
      options: {
        interface: { type: "string", short: "i" },
        json: { type: "boolean" },
        "run-dir": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }).values;
  } catch (err) {
    throw new ConfigError("bad-usage", `${(err as Error).message}\n\n${STATUS_USAGE}`);
  }
  if (values.help) {
    process.stdout.write(STATUS_USAGE);
    return 0;
  }
  const runDir = values["run-dir"] ?? DEFAULT_RUN_DIR;
  if (values.interface !== undefined) {
    const report = await requestStatus(controlSocketPath(runDir, values.interface));
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatus(report));
    return 0;
  }
  return everyInterfaceStatus(runDir, values.json === true);
}

/** One section per interface running (a JSON list); a stale socket is noted, another failure exits 1. */
async function everyInterfaceStatus(runDir: string, json: boolean): Promise<number> {
  const names = await runningInterfaces(runDir);
  const answers = await askEveryInterface(names, (name) => requestStatus(controlSocketPath(runDir, name)));
  const reports = answers.flatMap((a) => (a.ok ? [a.value] : []));
  const failed = answers.flatMap((a) => (a.ok ? [] : [a]));
  for (const failure of failed) process.stderr.write(`tunnelbore status: ${failure.message}\n`);
  if (reports.length === 0 && failed.every((f) => f.stale)) {
    throw new ConfigError(
      "not-running",
      `no tunnelbore run is active (no control socket answers in ${runDir})`,
    );
  }
  process.stdout.write(
    json ? `${JSON.stringify(reports, null, 2)}\n` : reports.map((report) => formatStatus(report)).join("\n"),
  );
  return failed.some((f) => !f.stale) ? 1 : 0;
}

function ago(unixSeconds: number): string {
  if (!unixSeconds) return "never";
  const s = Math.max(0, Math.round(Date.now() / 1000 - unixSeconds));
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)}m ago`;
}

function bytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

function since(unixMs: number): string {
  return ago(Math.floor(unixMs / 1000)).replace(/ ago$/, "");
}

/** "introduction server ws://...: connected for 5m" or "...: retrying for 40s (7 failures; last: ECONNREFUSED ...)". */
function formatIntro(intro: NonNullable<StatusReport["intro"]>): string {
  const server = intro.address && intro.address !== intro.url ? `${intro.url} (${intro.address})` : intro.url;
  const head = `introduction server ${server}: ${intro.state} for ${since(intro.since)}`;
  // Several servers: which ones, in the order they are tried.
  const list = (intro.servers?.length ?? 0) > 1 ? `; servers: ${intro.servers?.join(", ")}` : "";
  if (intro.state === "connected" || !intro.lastError) return `${head}${list}`;
  return `${head} (${intro.failures} failed ${intro.failures === 1 ? "attempt" : "attempts"}; last: ${intro.lastError})${list}`;
}

/** The full tunnel's lines: the mark Tunnelbore's sockets carry (or why not), and peers whose traffic would loop. */
function formatTunnelBypass(report: StatusReport): string[] {
  const bypass = report.tunnelBypass;
  const mark = `0x${bypass.fwmark.toString(16)}`;
  const lines: string[] = [];
  if (bypass.state === "active") lines.push(`full tunnel: Tunnelbore's sockets carry the fwmark ${mark}`);
  else if (bypass.state === "unavailable") {
    lines.push(
      bypass.fwmark
        ? `warning: the interface has the fwmark ${mark} (a full tunnel) but Tunnelbore's sockets cannot carry it: ${bypass.reason}`
        : `full tunnels unsupported here: ${bypass.reason}`,
    );
  }
  for (const p of report.peers) {
    if (p.routedIntoTunnel === null) continue;
    lines.push(
      `warning: peer ${p.publicKey.slice(0, 10)}…: ${p.routedIntoTunnel} routes into ${report.interface}; Tunnelbore's datagrams to it would loop through the tunnel (route it outside the tunnel)`,
    );
  }
  return lines;
}

/** One line: where transport data is forwarded, and why not in the kernel. */
export function formatForwarding(forwarding: ForwardingStatus): string {
  const io = forwarding.userSpaceIo === "native" ? "batched I/O" : "dgram, one datagram per call";
  if (forwarding.mode === "kernel")
    return `forwarding: kernel fast path on ${forwarding.interfaces.join(", ")}; user space (handshakes, fallback): ${io}`;
  return `forwarding: user space, ${io}${forwarding.reason ? ` (kernel fast path: ${forwarding.reason})` : ""}`;
}

/** One line: a userspace WireGuard's socket buffer and its drops, the cause of poor throughput when small. */
export function formatWireGuardSocket(socket: WireGuardSocketStatus): string {
  if (socket.unknown !== null || socket.receiveBufferBytes === null)
    return `wireguard socket: unknown (${socket.unknown ?? "no receive buffer shown"})`;
  const drops = socket.drops === null ? "drops unknown" : `${socket.drops.toLocaleString("en-US")} dropped`;
  const advice = isSmallReceiveBuffer(socket)
    ? " (under 1 MiB: drops datagrams at speed; upgrade wireguard-go or raise net.core.rmem_default)"
    : "";
  return `wireguard socket: ${formatBufferSize(socket.receiveBufferBytes)} receive buffer, ${drops}${advice}`;
}

/** The ICE pair's candidate types, ours first: "srflx->relay", "relay/tcp->srflx"; "-" off ICE. */
export function formatPair(pair: IcePairFacts | null | undefined): string {
  if (!pair) return "-";
  const transport = pair.localType === "relay" && pair.relayTransport ? `/${pair.relayTransport}` : "";
  return `${pair.localType}${transport}->${pair.remoteType}`;
}

export function formatStatus(report: StatusReport): string {
  const header = ["PEER", "STATE", "REMOTE", "PAIR", "LOOPBACK", "RTT", "HANDSHAKE", "SENT", "RECEIVED"];
  const rows = report.peers.map((p) => [
    `${p.publicKey.slice(0, 10)}…`,
    p.state,
    p.kernelFastPath ? `${p.remote ?? "-"} (kernel)` : (p.remote ?? "-"),
    formatPair(p.pair),
    // Where WireGuard hears the peer from, as `wg show` lists it.
    p.wireguardHearsLoopback6 && p.loopback6 ? p.loopback6 : p.loopback,
    p.rttMs === null ? "-" : `${p.rttMs} ms`,
    ago(p.lastHandshake),
    bytes(p.txBytes),
    bytes(p.rxBytes),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  const dropped = Object.entries(report.drops)
    .filter(([, n]) => n > 0)
    .map(([reason, n]) => `${reason} ${n}`)
    .join(", ");
  return [
    `interface ${report.interface}  catch-all ${report.catchAll}  wireguard port ${report.wireguardPort}`,
    ...(report.waitingFor ? [`starting: waiting for ${report.waitingFor}`] : []),
    ...report.warnings.map((w) => `warning: ${w}`),
    ...(report.intro ? [formatIntro(report.intro)] : []),
    line(header),
    ...rows.map(line),
    ...report.peers.flatMap((p) =>
      p.notDirectReason ? [`why not direct: ${p.publicKey.slice(0, 10)}…: ${p.notDirectReason}`] : [],
    ),
    `dropped: ${dropped || "none"}`,
    ...formatTunnelBypass(report),
    formatForwarding(report.forwarding),
    ...(report.wireguardSocket ? [formatWireGuardSocket(report.wireguardSocket)] : []),
    ...(report.privileges ? [describePrivileges(report.privileges)] : []),
    "",
  ].join("\n");
}
