import type { Logger } from "../log.js";
import type { PrivilegedOps } from "../privsep/privileged-ops.js";
import type { WireGuardPeerInfo } from "./wg-command.js";

/** A peer whose WireGuard endpoint is to point at its L(P), as one sync of the interface found it. */
export interface Takeover {
  /** The peer as `wg show` showed it (the nudge reads its counters from before the change). */
  wireguard: WireGuardPeerInfo;
  /** Its L(P), "127.a.b.c:port". */
  loopback: string;
  /** The real endpoint WireGuard had, to remember and restore; null when it had none. */
  real: string | null;
}

/**
 * Points many peers' WireGuard endpoints at their L(P) at once (a start, a recreated interface, many
 * peers added): in two steps, so that the caller can set the static paths in between. `remember`
 * saves the real endpoints first (one write of the state file), `point` then changes every endpoint
 * in batches of one `wg set` (issue 16: one per peer took 20 ms a peer, 40 s for a hub of 2,000).
 */
export class EndpointTakeover {
  constructor(
    private readonly ops: PrivilegedOps,
    private readonly log: Logger,
  ) {}

  /**
   * Remembers the real endpoints on disk before WireGuard forgets them. Answers the takeovers that
   * may go ahead: a peer whose endpoint could not be remembered keeps its endpoint (nothing could
   * restore it), and a failure to write the file stops them all.
   */
  async remember(takeovers: Takeover[]): Promise<Takeover[]> {
    const reals = takeovers.flatMap((t): [string, string][] =>
      t.real ? [[t.wireguard.publicKey, t.real]] : [],
    );
    if (reals.length === 0) return takeovers;
    const refused = new Set(await this.ops.endpoints.setMany(reals));
    if (refused.size === 0) return takeovers;
    this.log.warn({ peers: refused.size }, "real endpoints not remembered: those peers keep them");
    return takeovers.filter((t) => !refused.has(t.wireguard.publicKey));
  }

  /**
   * Points WireGuard at each L(P); then, where WireGuard had tried the peer before (its initiation went
   * to the old endpoint), a handshake now rather than in 5 s, and after the interface was recreated
   * (`recreated`), one for each peer that lost its endpoint. Answers the keys pointed at L(P).
   */
  async point(takeovers: Takeover[], recreated: boolean): Promise<Set<string>> {
    if (takeovers.length === 0) return new Set();
    const refusals = await this.ops.setPeerEndpoints(
      takeovers.map((t) => ({ publicKey: t.wireguard.publicKey, endpoint: t.loopback })),
    );
    for (const { publicKey, reason } of refusals.slice(0, 10))
      this.log.warn({ peer: publicKey, reason }, "cannot point WireGuard endpoint at loopback");
    const failed = new Set(refusals.map((r) => r.publicKey));
    const pointed = new Set<string>();
    // Each peer at info when a few changed (a peer added), at debug when a whole hub did.
    const level = takeovers.length <= 10 ? "info" : "debug";
    for (const { wireguard, loopback, real } of takeovers) {
      const publicKey = wireguard.publicKey;
      if (failed.has(publicKey)) continue;
      pointed.add(publicKey);
      this.log[level](
        { peer: publicKey, from: real, to: loopback },
        "pointed WireGuard endpoint at loopback",
      );
    }
    this.log.info(
      { peers: pointed.size, ...(failed.size ? { failed: failed.size } : {}) },
      "pointed WireGuard endpoints at loopback",
    );
    // Few, if any: a peer WireGuard had traffic for and no handshake with, or one a restart emptied.
    for (const { wireguard, loopback } of takeovers) {
      const publicKey = wireguard.publicKey;
      if (!pointed.has(publicKey)) continue;
      await this.ops.nudgeIfTrafficWaiting(wireguard, loopback, this.log);
      if (recreated && wireguard.endpoint === null) {
        await this.ops
          .nudgeHandshake(publicKey, wireguard.persistentKeepalive)
          .catch((err: unknown) => this.log.debug({ err, peer: publicKey }, "cannot nudge a handshake"));
      }
    }
    return pointed;
  }
}
