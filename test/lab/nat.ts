// NAT behaviours as nftables rulesets for the lab's routers and hosts, and a small UDP agent that runs
// inside a namespace (a Node child driven over stdin/stdout) to observe those behaviours for real.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { waitFor } from "../support/wait-for.js";
import { trackChild } from "./netns.js";

/**
 * eim: masquerade keeps the source port whenever the 5-tuple stays unique, so one internal
 *      address:port gets the same public port towards every destination (endpoint-independent
 *      mapping, port-restricted filtering by conntrack: hole punching works).
 * symmetric: `fully-random` picks a new public port for every new 5-tuple (address-and-port-dependent
 *      mapping: what a STUN server sees is useless to any other peer).
 */
export type NatKind = "eim" | "symmetric";

export const NAT_TABLE = "tbt_nat";
export const FILTER_TABLE = "tbt_fw";
export const BLOCK_TABLE = "tbt_block";

/** A complete, atomic replacement of the router's NAT table (safe to apply repeatedly). */
export function natRuleset(kind: NatKind, wan = "wan"): string {
  const flags = kind === "eim" ? "persistent" : "fully-random";
  return `table ip ${NAT_TABLE}
delete table ip ${NAT_TABLE}
table ip ${NAT_TABLE} {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname "${wan}" masquerade ${flags}
  }
}
`;
}

/**
 * Drops unsolicited traffic from the WAN side, as home routers do. This matters for hole punching:
 * an accepted (then refused) early packet from the peer would leave a confirmed conntrack entry for
 * peer -> our public port, and Linux would then map our own outgoing flow to a *different* port.
 * Dropping it in the input hook keeps the entry unconfirmed, so it vanishes.
 */
export function routerFirewall(wan = "wan"): string {
  return `table inet ${FILTER_TABLE}
delete table inet ${FILTER_TABLE}
table inet ${FILTER_TABLE} {
  chain input {
    type filter hook input priority filter; policy accept;
    iifname "${wan}" ct state established,related accept
    iifname "${wan}" meta l4proto icmp accept
    iifname "${wan}" meta l4proto ipv6-icmp accept
    iifname "${wan}" drop
  }
  chain forward {
    type filter hook forward priority filter; policy accept;
    iifname "${wan}" ct state established,related accept
    iifname "${wan}" drop
  }
}
`;
}

function splitHostPort(hostPort: string): { host: string; port: number } {
  const i = hostPort.lastIndexOf(":");
  const port = Number(hostPort.slice(i + 1));
  if (i < 1 || !Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new Error(`expected address:port, got ${hostPort}`);
  }
  return { host: hostPort.slice(0, i), port };
}

export interface BlockOptions {
  /**
   * When given, the uplink lets through only TCP to these address:port endpoints (and their replies):
   * a firewall where UDP is dead and only e.g. TURN over TCP and the introduction server get out.
   * Without it, only UDP is dropped.
   */
  exceptTcpTo?: string | string[];
  /** UDP sent to these address:port endpoints is counted on its way to the drop (see `udpCounterName`). */
  countUdpTo?: string[];
}

/** The named nft counter of UDP sent to `endpoint` (address:port) in the block table. */
export function udpCounterName(endpoint: string): string {
  const { host, port } = splitHostPort(endpoint);
  return `udp_to_${host.replace(/[^0-9a-zA-Z]/g, "_")}_${port}`;
}

