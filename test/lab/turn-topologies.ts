// The TURN deployments Tunnelbore must relay through, whatever the TURN host's routing: shared by the
// end-to-end test (test/e2e/turn-topologies.test.ts) and the benchmark (bench/turn-recovery.ts).
import type { ProductLabSpec, TurnLabSpec } from "./tunnelbore-lab.js";

export interface TurnTopology {
  /** Short, for test names and table rows. */
  readonly name: string;
  readonly turn: TurnLabSpec;
}

/**
 * Every TURN-host routing (a default route, none, blackhole and unreachable routes for the private
 * ranges, coturn's denied-peer-ip), TURN on a host of its own and on the public segment's router, two
 * TURN servers (one per side), and TURN over TCP and TLS.
 */
export const TURN_TOPOLOGIES: readonly TurnTopology[] = [
  { name: "own host, default route", turn: { placement: "host", routing: "default" } },
  { name: "own host, no default route", turn: { placement: "host", routing: "none" } },
  { name: "own host, blackhole private ranges", turn: { placement: "host", routing: "blackhole" } },
  { name: "own host, denied-peer-ip", turn: { placement: "host", routing: "denied-peer-ip" } },
  { name: "public router, no default route", turn: { placement: "router", routing: "none" } },
  {
    name: "public router, unreachable private ranges",
    turn: { placement: "router", routing: "unreachable" },
  },
  {
    name: "two servers (one per side), no default route",
    turn: { placement: "host", routing: "none", servers: 2 },
  },
  {
    name: "over TCP, blackhole private ranges",
    turn: { placement: "host", routing: "blackhole", transport: "tcp" },
  },
  {
    name: "over TLS, public router without default route",
    turn: { placement: "router", routing: "none", transport: "tls" },
  },
];

/**
 * Two relayed pairs in one lab: a and b both behind symmetric NATs, c behind a port-restricted
 * (endpoint-independent mapping) NAT talking to b. Neither pair can punch through, and every host's
 * candidates include a private host address (192.168.x) the TURN server must not be asked to reach.
 */
export function relayedPairs(turn: TurnLabSpec): ProductLabSpec {
  return {
    hosts: [
      { name: "a", nat: "symmetric" },
      { name: "b", nat: "symmetric" },
      { name: "c", nat: "eim" },
    ],
    links: [
      ["a", "b"],
      ["c", "b"],
    ],
    turn,
  };
}

/** The pairs of `relayedPairs`: [from, to, what]. */
export const RELAYED_PAIRS: ReadonlyArray<readonly [string, string, string]> = [
  ["a", "b", "symmetric <-> symmetric"],
  ["c", "b", "port-restricted <-> symmetric"],
];
