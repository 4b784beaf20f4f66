/**
 * What the introduction server does differently as a node of a cluster (--cluster): logins, peer
 * declarations, envelopes and departures go through the engine (ClusterBus), and what other nodes send
 * reaches the local connections (ClusterRelay). server.ts calls these at the points where, alone, it
 * would decide by itself.
 */
import type { WebSocket } from "ws";
import type { Logger } from "../../src/log.js";
import { CloseCode, type SealedEnvelope } from "../../src/signalling/protocol.js";
import type { AddressCounter, CapVerdict } from "../connection-caps.js";
import type { IntroServerLimits } from "../limits.js";
import type { ClusterLocal, ClusterRelay } from "./cluster-relay.js";
import { stamp } from "./envelope-trace.js";

/** The parts of the server's connection the cluster reads and sets. */
export interface ClusterConnection {
  readonly ws: WebSocket;
  readonly bucket: string;
  state: "awaiting-auth" | "authenticated" | "closing";
  publicKey?: string;
  declared: Set<string>;
  /** The key is recorded in the engine (claimed), and its first declaration too. */
  claimed: boolean;
  clusterDeclared: boolean;
  /** Told to move (4011) at a drain: envelopes for it are held by the cluster. */
  draining: boolean;
}

export type KeyedConnection<C extends ClusterConnection> = C & { publicKey: string };

/** The server's own acts the node calls on. */
export interface ServerActions<C extends ClusterConnection> {
  readonly byKey: Map<string, C>;
  readonly limits: IntroServerLimits;
  readonly declaredCount: AddressCounter;
  readonly log: Logger;
  send(connection: C, message: object): void;
  closeConnection(connection: C, code: number, reason: string): void;
  refuseOverCap(
    connection: C,
    what: "connections" | "declared peers",
    verdict: Exclude<CapVerdict, "ok">,
    cap: number,
  ): void;
  refuseSend(connection: C, to: string, why: "backlogged" | "undeliverable"): void;
  /** Authenticated: welcome it. */
  admit(connection: C, publicKey: string): void;
  /** An envelope left for another node (stats, metrics). */
  relayed(): void;
}

export class ClusterNode<C extends ClusterConnection> {
  constructor(
    readonly relay: ClusterRelay<KeyedConnection<C>>,
    private readonly server: ServerActions<C>,
  ) {}

  /** The key is recorded in the engine (its connection on another node closes 4010) before welcome. */
  claim(connection: C, publicKey: string): void {
    const { limits } = this.server;
    this.relay.bus
      .claim(publicKey, connection.bucket, limits.maxAuthenticatedPerAddress)
      .then((claimed) => {
        if (!claimed) {
          this.server.refuseOverCap(connection, "connections", "address", limits.maxAuthenticatedPerAddress);
          return;
        }
        if (connection.state !== "closing") {
          connection.claimed = true;
          this.server.admit(connection, publicKey);
          return;
        }
        // Closed while the engine recorded it: undo the record.
        const left = { key: publicKey, bucket: connection.bucket, declared: [], moving: false };
        this.relay.bus.leave(left).catch(() => {});
      })
      .catch((error: Error) => {
        this.server.log.warn({ err: error.message }, "cluster: cannot record a login");
        this.server.closeConnection(
          connection,
          CloseCode.serverShutdown,
          "server unavailable: reconnect elsewhere",
        );
      });
  }

  /** The engine counts the address's declared peers on all nodes and tells mutual peers anywhere. */
  declare(connection: C, before: Set<string>, after: Set<string>): void {
    const { declaredCount, limits } = this.server;
    const growth = after.size - before.size;
    const verdict = growth > 0 ? declaredCount.tryAdd(connection.bucket, growth) : "ok";
    if (verdict !== "ok") {
      this.server.refuseOverCap(connection, "declared peers", verdict, limits.maxDeclaredPeersTotal);
      return;
    }
    if (growth < 0) declaredCount.remove(connection.bucket, -growth);
    const first = !connection.clusterDeclared;
    const added = first ? [...after] : [...after].filter((key) => !before.has(key));
    const removed = first ? [] : [...before].filter((key) => !after.has(key));
    connection.declared = after;
    const key = connection.publicKey!;
    const perAddressCap = limits.maxDeclaredPeersPerAddress;
    this.relay.bus
      .declare({ key, bucket: connection.bucket, added, removed, reset: first, perAddressCap })
      .then((result) => {
        if (connection.state !== "authenticated") {
          // Closed meanwhile: what was held for it goes on to wherever it is now, or is held again.
          this.relay.passOn(result.held);
          return;
        }
        if (!result.ok) {
          declaredCount.remove(connection.bucket, Math.max(growth, 0));
          connection.declared = before;
          this.server.refuseOverCap(connection, "declared peers", "address", perAddressCap);
          return;
        }
        const keyed = connection as KeyedConnection<C>;
        for (const peer of result.offline) this.relay.tellPresence(keyed, peer, false);
        for (const peer of result.online) this.relay.tellPresence(keyed, peer, true);
        if (first) this.relay.declaredFirst(keyed, result.held);
      })
      .catch((error: Error) =>
        this.server.log.warn({ err: error.message }, "cluster: cannot record declared peers"),
      );
  }

