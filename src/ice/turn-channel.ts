// Keeps the TURN channel of a selected relayed pair bound, and says where the kernel fast path finds it.
//
// werift binds a channel to a peer on its first send there (the connectivity checks already do) and
// re-binds it only inside a later send, once 500 s have passed. While the kernel fast path carries the
// path's data, user space sends nothing: the server lets the channel (10 min) and, by RFC 8656, the
// permission (5 min, shorter than werift's 500 s; coturn keeps it with the channel) expire, and drops
// the kernel's ChannelData. So for as long as the pair is selected, the keeper binds the channel at once
// and re-binds it every 2 min: a ChannelBind refreshes the channel and the peer's permission both (RFC
// 8656 §12.2). A failed refresh withdraws the route (user space carries the path, on werift's own
// refresh rules) until a retry succeeds; a server that says it no longer knows the allocation (437)
// ends the keeper (coturn answers such a ChannelBind with 400: retried, in vain, until ICE replaces the
// path). The allocation itself werift refreshes on its own (at 5/6 of its lifetime, sending or not).
import { createSocket } from "node:dgram";
import { isIP } from "node:net";
import { classes, Message, methods, type TurnProtocol } from "werift-ice";
import { RuntimeError } from "../errors.js";
import type { Logger } from "../log.js";
import { type ChannelRoute, sameFiveTuple } from "../proxy/path.js";
import {
  type Address,
  channelKey,
  isUdpTransport,
  transactionErrorCode,
  turnInternals,
} from "./werift-internals.js";

/** Re-bind this often: well inside the permission's 5 min, with time for retries after a failure. */
export const CHANNEL_REFRESH_MS = 120_000;
/** After a failed bind or refresh, try again this soon. */
export const CHANNEL_RETRY_MS = 15_000;
/** RFC 8656 §12: channel numbers a client may bind. */
const CHANNEL_MIN = 0x4000;
const CHANNEL_MAX = 0x7fff;
/** STUN error: the server has no allocation for this client's five-tuple (RFC 8656 §19). */
const ALLOCATION_MISMATCH = 437;

/** What the keeper needs of a TURN client (werift's, through `weriftTurnChannelClient`). */
export interface TurnChannelClient {
  /** How the client reaches its server: "udp", "tcp" or "tls". */
  readonly transport: string;
  /** The client's transport is closed: the allocation is gone with it. */
  readonly closed: boolean;
  /** The TURN server as the client sends to it. */
  readonly server: Address;
  /** Binds a channel to `peer`, or finds the one bound; resolves with its number. */
  bind(peer: Address): Promise<number>;
  /** Sends the ChannelBind of a bound channel again (refreshes the channel and the peer's permission). */
  rebind(channel: number, peer: Address): Promise<void>;
  /** Our end of the allocation's flow (UDP only): the client socket's address and port, as datagrams leave it. */
  localEnd(): Promise<{ address: string; port: number }>;
}

export interface TurnChannelKeeperOptions {
  /** Default CHANNEL_REFRESH_MS (tests shorten it, with a server whose lifetimes are short). */
  refreshIntervalMs?: number;
  /** Default CHANNEL_RETRY_MS. */
  retryIntervalMs?: number;
  log?: Logger;
  /** Called whenever `route` would answer differently. */
  onChange: () => void;
}

/**
 * - binding: the first ChannelBind is under way (or is retried);
 * - bound: the last bind or refresh succeeded;
 * - unbound: the last refresh failed, a retry is scheduled;
 * - gone: the server no longer knows the allocation, or the client closed;
 * - closed: the pair is no longer selected.
 */
export type TurnChannelState = "binding" | "bound" | "unbound" | "gone" | "closed";

/** Binds and keeps bound the channel to one peer address on one TURN allocation. */
export class TurnChannelKeeper {
  private _state: TurnChannelState = "binding";
  private channel: number | null = null;
  private local: { address: string; port: number } | null = null;
  private timer: NodeJS.Timeout | undefined;
  private readonly refreshMs: number;
  private readonly retryMs: number;
  /** The last route reported (as compared by `sameRoute`), to call onChange only on a change. */
  private reported: ChannelRoute | null = null;

  constructor(
    private readonly client: TurnChannelClient,
    private readonly peer: Address,
    private readonly options: TurnChannelKeeperOptions,
  ) {
    this.refreshMs = options.refreshIntervalMs ?? CHANNEL_REFRESH_MS;
    this.retryMs = options.retryIntervalMs ?? CHANNEL_RETRY_MS;
  }

  get state(): TurnChannelState {
    return this._state;
  }

  /**
   * The allocation's five-tuple and the channel, while the channel is bound on a UDP allocation; null
   * otherwise (TCP/TLS, not bound yet, a failed refresh, the allocation gone, closed).
   */
  get route(): ChannelRoute | null {
    const { channel, local } = this;
    if (this._state !== "bound" || this.client.closed || channel === null || !local) return null;
    const [remoteAddress, remotePort] = this.client.server;
    if (isIP(remoteAddress) === 0) return null;
    return { localAddress: local.address, localPort: local.port, remoteAddress, remotePort, channel };
  }

  /** Binds the channel now (werift's, if its checks bound one already) and keeps it bound. */
  start(): void {
    if (this._state === "binding" && !this.timer) void this.attempt();
  }

  /** Stops refreshing (the pair is no longer selected); the channel then lives on werift's rules. */
  close(): void {
    this._state = "closed";
    clearTimeout(this.timer);
    this.timer = undefined;
    this.reported = null;
  }

