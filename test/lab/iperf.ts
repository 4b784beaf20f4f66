// Throughput with iperf3 between namespaces: a one-shot server (`-s -1`) and a JSON client.
import { waitFor } from "../support/wait-for.js";
import { nsRun, type SpawnedProcess, spawnInNamespace } from "./netns.js";

export interface IperfServer {
  readonly ns: string;
  readonly port: number;
  readonly process: SpawnedProcess;
  stop(): Promise<void>;
}

async function tcpListening(ns: string, port: number): Promise<boolean> {
  const out = await nsRun(ns, "ss", ["-Hltn", `sport = :${port}`]);
  return out.trim().length > 0;
}

/** Starts `iperf3 -s -1` (serves one test, then exits) and waits until it listens. */
export async function startIperfServer(
  ns: string,
  options: { port?: number; bind?: string } = {},
): Promise<IperfServer> {
  const port = options.port ?? 5201;
  const args = ["-s", "-1", "-p", String(port)];
  if (options.bind) args.push("-B", options.bind);
  const proc = spawnInNamespace(ns, "iperf3", args);
  await waitFor(
    async () => {
      if (proc.child.exitCode !== null) throw new Error(`iperf3 -s exited: ${proc.output().trim()}`);
      return tcpListening(ns, port);
    },
    { what: `iperf3 server in ${ns}:${port}`, timeoutMs: 5000, intervalMs: 20 },
  );
  return {
    ns,
    port,
    process: proc,
    async stop() {
      await proc.stop("SIGTERM");
    },
  };
}

export interface IperfClientOptions {
  port?: number;
  /** Seconds (default 3). */
  duration?: number;
  /** UDP at `bitrate` (e.g. "100M") instead of TCP. */
  udp?: boolean;
  bitrate?: string;
  /** Server sends, client receives (-R). */
  reverse?: boolean;
  parallel?: number;
}

export interface IperfResult {
  /** Goodput as received: TCP sum_received, UDP sum (receiver side). */
  bitsPerSecond: number;
  /** UDP only. */
  lostPercent?: number;
  jitterMs?: number;
  /** TCP only: sender retransmits. */
  retransmits?: number;
}

interface IperfJson {
  error?: string;
  end?: {
    sum_received?: { bits_per_second?: number };
    sum_sent?: { retransmits?: number };
    sum?: { bits_per_second?: number; lost_percent?: number; jitter_ms?: number };
  };
}

/** Parses `iperf3 -J` output into an IperfResult. */
export function parseIperfJson(json: string, udp: boolean): IperfResult {
  const data = JSON.parse(json) as IperfJson;
  if (data.error) throw new Error(`iperf3: ${data.error}`);
  if (udp) {
    const sum = data.end?.sum;
    if (sum?.bits_per_second === undefined) throw new Error("iperf3 UDP result without end.sum");
    return {
      bitsPerSecond: sum.bits_per_second,
      lostPercent: sum.lost_percent ?? 0,
      jitterMs: sum.jitter_ms ?? 0,
    };
  }
  const bps = data.end?.sum_received?.bits_per_second;
  if (bps === undefined) throw new Error("iperf3 TCP result without end.sum_received");
  return { bitsPerSecond: bps, retransmits: data.end?.sum_sent?.retransmits ?? 0 };
}

/** Runs an iperf3 client from `ns` to `server` and returns the measured rate. */
export async function runIperfClient(
  ns: string,
  server: string,
  options: IperfClientOptions = {},
): Promise<IperfResult> {
  const args = ["-c", server, "-p", String(options.port ?? 5201), "-t", String(options.duration ?? 3), "-J"];
  if (options.udp) args.push("-u", "-b", options.bitrate ?? "100M");
  else if (options.bitrate) args.push("-b", options.bitrate);
  if (options.reverse) args.push("-R");
  if (options.parallel) args.push("-P", String(options.parallel));
  let out: string;
  try {
    out = await nsRun(ns, "iperf3", args);
  } catch (err) {
    // iperf3 -J reports failures as JSON on stdout with a non-zero exit; run() kept only the message.
    throw new Error(`iperf3 client in ${ns} to ${server}: ${String(err)}`);
  }
  return parseIperfJson(out, options.udp ?? false);
}

/** One measurement: a one-shot server in `serverNs` at `serverAddress`, a client in `clientNs`. */
export async function measureThroughput(
  serverNs: string,
  serverAddress: string,
  clientNs: string,
  options: IperfClientOptions = {},
): Promise<IperfResult> {
  const server = await startIperfServer(serverNs, { port: options.port ?? 5201 });
  try {
    return await runIperfClient(clientNs, serverAddress, options);
  } finally {
    await server.stop();
  }
}
