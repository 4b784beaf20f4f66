// Where bench/intro-cluster.ts's failover time goes: each moved client's way back (close seen, attempt,
// TCP, upgrade, challenge, welcome), the engine's view of the dead node (heartbeat expired, subscriber
// gone, taken for dead, its keys reaped), and the kernel's TCP counters over the failover (dropped SYNs
// are resent after 1, 3 and 7 s: a step in the clients' return at one of those).
import { readFileSync } from "node:fs";
import type { Redis } from "ioredis";
import type { MoveTimeline } from "./intro-cluster-client.js";
import { percentile } from "./statistics.js";

const STEPS = ["closed", "firstAttempt", "started", "tcp", "upgraded", "challenge", "welcome"] as const;

const spread = (values: number[]) =>
  values.length === 0
    ? "none"
    : `p50 ${percentile(values, 50)}, p90 ${percentile(values, 90)}, max ${Math.max(...values)} ms`;

/** Lines for the report: each step's time since the kill, and each step's own duration. */
export function describeMoves(moves: MoveTimeline[], killedAt: number): string[] {
  const lines = [`moved clients' way back (${moves.length}), ms since the kill:`];
  STEPS.forEach((step, i) => {
    lines.push(`  ${step.padEnd(13)} ${spread(moves.filter((m) => m[i]! > 0).map((m) => m[i]! - killedAt))}`);
  });
  lines.push("  each step's own time:");
  for (let i = 1; i < STEPS.length; i++) {
    const durations = moves.filter((m) => m[i]! > 0 && m[i - 1]! > 0).map((m) => m[i]! - m[i - 1]!);
    lines.push(`    ${`${STEPS[i - 1]} -> ${STEPS[i]}`.padEnd(27)} ${spread(durations)}`);
  }
  const retried = moves.filter((m) => m[7] > 1);
  lines.push(`  clients that needed more than one attempt: ${retried.length}`);
  // A histogram of the welcomes by 250 ms since the kill: a ramp is CPU, a step is a fixed delay.
  const buckets = new Map<number, number>();
  for (const m of moves) {
    const bucket = Math.floor((m[6] - killedAt) / 250) * 250;
    buckets.set(bucket, (buckets.get(bucket) ?? 0) + 1);
  }
  const histogram = [...buckets].sort((a, b) => a[0] - b[0]).map(([at, n]) => `${at}:${n}`);
  lines.push(`  welcomes per 250 ms since the kill: ${histogram.join(" ")}`);
  return lines;
}

/** The dead node as the engine sees it, polled every 50 ms from just before the kill. */
export class EngineWatch {
  private readonly events: Array<[string, number]> = [];
  private readonly remaining: Array<[number, number]> = [];
  private timer: NodeJS.Timeout | undefined;
  private polling = false;

  constructor(
    private readonly engine: Redis,
    readonly node: string,
  ) {}

  start(): void {
    const seen = new Map<string, boolean>();
    let lastCount = -1;
    const mark = (what: string, now: boolean) => {
      if (seen.get(what) === now) return;
      seen.set(what, now);
      this.events.push([`${what}: ${now}`, Date.now()]);
    };
    this.timer = setInterval(() => {
      if (this.polling) return;
      this.polling = true;
      void this.engine
        .multi()
        .exists(`tb:alive:${this.node}`)
        .call("PUBSUB", "NUMSUB", `tb:n:${this.node}`)
        .sismember("tb:nodes", this.node)
        .sismember("tb:reaping", this.node)
        .scard(`tb:nk:${this.node}`)
        .exec()
        .then((replies) => {
          if (!replies) return;
          const value = (i: number) => replies[i]?.[1];
          mark("heartbeat", value(0) === 1);
          mark("subscribed", ((value(1) as [string, number] | undefined)?.[1] ?? 0) > 0);
          mark("in tb:nodes", value(2) === 1);
          mark("in tb:reaping", value(3) === 1);
          const count = Number(value(4));
          if (count !== lastCount && (count === 0 || lastCount < 0 || Math.abs(count - lastCount) >= 500)) {
            this.remaining.push([count, Date.now()]);
            lastCount = count;
          }
        })
        .catch(() => {})
        .finally(() => {
          this.polling = false;
        });
    }, 50);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  describe(killedAt: number): string[] {
    const since = (at: number) => `${at - killedAt} ms`;
    return [
      `the dead node ${this.node} in the engine (since the kill):`,
      ...this.events.map(([what, at]) => `  ${what} at ${since(at)}`),
      `  its keys (tb:nk) left: ${this.remaining.map(([n, at]) => `${n} at ${since(at)}`).join(", ")}`,
    ];
  }
}

/** TcpExt and Tcp counters of this network namespace (/proc/net/netstat, /proc/net/snmp). */
export function tcpCounters(): Map<string, number> {
  const counters = new Map<string, number>();
  for (const file of ["/proc/net/netstat", "/proc/net/snmp"]) {
    const lines = readFileSync(file, "utf8").trim().split("\n");
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      const prefix = names[0]!;
      if (prefix !== "TcpExt:" && prefix !== "Tcp:") continue;
      for (let j = 1; j < names.length; j++) counters.set(`${prefix}${names[j]}`, Number(values[j]));
    }
  }
  return counters;
}

/** The counters that tell dropped or refused connections, as they moved between two reads. */
export function describeTcpCounters(before: Map<string, number>, after: Map<string, number>): string {
  const watched =
    /ListenOverflows|ListenDrops|ReqQFull|Syncookies|SynRetrans|TCPTimeouts|AbortOnOverflow|AttemptFails|EstabResets|TCPBacklogDrop/;
  const moved = [...after]
    .filter(([name, value]) => watched.test(name) && value !== (before.get(name) ?? 0))
    .map(([name, value]) => `${name} +${value - (before.get(name) ?? 0)}`);
  return `TCP counters over the failover: ${moved.length > 0 ? moved.join(", ") : "none moved"}`;
}
