// TURN must work whatever the TURN host's routing. For every topology of test/lab/turn-topologies.ts
// (TURN host with a default route, none, blackhole/unreachable routes for private ranges, coturn's
// denied-peer-ip; on a host of its own or on the public segment's router; two servers; over TCP and
// TLS), one lab with two pairs that only a relay connects (symmetric <-> symmetric, port-restricted <->
// symmetric), real wireguard-go and coturn: both pairs relay, and come back on a relay path after coturn
// is restarted (every allocation lost). Gaps are measured in bench/turn-recovery.ts, not here.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Coturn } from "../lab/coturn.js";
import { nsRun, teardownAll } from "../lab/netns.js";
import { ContinuousPing } from "../lab/ping.js";
import { ProductLab } from "../lab/tunnelbore-lab.js";
import { RELAYED_PAIRS, relayedPairs, TURN_TOPOLOGIES } from "../lab/turn-topologies.js";
import { waitFor } from "../support/wait-for.js";

const RELAY_PORTS = { min: 49152, max: 49999 };

afterAll(async () => {
  await teardownAll();
});

/** The local and peer address of every socket `ss` lists in the TURN server's namespace. */
async function sockets(coturn: Coturn, args: string[]): Promise<Array<{ local: string; peer: string }>> {
  const out = await nsRun(coturn.ns, "ss", ["-Hn", ...args]);
  return out
    .split("\n")
    .map((line) => line.trim().split(/\s+/))
    .filter((cols) => cols.length >= 4)
    .map((cols) => ({ local: cols.at(-2)!, peer: cols.at(-1)! }));
}

/** UDP sockets coturn bound for allocations (one per relayed transport address). */
async function allocations(coturn: Coturn): Promise<number> {
  return (await sockets(coturn, ["-ua"])).filter(({ local }) => {
    const port = Number(local.slice(local.lastIndexOf(":") + 1));
    return local.startsWith(`${coturn.address}:`) && port >= RELAY_PORTS.min && port <= RELAY_PORTS.max;
  }).length;
}

/** Both sides of every pair report a relayed path, in the state status calls connected(relay). */
async function bothRelayed(lab: ProductLab): Promise<boolean> {
  for (const [from, to] of RELAYED_PAIRS) {
    for (const [on, peer] of [
      [from, to],
      [to, from],
    ] as const) {
      const status = await lab.peerStatus(on, peer);
      if (status.pathKind !== "relay" || status.state !== "connected(relay)") return false;
    }
  }
  return true;
}

/** Every status of a relayed pair's side that was not connected(relay), sampled every 500 ms for `ms`. */
async function statesOtherThanRelayed(lab: ProductLab, ms: number): Promise<string[]> {
  const seen: string[] = [];
  for (const end = Date.now() + ms; Date.now() < end; ) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (const [from, to] of RELAYED_PAIRS) {
      for (const [on, peer] of [
        [from, to],
        [to, from],
      ] as const) {
        const { state } = await lab.peerStatus(on, peer);
        if (state !== "connected(relay)") seen.push(`${on} -> ${peer}: ${state}`);
      }
    }
  }
  return seen;
}

describe.each(TURN_TOPOLOGIES)("TURN $name", ({ turn }) => {
  let lab: ProductLab;

  beforeAll(async () => {
    lab = await ProductLab.create(relayedPairs(turn));
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
  });

  it("symmetric <-> symmetric and port-restricted <-> symmetric connect over the relay at once", async () => {
    for (const [from, to] of RELAYED_PAIRS) {
      await lab.waitForPing(from, to, 30_000);
      expect(await lab.ping(to, from)).toBe(true);
    }
    await waitFor(() => bothRelayed(lab), { what: "every pair connected(relay) on both sides" });
    // Each TURN server relays (with two, each side allocates on its own).
    for (const coturn of lab.coturns) expect(await allocations(coturn)).toBeGreaterThan(0);
    if (turn.transport === "tcp" || turn.transport === "tls") {
      // Every host reaches TURN over the stream transport asked for (its NAT's address is the peer).
      const port = turn.transport === "tls" ? 5349 : lab.coturn.port;
      const streams = await sockets(lab.coturn, ["-t", "state", "established", `( sport = :${port} )`]);
      for (const host of ["a", "b", "c"]) {
        const nat = lab.lab.host(host).publicAddress;
        expect(streams.some(({ peer }) => peer.startsWith(`${nat}:`))).toBe(true);
      }
    }
  }, 60_000);

  it("coturn restarted (every allocation lost): pings flow again on a relay path", async () => {
    const pings = RELAYED_PAIRS.map(
      ([from, to]) => new ContinuousPing(lab.host(from).ns, lab.host(to).tunnelAddress, 100),
    );
    try {
      await waitFor(() => pings.every((p) => p.receivedCount >= 3), { what: "pings flowing" });
      const restartedAt = Date.now();
      await Promise.all(lab.coturns.map((c) => c.restart()));
      await waitFor(() => pings.every((p) => p.receivedSince(restartedAt) >= 3), {
        what: "pings answered after the restart",
        timeoutMs: 30_000,
      });
    } finally {
      await Promise.all(pings.map((p) => p.stop()));
    }
    await waitFor(() => bothRelayed(lab), { what: "every pair connected(relay) again" });
    for (const coturn of lab.coturns) expect(await allocations(coturn)).toBeGreaterThan(0);
    // Traffic stopped: each side's liveness doubts the silent path and its probes are answered; the
    // controlling side's upgrade attempts come and go. None of that is a repair: connected throughout.
    expect(await statesOtherThanRelayed(lab, 8_000)).toEqual([]);
  }, 60_000);
});

describe("a relayed symmetric pair whose NATs both lose their mappings (TURN host without a default route)", () => {
  let lab: ProductLab;

  beforeAll(async () => {
    lab = await ProductLab.create(relayedPairs({ placement: "host", routing: "none" }));
    await lab.waitForPing("a", "b", 30_000);
  }, 60_000);

  afterAll(async () => {
    await lab?.teardown();
  });

  it("both routers' conntrack flushed at once: pings flow again on a relay path", async () => {
    const ping = new ContinuousPing(lab.host("a").ns, lab.host("b").tunnelAddress, 100);
    try {
      await waitFor(() => ping.receivedCount >= 3, { what: "pings flowing" });
      const flushedAt = Date.now();
      await Promise.all(["a", "b"].map((router) => lab.lab.flushConntrack(router)));
      await waitFor(() => ping.receivedSince(flushedAt) >= 3, {
        what: "pings answered after the flush",
        timeoutMs: 40_000,
      });
    } finally {
      await ping.stop();
    }
    for (const [on, peer] of [
      ["a", "b"],
      ["b", "a"],
    ] as const) {
      await waitFor(async () => (await lab.peerStatus(on, peer)).state === "connected(relay)", {
        what: `${on} connected(relay) to ${peer}`,
      });
    }
  }, 60_000);
});