/** Filters a host's uplink only, so loopback (Tunnelbore <-> WireGuard) and the tunnel stay open. */
export function blockRuleset(iface: string, options: BlockOptions = {}): string {
  const except =
    options.exceptTcpTo === undefined
      ? undefined
      : Array.isArray(options.exceptTcpTo)
        ? options.exceptTcpTo
        : [options.exceptTcpTo];
  const counted = options.countUdpTo ?? [];
  const counters = counted.map((e) => `counter ${udpCounterName(e)} {}`);
  const out: string[] = counted.map((e) => {
    const { host, port } = splitHostPort(e);
    return `oifname "${iface}" ip daddr ${host} udp dport ${port} counter name "${udpCounterName(e)}"`;
  });
  const inp: string[] = [];
  if (except === undefined) {
    out.push(`oifname "${iface}" meta l4proto udp drop`);
    inp.push(`iifname "${iface}" meta l4proto udp drop`);
  } else {
    for (const e of except) {
      const { host, port } = splitHostPort(e);
      out.push(`oifname "${iface}" ip daddr ${host} tcp dport ${port} accept`);
    }
    out.push(`oifname "${iface}" ct state established,related accept`, `oifname "${iface}" drop`);
    inp.push(`iifname "${iface}" ct state established,related accept`, `iifname "${iface}" drop`);
  }
  return `table inet ${BLOCK_TABLE}
delete table inet ${BLOCK_TABLE}
table inet ${BLOCK_TABLE} {
  ${counters.join("\n  ")}
  chain output {
    type filter hook output priority filter; policy accept;
    ${out.join("\n    ")}
  }
  chain input {
    type filter hook input priority filter; policy accept;
    ${inp.join("\n    ")}
  }
}
`;
}

// The agent: one UDP socket. stdin lines {host,port,data(base64)} are sent; every datagram received
// is reported as a JSON line, and in reflect mode answered with the source address it came from.
const AGENT_SOURCE = `
import dgram from "node:dgram";
import readline from "node:readline";
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const reflect = process.env.TBT_REFLECT === "1";
const s = dgram.createSocket("udp4");
s.on("error", (e) => out({ ev: "error", message: e.message }));
s.on("message", (msg, r) => {
  const from = r.address + ":" + r.port;
  if (reflect) s.send(JSON.stringify({ seen: from, probe: msg.toString() }), r.port, r.address);
  out({ ev: "msg", from, data: msg.toString("base64"), at: Date.now() });
});
s.bind(Number(process.env.TBT_PORT), process.env.TBT_ADDR || undefined, () => {
  const a = s.address();
  out({ ev: "bound", address: a.address, port: a.port });
});
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const c = JSON.parse(line);
  s.send(Buffer.from(c.data, "base64"), c.port, c.host, (err) => {
    if (err) out({ ev: "error", message: err.message });
  });
});
process.stdin.on("end", () => process.exit(0));
`;

export interface AgentMessage {
  /** Source address:port as the receiving socket saw it. */
  from: string;
  data: Buffer;
  at: number;
}

interface AgentEvent {
  ev: "bound" | "msg" | "error";
  address?: string;
  port?: number;
  from?: string;
  data?: string;
  at?: number;
  message?: string;
}

/** A UDP socket living inside a namespace, driven from the test process. */
export class UdpAgent {
  readonly messages: AgentMessage[] = [];
  readonly errors: string[] = [];
  address = "";
  port = 0;
  private readonly exited: Promise<void>;

  private constructor(
    readonly ns: string,
    private readonly child: ReturnType<typeof spawn>,
  ) {
    this.exited = new Promise((r) => child.once("exit", () => r()));
  }

  /** Binds a socket in `ns` (port 0: any). `reflect` answers every datagram with {seen, probe}. */
  static async open(
    ns: string,
    options: { address?: string; port?: number; reflect?: boolean } = {},
  ): Promise<UdpAgent> {
    const child = spawn(
      "ip",
      ["netns", "exec", ns, process.execPath, "--input-type=module", "-e", AGENT_SOURCE],
      {
        stdio: ["pipe", "pipe", "pipe"],
        env: {
          ...process.env,
          TBT_ADDR: options.address ?? "",
          TBT_PORT: String(options.port ?? 0),
          TBT_REFLECT: options.reflect ? "1" : "0",
        },
      },
    );
    trackChild(child);
    const agent = new UdpAgent(ns, child);
    let stderr = "";
    child.stderr?.on("data", (c: Buffer) => {
      stderr += c.toString();
    });
    createInterface({ input: child.stdout! }).on("line", (line) =>
      agent.onEvent(JSON.parse(line) as AgentEvent),
    );
    try {
      await waitFor(
        () => {
          if (child.exitCode !== null) throw new Error(`agent exited: ${stderr.trim()}`);
          if (agent.errors.length > 0) throw new Error(agent.errors.join("; "));
          return agent.port !== 0;
        },
        { what: `UDP agent in ${ns}`, timeoutMs: 5000, intervalMs: 10 },
      );
    } catch (err) {
      await agent.close();
      throw err;
    }
    return agent;
  }

