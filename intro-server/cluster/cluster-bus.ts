/**
 * What the introduction server needs from a distributed engine to run as several nodes: where a key
 * is connected, what it declared, per-address counts, and a way to reach another node. The engine
 * (Redis, see redis-cluster-bus.ts) stays behind this interface.
 */
import type { SealedEnvelope } from "../../src/signalling/protocol.js";

/** An envelope on its way between nodes; `src` is the node of the sender, told if it cannot be delivered. */
export interface ClusterEnvelope {
  to: string;
  from: string;
  src: string;
  envelope: SealedEnvelope;
}

/** What arrives at a node from the others. */
export interface ClusterHandlers {
  /** Tell local `to` (if it still declares `peer`) that `peer` came online or went offline. */
  presence(to: string, peer: string, online: boolean): void;
  /** An envelope for a key the sender's node believed connected here. */
  envelope(envelope: ClusterEnvelope): void;
  /** The key logged in on another node: close its connection here with 4010. */
  replaced(key: string): void;
  /** An envelope local `to` sent to `peer` could not be delivered. */
  undeliverable(to: string, peer: string): void;
  /** The engine came back after an outage: write this node's connections to it again. */
  reconnected(): void;
  /** This node's subscription was lost for a while: presence messages may have been missed. */
  resubscribed(): void;
}

/** A connection as the engine records it, to rebuild the shared state after an engine restart. */
export interface ClusterMember {
  key: string;
  bucket: string;
  declared: readonly string[];
}

export type RouteResult = "sent" | "held" | "undeliverable";

export interface DeclareResult {
  /** false: the address's declared peers (counted across nodes) would exceed the cap. */
  ok: boolean;
  /** Mutually declared peers now online, newly added / removed: tell the declaring key. */
  online: string[];
  offline: string[];
  /** First declaration: the envelopes held for the key while it was connected nowhere, taken. */
  held: ClusterEnvelope[];
}

export interface ClusterBus {
  readonly nodeId: string;
  /** Joins: heartbeat, subscription, scripts. Rejects if the engine cannot be reached. */
  start(handlers: ClusterHandlers): Promise<void>;
  /**
   * Records `key` as connected here, if its address holds fewer than `perAddressCap` connections on
   * all nodes; the node that held it before is told to close it (4010).
   */
  claim(key: string, bucket: string, perAddressCap: number): Promise<boolean>;
  /** Changes `key`'s declared peers; presence of mutual peers on any node is announced. */
  declare(change: {
    key: string;
    bucket: string;
    added: readonly string[];
    removed: readonly string[];
    /** First declaration of this connection: forget what an earlier connection declared. */
    reset: boolean;
    perAddressCap: number;
  }): Promise<DeclareResult>;
  /**
   * The connection of `key` here ended. `moving`: closed to move to another node (drain): its peers
   * are not told and envelopes for it are held until it is back or the hold expires.
   */
  leave(left: { key: string; bucket: string; declared: readonly string[]; moving: boolean }): Promise<void>;
  /** Keys about to be told to move (drain): envelopes for them are held from now for a few seconds. */
  markMoving(keys: readonly string[]): Promise<void>;
  /** Sends an envelope to the node of `to`, or holds it if `to` is moving; `checkMutual` at the sender. */
  route(envelope: ClusterEnvelope, checkMutual: boolean): Promise<RouteResult>;
  tellUndeliverable(node: string, to: string, peer: string): void;
  /** Which of `declared` are online and declare `key` too (to resync presence after a lost subscription). */
  onlineOf(key: string, declared: readonly string[]): Promise<string[]>;
  /** After an engine restart: this node's connections, written again. */
  restore(members: readonly ClusterMember[]): Promise<void>;
  /** Leaves: the node's remaining keys go offline at once rather than when its heartbeat expires. */
  close(): Promise<void>;
}
