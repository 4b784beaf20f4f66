/**
 * The server's side of the cluster: what arrives from other nodes reaches local connections, and an
 * envelope for a key connected elsewhere (or moving) goes through the bus. The server keeps its own
 * connections; everything another node needs is in the engine (cluster-bus.ts).
 */
import type { Logger } from "../../src/log.js";
import type { SealedEnvelope } from "../../src/signalling/protocol.js";
import type { ClusterBus, ClusterEnvelope, ClusterMember } from "./cluster-bus.js";

/** A local authenticated connection as the relay sees it. */
export interface LocalPeer {
  readonly publicKey: string;
  readonly declared: ReadonlySet<string>;
  /** Its first peers message was recorded in the engine: envelopes may be handed to it. */
  clusterDeclared: boolean;
}

/** What the relay asks of the server. */
export interface ClusterLocal<P extends LocalPeer> {
  /** The authenticated, open local connection of `key`, if any. */
  connectionOf(key: string): P | undefined;
  /** Sends an envelope; false if the connection is too backlogged to take it. */
  deliver(peer: P, from: string, envelope: SealedEnvelope): boolean;
  presence(peer: P, key: string, online: boolean): void;
  undeliverable(peer: P, to: string): void;
  /** Closes the local connection of `key` with 4010: it logged in on another node. */
  replace(key: string): void;
  /** Every local authenticated connection, to write into the engine again after it restarted. */
  members(): ClusterMember[];
  /** The local connections recorded in the engine, to resync their presence. */
  connections(): P[];
}

/** Envelopes that arrive for a connection before its first declaration, per key. */
const MAX_PENDING_PER_KEY = 64;

export class ClusterRelay<P extends LocalPeer> {
  private readonly pending = new Map<string, ClusterEnvelope[]>();
  /** The peers each connection was last told are online, so a resync tells it only what changed. */
  private readonly toldOnline = new WeakMap<P, Set<string>>();

  constructor(
    readonly bus: ClusterBus,
    private readonly local: ClusterLocal<P>,
    private readonly log: Logger,
  ) {}

  start(): Promise<void> {
    return this.bus.start({
      presence: (to, peer, online) => {
        const connection = this.local.connectionOf(to);
        if (!connection?.declared.has(peer)) return;
        // A node writing its connections again (engine restart, false death) tells every mutual peer.
        if (online && this.toldOnline.get(connection)?.has(peer)) return;
        this.tellPresence(connection, peer, online);
      },
      envelope: (envelope) => this.arrived(envelope),
      replaced: (key) => this.local.replace(key),
      undeliverable: (to, peer) => {
        const connection = this.local.connectionOf(to);
        if (connection) this.local.undeliverable(connection, peer);
      },
      reconnected: () => {
        const members = this.local.members();
        this.bus
          .restore(members)
          .then(() => {
            this.log.info({ connections: members.length }, "presence written to the engine again");
            return this.resyncPresence();
          })
          .catch((error: Error) => this.log.warn({ err: error.message }, "cannot restore presence"));
      },
      resubscribed: () => {
        this.resyncPresence().catch((error: Error) =>
          this.log.warn({ err: error.message }, "cannot resync presence"),
        );
      },
    });
  }

  /** Tells a local connection a peer's presence, and remembers it. */
  tellPresence(connection: P, peer: string, online: boolean): void {
    let told = this.toldOnline.get(connection);
    if (!told) {
      told = new Set();
      this.toldOnline.set(connection, told);
    }
    if (online) told.add(peer);
    else told.delete(peer);
    this.local.presence(connection, peer, online);
  }

  /** Presence messages may have been missed: each connection is told what changed since. */
  async resyncPresence(): Promise<void> {
    for (const connection of this.local.connections()) {
      const online = new Set(await this.bus.onlineOf(connection.publicKey, [...connection.declared]));
      const told = this.toldOnline.get(connection) ?? new Set<string>();
      for (const peer of [...told]) if (!online.has(peer)) this.tellPresence(connection, peer, false);
      for (const peer of online) if (!told.has(peer)) this.tellPresence(connection, peer, true);
    }
  }

  /** Sends `from`'s envelope to `to` on another node (or holds it); resolves false if undeliverable. */
  async send(from: string, to: string, envelope: SealedEnvelope): Promise<boolean> {
    const result = await this.bus.route({ to, from, src: this.bus.nodeId, envelope }, true);
    return result !== "undeliverable";
  }

  /** An envelope for a local connection: handed over now, or once it has declared its peers. */
  deliverLocal(from: string, to: string, envelope: SealedEnvelope): void {
    this.arrived({ to, from, src: this.bus.nodeId, envelope });
  }

  /** The connection's first declaration is in the engine: hand it what waited for it (held while it moved). */
  declaredFirst(connection: P, held: readonly ClusterEnvelope[]): void {
    connection.clusterDeclared = true;
    const waiting = this.pending.get(connection.publicKey) ?? [];
    this.pending.delete(connection.publicKey);
    for (const envelope of [...held, ...waiting]) this.arrived(envelope);
  }

  /** Envelopes taken for a connection that closed before they could be handed over. */
  passOn(envelopes: readonly ClusterEnvelope[]): void {
    for (const envelope of envelopes) this.arrived(envelope);
  }

  /** The connection ended: envelopes waiting for its first declaration are undeliverable. */
  forget(key: string): void {
    for (const envelope of this.pending.get(key) ?? [])
      this.bus.tellUndeliverable(envelope.src, envelope.from, key);
    this.pending.delete(key);
  }

  private arrived(envelope: ClusterEnvelope): void {
    const connection = this.local.connectionOf(envelope.to);
    if (!connection) {
      // Closed here meanwhile: on to its new node, or held while it moves.
      this.bus
        .route(envelope, false)
        .then((result) => {
          if (result === "undeliverable")
            this.bus.tellUndeliverable(envelope.src, envelope.from, envelope.to);
        })
        .catch((error: Error) => this.log.debug({ err: error.message }, "cannot reroute an envelope"));
      return;
    }
    if (!connection.clusterDeclared) {
      const waiting = this.pending.get(envelope.to) ?? [];
      if (waiting.length < MAX_PENDING_PER_KEY) waiting.push(envelope);
      else this.bus.tellUndeliverable(envelope.src, envelope.from, envelope.to);
      this.pending.set(envelope.to, waiting);
      return;
    }
    if (
      !connection.declared.has(envelope.from) ||
      !this.local.deliver(connection, envelope.from, envelope.envelope)
    )
      this.bus.tellUndeliverable(envelope.src, envelope.from, envelope.to);
  }
}
