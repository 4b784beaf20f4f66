// `tunnelbore netcheck`'s text output.
import { describeNatBehaviour } from "../ice/nat-behaviour.js";
import type { NetcheckReport } from "./netcheck.js";
import type { TurnCheck } from "./turn-check.js";

function turnLine(transport: string, check: TurnCheck): string {
  const head = `TURN over ${transport}:`.padEnd(15);
  if (check.status === "not configured") return `${head}not configured`;
  if (check.status === "failed") return `${head}failed (${check.server}): ${check.reason}`;
  return `${head}ok (${check.server}): relayed address ${check.relayed}`;
}

function mtuLine(mtu: NetcheckReport["mtu"]): string {
  const head = "MTU:".padEnd(15);
  if (!mtu || mtu.uplink === null) return `${head}not known (ip shows no uplink)`;
  const uplink = `uplink ${mtu.uplink}`;
  if (mtu.interface === null || mtu.wireguard === null) return `${head}${uplink}`;
  const wireguard = `${mtu.interface} ${mtu.wireguard}`;
  return `${head}${uplink}, ${wireguard}: ${mtu.warning ?? "full-size packets leave in one piece"}`;
}

export function formatNetcheck(report: NetcheckReport): string {
  const lines = [
    `servers from:  ${report.source}`,
    `local:         ${report.localAddresses.join(", ") || "none"}`,
  ];
  const stun = report.stun;
  if (!stun) lines.push("STUN:          not configured");
  else {
    stun.servers.forEach((server, i) => {
      lines.push(`STUN ${server} from port ${stun.localPort ?? "?"}: ${stun.mapped[i] ?? "no answer"}`);
    });
  }
  lines.push(
    `UDP:           ${report.udpBlocked === null ? "not checked (no STUN server)" : report.udpBlocked ? "blocked (no STUN answer)" : "works"}`,
    `mapping:       ${describeNatBehaviour(report.mapping)}${report.mapping === "unknown" && stun && stun.servers.length < 2 ? " (needs two STUN addresses)" : ""}`,
    turnLine("UDP", report.turn.udp),
    turnLine("TCP", report.turn.tcp),
    turnLine("TLS", report.turn.tls),
    mtuLine(report.mtu),
    "",
  );
  return lines.join("\n");
}