  private onEvent(e: AgentEvent): void {
    if (e.ev === "bound") {
      this.address = e.address ?? "";
      this.port = e.port ?? 0;
    } else if (e.ev === "msg") {
      this.messages.push({ from: e.from ?? "", data: Buffer.from(e.data ?? "", "base64"), at: e.at ?? 0 });
    } else {
      this.errors.push(e.message ?? "unknown error");
    }
  }

  send(to: string, data: string | Buffer): void {
    const { host, port } = splitHostPort(to);
    const payload = (typeof data === "string" ? Buffer.from(data) : data).toString("base64");
    this.child.stdin?.write(`${JSON.stringify({ host, port, data: payload })}\n`);
  }

  /** Resolves with the first message (already received or future) matching `match`. */
  async waitForMessage(match: (m: AgentMessage) => boolean, timeoutMs = 3000): Promise<AgentMessage> {
    let found: AgentMessage | undefined;
    await waitFor(
      () => {
        found = this.messages.find(match);
        return found !== undefined;
      },
      { what: `UDP message in ${this.ns}`, timeoutMs: timeoutMs, intervalMs: 10 },
    );
    return found!;
  }

  async close(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.stdin?.end();
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 2000);
      await this.exited;
      clearTimeout(timer);
    }
  }
}

/** A UDP reflector: answers every datagram with the source address:port it saw. */
export function startUdpReflector(ns: string, address: string, port = 0): Promise<UdpAgent> {
  return UdpAgent.open(ns, { address, port, reflect: true });
}

/** The public address:port a reflector at `reflector` sees for `agent`'s socket (retries over loss). */
export async function mappedAddress(agent: UdpAgent, reflector: string, timeoutMs = 3000): Promise<string> {
  const probe = `probe-${Math.random().toString(36).slice(2)}`;
  const isAnswer = (m: AgentMessage) => m.from === reflector && m.data.toString().includes(probe);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    agent.send(reflector, probe);
    try {
      const m = await agent.waitForMessage(isAnswer, Math.min(500, deadline - Date.now()));
      return (JSON.parse(m.data.toString()) as { seen: string }).seen;
    } catch {
      // lost or late: send again
    }
  }
  throw new Error(`no answer from reflector ${reflector} in ${agent.ns}`);
}

export interface PunchResult {
  /** Whether each side received at least one datagram from the other's expected address. */
  aReceived: boolean;
  bReceived: boolean;
}

/**
 * Simultaneous open: both agents send to the other's public (reflected) address every 50 ms, each
 * punching its own NAT's hole so the other's packets can get in, until both have received one or
 * `durationMs` (the window a failure is judged on) has passed.
 */
export async function holePunch(
  a: UdpAgent,
  aPublic: string,
  b: UdpAgent,
  bPublic: string,
  durationMs = 1500,
): Promise<PunchResult> {
  const tag = Math.random().toString(36).slice(2);
  const result = (): PunchResult => ({
    aReceived: a.messages.some((m) => m.data.toString() === `punch-${tag}-b`),
    bReceived: b.messages.some((m) => m.data.toString() === `punch-${tag}-a`),
  });
  const end = Date.now() + durationMs;
  while (Date.now() < end) {
    a.send(bPublic, `punch-${tag}-a`);
    b.send(aPublic, `punch-${tag}-b`);
    await new Promise((r) => setTimeout(r, 50));
    const r = result();
    if (r.aReceived && r.bReceived) return r;
  }
  // The punch failed for the whole window (that is what is observed): the last datagrams get their
  // flight time before the verdict.
  await new Promise((r) => setTimeout(r, 100));
  return result();
}