  private async attempt(): Promise<void> {
    this.timer = undefined;
    const { channel } = this;
    try {
      if (this.client.closed) throw allocationGone(this.peer, channel, "the TURN client is closed");
      if (channel === null) {
        const bound = await this.client.bind(this.peer);
        if (bound < CHANNEL_MIN || bound > CHANNEL_MAX) {
          throw new RuntimeError("turn-channel-bind-failed", `channel number ${bound} out of range`, {
            peer: formatPeer(this.peer),
            channel: bound,
          });
        }
        this.channel = bound;
      } else {
        await this.client.rebind(channel, this.peer);
      }
      if (this.client.transport === "udp" && !this.local) this.local = await this.client.localEnd();
    } catch (err) {
      if (this._state !== "closed") this.failed(err);
      return;
    }
    if (this._state === "closed") return;
    const recovered = this._state === "unbound";
    this.setState("bound");
    if (channel === null || recovered) {
      this.options.log?.debug(
        { channel: this.channel, peer: formatPeer(this.peer), transport: this.client.transport },
        recovered ? "turn channel bound again" : "turn channel bound",
      );
    }
    this.schedule(this.refreshMs);
  }

  private failed(err: unknown): void {
    const gone = err instanceof RuntimeError && err.code === "turn-allocation-gone";
    const wasBound = this._state === "bound";
    this.setState(gone ? "gone" : this._state === "binding" ? "binding" : "unbound");
    const context = {
      err,
      channel: this.channel,
      peer: formatPeer(this.peer),
      transport: this.client.transport,
    };
    if (gone) {
      this.options.log?.warn(
        context,
        "turn allocation gone: user space carries the path until ICE replaces it",
      );
      return;
    }
    // A bind that never succeeded had no route to withdraw: user space carried the path all along.
    if (wasBound) this.options.log?.warn(context, "turn channel refresh failed: user space carries the path");
    else this.options.log?.debug(context, "turn channel bind failed");
    this.schedule(this.retryMs);
  }

  private schedule(delayMs: number): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.attempt(), delayMs);
    this.timer.unref();
  }

  private setState(state: TurnChannelState): void {
    this._state = state;
    const route = this.route;
    if (sameRoute(route, this.reported)) return;
    this.reported = route;
    this.options.onChange();
  }
}

function sameRoute(a: ChannelRoute | null, b: ChannelRoute | null): boolean {
  if (a === null || b === null) return a === b;
  return a.channel === b.channel && sameFiveTuple(a, b);
}

function formatPeer([host, port]: Address): string {
  return isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
}

function allocationGone(peer: Address, channel: number | null, why: string): RuntimeError {
  return new RuntimeError("turn-allocation-gone", `TURN allocation gone: ${why}`, {
    peer: formatPeer(peer),
    channel,
  });
}

/**
 * The source address of a datagram to `server` from a socket bound to the wildcard address: a connected
 * UDP socket's local address (connect sends nothing). Every socket of the process carries the same
 * routing mark (src/wg/tunnel-bypass.ts), so the probe is routed as the TURN client's socket is.
 */
export async function sourceAddressToward(server: Address): Promise<string> {
  const socket = createSocket(isIP(server[0]) === 6 ? "udp6" : "udp4");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(server[1], server[0], () => resolve());
    });
    return socket.address().address;
  } finally {
    socket.close();
  }
}

/** The keeper's view of a werift TURN client (werift-internals.ts lists what it touches). */
export function weriftTurnChannelClient(turn: TurnProtocol): TurnChannelClient {
  const internals = turnInternals(turn);
  return {
    get transport() {
      return turn.transport.type;
    },
    get closed() {
      return turn.transport.closed;
    },
    get server() {
      return internals.server;
    },
    async bind(peer) {
      try {
        // werift's own bookkeeping: its sends and its ChannelData decoding use the same channel.
        return (await turn.getChannel(peer)).number;
      } catch (err) {
        throw turnRequestError("bind", peer, null, err);
      }
    },
    async rebind(channel, peer) {
      const request = new Message(methods.CHANNEL_BIND, classes.REQUEST)
        .setAttribute("CHANNEL-NUMBER", channel)
        .setAttribute("XOR-PEER-ADDRESS", peer);
      try {
        await turn.requestWithRetry(request, internals.server);
      } catch (err) {
        throw turnRequestError("refresh", peer, channel, err);
      }
      // werift would re-bind on its next send once refreshAt has passed: count from this bind.
      const entry = internals.channelByAddr[channelKey(peer)];
      if (entry?.number === channel) {
        entry.refreshAt = Math.floor(Date.now() / 1000) + internals.channelRefreshTime;
      }
    },
    async localEnd() {
      const transport = turn.transport;
      if (!isUdpTransport(transport)) {
        throw new RuntimeError("turn-channel-not-udp", `TURN over ${transport.type} has no UDP flow`);
      }
      const { address, port } = transport.socket.address();
      const wildcard = address === "0.0.0.0" || address === "::";
      return { address: wildcard ? await sourceAddressToward(internals.server) : address, port };
    },
  };
}

/** A typed error for a failed ChannelBind; 437 (or a closed client) means the allocation is gone. */
function turnRequestError(
  what: "bind" | "refresh",
  peer: Address,
  channel: number | null,
  cause: unknown,
): RuntimeError {
  const errorCode = transactionErrorCode(cause);
  const context = { peer: formatPeer(peer), channel, errorCode };
  if (errorCode === ALLOCATION_MISMATCH) {
    return new RuntimeError(
      "turn-allocation-gone",
      "TURN server no longer knows the allocation (437)",
      context,
      {
        cause,
      },
    );
  }
  return new RuntimeError(
    "turn-channel-bind-failed",
    `TURN ChannelBind ${what} failed${errorCode === undefined ? "" : ` (${errorCode})`}`,
    context,
    { cause },
  );
}
