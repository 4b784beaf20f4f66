// Counts the WireGuard handshake messages that pass between WireGuard and Tunnelbore on a host's
// loopback, with nftables counters in the host's namespace. A second initiation before the first is
// answered is WireGuard's 5 s retry: a handshake message was lost on the way.
import { nsRun } from "./netns.js";

const TABLE = "tbt_wgmsg";

/** The first four bytes of a WireGuard message (type, then three reserved zero bytes) as nft reads them. */
const MESSAGE_WORD = { initiation: "0x01000000", response: "0x02000000" } as const;

export interface HandshakeCounts {
  /** Initiations WireGuard sent (to L(P) or the catch-all). */
  initiationsSent: number;
  /** Responses WireGuard sent. */
  responsesSent: number;
  /** Initiations Tunnelbore delivered to WireGuard. */
  initiationsReceived: number;
  /** Responses Tunnelbore delivered to WireGuard. */
  responsesReceived: number;
}

const COUNTERS: Record<keyof HandshakeCounts, string> = {
  initiationsSent: "init_sent",
  responsesSent: "resp_sent",
  initiationsReceived: "init_received",
  responsesReceived: "resp_received",
};

/**
 * Installs (or resets) the counters in `ns` for a WireGuard listening on `wireguardPort`, and returns
 * their reader. Both directions are locally generated on `lo`, so the output hook sees them all.
 */
export async function countHandshakes(
  ns: string,
  wireguardPort: number,
): Promise<() => Promise<HandshakeCounts>> {
  const rule = (direction: "sport" | "dport", word: string, counter: string) =>
    `oifname "lo" udp ${direction} ${wireguardPort} @th,64,32 ${word} counter name "${counter}"`;
  await nsRun(
    ns,
    "nft",
    ["-f", "-"],
    `table inet ${TABLE}
delete table inet ${TABLE}
table inet ${TABLE} {
  ${Object.values(COUNTERS)
    .map((c) => `counter ${c} {}`)
    .join("\n  ")}
  chain output {
    type filter hook output priority filter; policy accept;
    ${rule("sport", MESSAGE_WORD.initiation, COUNTERS.initiationsSent)}
    ${rule("sport", MESSAGE_WORD.response, COUNTERS.responsesSent)}
    ${rule("dport", MESSAGE_WORD.initiation, COUNTERS.initiationsReceived)}
    ${rule("dport", MESSAGE_WORD.response, COUNTERS.responsesReceived)}
  }
}
`,
  );
  return async () => {
    const out = await nsRun(ns, "nft", ["list", "counters", "table", "inet", TABLE]);
    const read = (name: string): number => {
      const m = new RegExp(`counter ${name} \\{\\s*packets (\\d+)`).exec(out);
      if (!m) throw new Error(`no nft counter ${name} in ${ns}: ${out}`);
      return Number(m[1]);
    };
    return {
      initiationsSent: read(COUNTERS.initiationsSent),
      responsesSent: read(COUNTERS.responsesSent),
      initiationsReceived: read(COUNTERS.initiationsReceived),
      responsesReceived: read(COUNTERS.responsesReceived),
    };
  };
}
