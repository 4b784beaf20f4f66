// WireGuard handshake messages that reach an agent's sockets before our side nominates a pair.
//
// The controlling side nominates a pair as soon as its check with USE-CANDIDATE succeeds, and sends
// WireGuard's held initiation on it at once; the controlled side reports the same nomination only
// after its own triggered check came back and werift's 20 ms check loop noticed (30-40 ms later in the
// lab). Until then no IcePath hooks our sockets, and werift hands the datagram to a Connection.onData
// nobody listens to: the initiation is lost, and WireGuard waits 5 s to retry. Every cold start in
// which the controlling side had traffic waiting lost it this way.
//
// So from the first candidate on, the agent's transports are tapped: the latest handshake message
// (initiation or response) from a remote the check list knows is kept, and given to the path when it
// opens; the path delivers it once it came on a pair whose check succeeded (the remote proved the ICE
// password), unless WireGuard has retried since (5 s). The latest transport datagram is kept the same
// way: a dormant peer (lazy peers, issue 15) woken by WireGuard's data, its session still valid, sends
// that data first, with no handshake before it. The path keeps doing the same for a pair the peer
// sends on before our check of it succeeded (ice-path.ts).
import { type Connection, type Protocol, StunOverTurnProtocol, StunProtocol } from "werift-ice";
import { MessageType, messageType } from "../wireguard/messages.js";
import { hookTransport } from "./path-taps.js";
import { type Address, connectionInternals } from "./werift-internals.js";

/** WireGuard retries after 5 s (REKEY_TIMEOUT) plus up to 1/3 s of jitter: the retry supersedes this one. */
export const EARLY_HANDSHAKE_MAX_AGE_MS = 5500;

/** A handshake message or transport datagram from a remote of the check list, not delivered yet. */
export interface HeldDatagram {
  readonly data: Buffer;
  readonly protocol: Protocol;
  readonly addr: Address;
  /** Date.now() when it arrived. */
  readonly at: number;
}

/** An initiation or a response (never a STUN message: that needs a length field of 0 in 148 or 92 bytes). */
export function isHandshake(data: Buffer): boolean {
  const type = messageType(data);
  return type === MessageType.Initiation || type === MessageType.Response;
}

/** What is kept until its pair is validated: a handshake message, or transport data (never STUN: type 4 has 3 zero bytes after it, STUN a length there). */
export function isKept(data: Buffer): boolean {
  return isHandshake(data) || messageType(data) === MessageType.Transport;
}

/** A pair on `protocol` to `addr` is in the check list (a remote candidate, or one whose check arrived). */
export function knownRemote(conn: Connection, protocol: Protocol, addr: Address): boolean {
  return conn.checkList.some(
    (p) => p.protocol === protocol && p.remoteAddr[1] === addr[1] && p.remoteAddr[0] === addr[0],
  );
}

/** Kept to hand over, if young enough. */
export function heldIsYoung(held: HeldDatagram): boolean {
  return Date.now() - held.at < EARLY_HANDSHAKE_MAX_AGE_MS;
}

export class EarlyHandshake {
  /** The latest handshake message and the latest transport datagram (each kept apart). */
  private handshake: HeldDatagram | null = null;
  private data: HeldDatagram | null = null;
  private readonly tapped = new Set<Protocol>();
  private readonly unhooks: Array<() => void> = [];
  private closed = false;

  constructor(private readonly conn: Connection) {}

  /** Taps the agent's transports that are not tapped yet (called as our candidates appear). */
  tapNew(): void {
    if (this.closed) return;
    for (const protocol of connectionInternals(this.conn).protocols) {
      if (this.tapped.has(protocol)) continue;
      this.tapped.add(protocol);
      if (protocol instanceof StunProtocol) {
        this.unhooks.push(hookTransport(protocol.transport, (data, addr) => this.keep(protocol, data, addr)));
      } else if (protocol instanceof StunOverTurnProtocol) {
        // werift's decoded relay data (it would pass it on to Connection.onData and lose it).
        const sub = protocol.turn.onData.subscribe((data, addr) => {
          this.keep(protocol, data, addr);
        });
        this.unhooks.push(sub.unSubscribe);
      }
    }
  }

  /** Stops tapping and returns what is kept and young, in the order it came, for the path to deliver. */
  take(): HeldDatagram[] {
    this.close();
    const held = [this.handshake, this.data].filter((h): h is HeldDatagram => h !== null && heldIsYoung(h));
    this.handshake = null;
    this.data = null;
    return held.sort((a, b) => a.at - b.at);
  }

  close(): void {
    this.closed = true;
    for (const unhook of this.unhooks.splice(0)) unhook();
  }

  /** True (taken from werift) for a handshake message or data from a remote of the check list. */
  private keep(protocol: Protocol, data: Buffer, addr: Address): boolean {
    if (!isKept(data) || !knownRemote(this.conn, protocol, addr)) return false;
    const held = { data: Buffer.from(data), protocol, addr, at: Date.now() };
    if (isHandshake(data)) this.handshake = held;
    else this.data = held;
    return true;
  }
}
