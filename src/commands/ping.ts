import { setTimeout as sleep } from "node:timers/promises";
import { parseArgs } from "node:util";
import { controlSocketPath, DEFAULT_RUN_DIR, requestPing, requestStatus } from "../control/control-socket.js";
import { MAX_PING_TIMEOUT_MS, type PingAnswer, type PingPath } from "../control/path-probe.js";
import { ConfigError } from "../errors.js";
import { matchPeerPrefix, onlyRunningInterface } from "./ping-target.js";

/** WireGuard's REJECT_AFTER_TIME: a static path's handshake older than this leaves no usable session. */
export const STATIC_HANDSHAKE_FRESH_S = 180;
/** The fastest probing allowed: the peer answers at most 20 checks a second per host (stun-budget.ts). */
const MIN_INTERVAL_MS = 200;

export const PING_USAGE = `Usage: tunnelbore ping PEER [--interface IF] [-c COUNT] [-i INTERVAL_MS] [-W TIMEOUT_MS]
                       [--json] [--run-dir DIR]

Probes the current path to PEER (a public key, or a unique prefix of one) of a running
\`tunnelbore run\`, COUNT times, printing each round trip as it comes, then sent, received, loss
and min/avg/max. The header names the path kind (direct, relay, static) and its remote, and says
"kernel" when the kernel fast path carries the path's transport data.

A direct or relayed path is probed live: an authenticated STUN binding request on the ICE pair in
use, answered by the peer's Tunnelbore. WireGuard never sees it, and path liveness does not count
it (a ping neither hides nor causes a path's failure).

A static path (a peer without Tunnelbore) is not probed: its remote is a plain WireGuard, which
answers no STUN, and a handshake cannot be forced without disturbing WireGuard's session. ping
shows WireGuard's latest handshake instead, its age and round trip (as Tunnelbore timed it),
marked "not a live probe", and counts the peer reachable while that handshake is under
${STATIC_HANDSHAKE_FRESH_S} s old (a session WireGuard can still use).

Exit status: 0 when a probe was answered (static path: a handshake under ${STATIC_HANDSHAKE_FRESH_S} s old);
1 when the peer is unreachable (no path, or every probe lost); 2 for usage errors (an unknown or
ambiguous PEER, no running interface or several).

Options:
      --interface IF   the interface (default: the only one running)
  -c, --count N        probes to send (default 5, at most 1000)
  -i, --interval MS    between the starts of two probes (default 1000, at least ${MIN_INTERVAL_MS})
  -W, --timeout MS     how long a probe waits for its answer (default 2000, 1..${MAX_PING_TIMEOUT_MS})
      --json           one JSON object when done, instead of lines as probes come
      --run-dir DIR    where the control sockets live (default ${DEFAULT_RUN_DIR})
  -h, --help           this help
`;

interface PingOptions {
  peer: string;
  interfaceName: string | undefined;
  count: number;
  intervalMs: number;
  timeoutMs: number;
  json: boolean;
  runDir: string;
}

function parsePingArgs(argv: string[]): PingOptions | null {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (err) {
    throw new ConfigError("bad-usage", `${(err as Error).message}\n\n${PING_USAGE}`);
  }
  const { values, positionals } = parsed;
  if (values.help) return null;
  if (positionals.length !== 1 || !positionals[0]) {
    throw new ConfigError("bad-usage", `name one PEER\n\n${PING_USAGE}`);
  }
  return {
    peer: positionals[0],
    interfaceName: values.interface,
    count: integer("-c", values.count, 5, 1, 1000),
    intervalMs: integer("-i", values.interval, 1000, MIN_INTERVAL_MS, 3_600_000),
    timeoutMs: integer("-W", values.timeout, 2000, 1, MAX_PING_TIMEOUT_MS),
    json: values.json ?? false,
    runDir: values["run-dir"] ?? DEFAULT_RUN_DIR,
  };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      interface: { type: "string" },
      count: { type: "string", short: "c" },
      interval: { type: "string", short: "i" },
      timeout: { type: "string", short: "W" },
      json: { type: "boolean" },
      "run-dir": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

function integer(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < min || value > max) {
    throw new ConfigError("bad-usage", `${flag} wants a whole number from ${min} to ${max}, not "${text}"`);
  }
  return value;
}

/** One probe as it went: its number, the path it went on (null: none), its round trip or null. */
export interface ProbeResult {
  seq: number;
  path: PingPath | null;
  rttMs: number | null;
}

export interface PingSummary {
  sent: number;
  received: number;
  lossPercent: number;
  /** Null when nothing was received. */
  rtt: { minMs: number; avgMs: number; maxMs: number } | null;
}

export function summarize(results: readonly ProbeResult[]): PingSummary {
  const rtts = results.flatMap((r) => (r.rttMs === null ? [] : [r.rttMs]));
  const sent = results.length;
  const received = rtts.length;
  return {
    sent,
    received,
    lossPercent: sent === 0 ? 0 : Math.round(((sent - received) / sent) * 1000) / 10,
    rtt:
      received === 0
        ? null
        : {
            minMs: Math.min(...rtts),
            avgMs: rtts.reduce((a, b) => a + b, 0) / received,
            maxMs: Math.max(...rtts),
          },
  };
}

/** A round trip as ping shows it: three significant digits below 100 ms. */
export function formatMs(ms: number): string {
  if (ms < 1) return ms.toFixed(3);
  if (ms < 10) return ms.toFixed(2);
  if (ms < 100) return ms.toFixed(1);
  return ms.toFixed(0);
}