  /**
   * An envelope whose target is not an ordinary local connection: just arrived here, elsewhere, or
   * moving. False: the target is local and settled, for the server to relay as alone.
   */
  send(connection: C, to: string, envelope: SealedEnvelope, observe: () => void): boolean {
    const from = connection.publicKey!;
    const local = this.server.byKey.get(to);
    if (local?.state === "authenticated" && !local.clusterDeclared) {
      // Just arrived (perhaps moving from another node): it gets this once it has declared its peers.
      if (connection.declared.has(to)) this.relay.deliverLocal(from, to, envelope);
      else this.server.refuseSend(connection, to, "undeliverable");
      return true;
    }
    if (local && !local.draining) return false;
    if (!connection.declared.has(to)) {
      this.server.refuseSend(connection, to, "undeliverable");
      return true;
    }
    observe();
    this.relay
      .send(from, to, envelope)
      .then((delivered) => {
        if (delivered) this.server.relayed();
        else this.server.refuseSend(connection, to, "undeliverable");
      })
      .catch((error: Error) => {
        this.server.log.warn({ err: error.message }, "cluster: cannot route an envelope");
        this.server.refuseSend(connection, to, "undeliverable");
      });
    return true;
  }

  /**
   * The connection ended: recorded in the engine, which tells its peers anywhere (unless it is moving).
   * False: it was never claimed, for the server to forget as alone.
   */
  left(connection: C): boolean {
    const key = connection.publicKey;
    if (!key || !connection.claimed) return false;
    connection.claimed = false;
    if (this.server.byKey.get(key) === connection) this.server.byKey.delete(key);
    this.relay.forget(key);
    const left = {
      key,
      bucket: connection.bucket,
      declared: [...connection.declared],
      moving: connection.draining,
    };
    this.relay.bus
      .leave(left)
      .catch((error: Error) =>
        this.server.log.warn({ err: error.message }, "cluster: cannot record a departure"),
      );
    return true;
  }
}

/** The server's connections as the cluster relay reaches them. */
export function localConnections<C extends ClusterConnection>(
  server: ServerActions<C>,
): ClusterLocal<KeyedConnection<C>> {
  const open = (key: string) => {
    const connection = server.byKey.get(key);
    return connection?.state === "authenticated" ? (connection as KeyedConnection<C>) : undefined;
  };
  return {
    connectionOf: open,
    deliver: (connection, from, envelope) => {
      if (connection.ws.bufferedAmount > server.limits.maxBufferedBytes) return false;
      stamp(envelope);
      server.send(connection, { type: "envelope", from, envelope });
      return true;
    },
    presence: (connection, peer, online) => server.send(connection, { type: "presence", peer, online }),
    undeliverable: (connection, to) => server.send(connection, { type: "undeliverable", to }),
    replace: (key) => {
      const connection = open(key);
      if (connection)
        server.closeConnection(
          connection,
          CloseCode.replaced,
          "replaced by a newer connection with this key",
        );
    },
    connections: () =>
      [...server.byKey.values()].filter(
        (connection): connection is KeyedConnection<C> =>
          connection.claimed && connection.state === "authenticated",
      ),
    members: () =>
      [...server.byKey.values()]
        .filter((connection) => connection.claimed)
        .map((connection) => ({
          key: connection.publicKey!,
          bucket: connection.bucket,
          declared: [...connection.declared],
        })),
  };
}
