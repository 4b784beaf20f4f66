// ICMP reachability and loss measurements with iputils ping inside namespaces.
import { execFile } from "node:child_process";
import { createInterface } from "node:readline";
import { type SpawnedProcess, spawnInNamespace } from "./netns.js";

export interface PingOptions {
  /** Echo requests to send (default 3). */
  count?: number;
  /** Milliseconds between requests (default 200; ping needs root below 200). */
  interval?: number;
  /** Overall deadline in milliseconds (default: enough for count at interval, plus 2 s). */
  timeout?: number;
  /** ICMP payload bytes (ping's -s; default 56). */
  size?: number;
}

export interface PingResult {
  transmitted: number;
  received: number;
  lossPercent: number;
  /** Round-trip times in ms; undefined when nothing came back. */
  rttMin: number | undefined;
  rttAvg: number | undefined;
  rttMax: number | undefined;
  /** True when at least one reply arrived. */
  ok: boolean;
  output: string;
}

/** Parses iputils ping's summary lines. */
export function parsePingOutput(output: string): PingResult {
  const stats = /(\d+) packets transmitted, (\d+) received/.exec(output);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/[\d.]+ ms/.exec(output);
  const transmitted = Number(stats?.[1] ?? 0);
  const received = Number(stats?.[2] ?? 0);
  return {
    transmitted,
    received,
    lossPercent: transmitted === 0 ? 100 : ((transmitted - received) / transmitted) * 100,
    rttMin: rtt ? Number(rtt[1]) : undefined,
    rttAvg: rtt ? Number(rtt[2]) : undefined,
    rttMax: rtt ? Number(rtt[3]) : undefined,
    ok: received > 0,
    output,
  };
}

/** Pings `address` from namespace `ns`. Never throws for loss; throws if ping itself cannot run. */
export function ping(ns: string, address: string, options: PingOptions = {}): Promise<PingResult> {
  const count = options.count ?? 3;
  const interval = options.interval ?? 200;
  const timeout = options.timeout ?? count * interval + 2000;
  const args = ["netns", "exec", ns, "ping", "-n", "-c", String(count), "-i", String(interval / 1000)];
  if (options.size !== undefined) args.push("-s", String(options.size));
  args.push("-w", String(Math.max(1, Math.ceil(timeout / 1000))), address);
  return new Promise((resolve, reject) => {
    execFile("ip", args, { timeout: timeout + 5000 }, (err, stdout, stderr) => {
      // Exit 1 means "no (or not all) replies": a result, not an error.
      const code = (err as { code?: number | string } | null)?.code;
      if (err && code !== 1)
        reject(new Error(`ping ${address} in ${ns} failed: ${stderr.trim() || err.message}`));
      else resolve(parsePingOutput(stdout));
    });
  });
}

/**
 * A background `ping -i 0.2` that records when each reply arrived, to measure outages (e.g. while a
 * host roams). Reply times come from ping's own -D timestamps.
 */
export class ContinuousPing {
  /** Unix ms of every reply, in arrival order. */
  readonly replies: number[] = [];
  private readonly repliedSeqs = new Set<number>();
  private maxSeq = 0;
  private stoppedAt: number | undefined;
  readonly startedAt = Date.now();
  private readonly proc: SpawnedProcess;

  constructor(
    readonly ns: string,
    readonly address: string,
    intervalMs = 200,
  ) {
    // -O reports every request without a reply before the next one, so maxSeq tracks sends too.
    this.proc = spawnInNamespace(ns, "ping", ["-n", "-D", "-O", "-i", String(intervalMs / 1000), address]);
    createInterface({ input: this.proc.child.stdout! }).on("line", (line) => this.onLine(line));
  }

  private onLine(line: string): void {
    const reply = /^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)/.exec(line);
    if (reply) {
      const seq = Number(reply[2]);
      if (this.repliedSeqs.has(seq)) return; // a duplicate
      this.repliedSeqs.add(seq);
      this.maxSeq = Math.max(this.maxSeq, seq);
      this.replies.push(Math.round(Number(reply[1]) * 1000));
      return;
    }
    const missing = /no answer yet for icmp_seq=(\d+)/.exec(line);
    if (missing) this.maxSeq = Math.max(this.maxSeq, Number(missing[1]));
  }

  get receivedCount(): number {
    return this.replies.length;
  }

  /** Requests known to have been sent (up to the latest reply or "no answer yet") without a reply. */
  get lostCount(): number {
    return this.maxSeq - this.repliedSeqs.size;
  }

  /** Replies that arrived at or after `t` (unix ms). */
  receivedSince(t: number): number {
    return this.replies.filter((r) => r >= t).length;
  }

  /**
   * The longest time without a reply, in ms: between consecutive replies, and from the last reply
   * to now (or to `stop`). The time before the first reply is not counted. 0 with no replies.
   */
  largestGapMs(): number {
    if (this.replies.length === 0) return 0;
    let gap = 0;
    for (let i = 1; i < this.replies.length; i++)
      gap = Math.max(gap, this.replies[i]! - this.replies[i - 1]!);
    const end = this.stoppedAt ?? Date.now();
    return Math.max(gap, end - this.replies[this.replies.length - 1]!);
  }

  async stop(): Promise<void> {
    if (this.stoppedAt === undefined) this.stoppedAt = Date.now();
    await this.proc.stop("SIGINT");
  }
}