/** "direct (kernel) 203.0.113.7:40000". */
export function describePath(path: PingPath): string {
  return `${path.kind}${path.kernel ? " (kernel)" : ""} ${path.remote}`;
}

function samePath(a: PingPath | null, b: PingPath | null): boolean {
  return a?.kind === b?.kind && a?.remote === b?.remote && a?.kernel === b?.kernel;
}

/** The first line, from the first answer. */
export function formatHeader(answer: PingAnswer): string {
  if (!answer.path) return `PING ${answer.peer}: no path (${answer.state})`;
  const how = answer.live ? "STUN binding requests on the ICE pair" : "static path, no live probe";
  return `PING ${answer.peer} via ${describePath(answer.path)}: ${how}`;
}

/** A probe's line; `previous` is the path of the probe before it (a change gets a line of its own). */
export function formatProbe(result: ProbeResult, previous: PingPath | null, timeoutMs: number): string {
  const lines: string[] = [];
  if (result.seq > 1 && result.path && !samePath(result.path, previous)) {
    lines.push(`path changed: ${describePath(result.path)}`);
  }
  if (!result.path) lines.push(`probe ${result.seq}: no path`);
  else if (result.rttMs === null) lines.push(`probe ${result.seq}: no answer within ${timeoutMs} ms`);
  else
    lines.push(`probe ${result.seq}: answer from ${result.path.remote}: time=${formatMs(result.rttMs)} ms`);
  return lines.join("\n");
}

export function formatSummary(peer: string, summary: PingSummary): string {
  const counts = `${summary.sent} probes sent, ${summary.received} received, ${summary.lossPercent}% loss`;
  const rtt = summary.rtt
    ? `, rtt min/avg/max = ${formatMs(summary.rtt.minMs)}/${formatMs(summary.rtt.avgMs)}/${formatMs(summary.rtt.maxMs)} ms`
    : "";
  return `--- ${peer} ping statistics ---\n${counts}${rtt}`;
}

type StaticAnswer = Extract<PingAnswer, { live: false }>;

/** A static path's report: WireGuard's latest handshake, not a live probe. */
export function formatStatic(answer: StaticAnswer): string {
  const age = answer.handshakeAgeS;
  const rtt = answer.handshakeRttMs === null ? "not timed" : `${formatMs(answer.handshakeRttMs)} ms`;
  const latest =
    age === null ? "no handshake with the peer yet" : `latest handshake ${age} s ago, its round trip ${rtt}`;
  const verdict = staticReachable(answer)
    ? `reachable: a handshake under ${STATIC_HANDSHAKE_FRESH_S} s old`
    : `unreachable: no handshake in the last ${STATIC_HANDSHAKE_FRESH_S} s`;
  return `not a live probe: ${latest}\n--- ${answer.peer} ---\n${verdict}`;
}

export function staticReachable(answer: StaticAnswer): boolean {
  return answer.handshakeAgeS !== null && answer.handshakeAgeS < STATIC_HANDSHAKE_FRESH_S;
}

export async function pingCommand(argv: string[]): Promise<number> {
  const options = parsePingArgs(argv);
  if (!options) {
    process.stdout.write(PING_USAGE);
    return 0;
  }
  const interfaceName = options.interfaceName ?? (await onlyRunningInterface(options.runDir));
  const socket = controlSocketPath(options.runDir, interfaceName);
  const status = await requestStatus(socket);
  const peer = matchPeerPrefix(
    options.peer,
    status.peers.map((p) => p.publicKey),
    interfaceName,
  );
  const out = (text: string) => {
    if (!options.json) process.stdout.write(`${text}\n`);
  };
  // Ctrl-C ends the probes early; the summary still comes, as with ping.
  const interrupted = new AbortController();
  const onInterrupt = () => interrupted.abort();
  process.once("SIGINT", onInterrupt);
  const results: ProbeResult[] = [];
  let first: PingAnswer | null = null;
  let staticAnswer: StaticAnswer | null = null;
  try {
    for (let seq = 1; seq <= options.count && !interrupted.signal.aborted; seq++) {
      const startedAt = Date.now();
      const answer = await requestPing(socket, { peer, timeoutMs: options.timeoutMs });
      if (!first) {
        first = answer;
        out(formatHeader(answer));
      }
      if (answer.path && !answer.live) {
        staticAnswer = answer;
        out(formatStatic(answer));
        break;
      }
      const result: ProbeResult = { seq, path: answer.path, rttMs: answer.path ? answer.rttMs : null };
      out(formatProbe(result, results.at(-1)?.path ?? first.path, options.timeoutMs));
      results.push(result);
      if (seq === options.count) break;
      const wait = options.intervalMs - (Date.now() - startedAt);
      if (wait > 0) await sleep(wait, undefined, { signal: interrupted.signal }).catch(() => undefined);
    }
  } finally {
    process.off("SIGINT", onInterrupt);
  }
  const summary = summarize(results);
  if (results.length > 0) out(formatSummary(peer, summary));
  const reachable = summary.received > 0 || (staticAnswer !== null && staticReachable(staticAnswer));
  if (options.json) {
    const report = {
      interface: interfaceName,
      peer,
      state: (staticAnswer ?? first)?.state ?? null,
      path: staticAnswer?.path ?? results.findLast((r) => r.path)?.path ?? null,
      live: staticAnswer === null,
      probes: results,
      ...summary,
      ...(staticAnswer && {
        handshakeAgeS: staticAnswer.handshakeAgeS,
        handshakeRttMs: staticAnswer.handshakeRttMs,
      }),
      reachable,
    };
    process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  }
  return reachable ? 0 : 1;
}
