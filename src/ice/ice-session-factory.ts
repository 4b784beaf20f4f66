import type { Logger } from "../log.js";
import type { IceSessionHandlers } from "../peer/peer.js";
import { createCandidateFilter } from "./candidate-filter.js";
import { IceSession, type TurnConfig, type TurnTransportHint } from "./ice-session.js";
import type { IceSignal } from "./ice-signal.js";
import { NatBehaviourProbe } from "./nat-behaviour.js";

export interface IceSessionFactoryOptions {
  /** Interfaces whose addresses never become candidates (the WireGuard interface is always one). */
  excludeInterfaces: string[];
  /** Addresses and ranges never used as candidates (the tunnel's allowed IPs). */
  excludeAddresses: string[];
  /** STUN and TURN servers as they are now (the introduction server's, unless the user gave ours). */
  stunUrls: () => string[];
  turn: () => TurnConfig | undefined;
  logger: Logger;
}

/**
 * Makes the ICE sessions of all peers, with what they share: the candidate exclusions (which follow the
 * tunnel's ranges) and what was learnt about TURN transports on this network.
 */
export class IceSessionFactory {
  private filter: ReturnType<typeof createCandidateFilter>;
  private excludedAddresses: string;
  /** Learnt by any session, used by all: this network lets TURN over TCP out but not over UDP. */
  private readonly turnHint: TurnTransportHint = { udpBlocked: false };
  /** This host's NAT mapping behaviour, learnt once per network and told to every peer. */
  private readonly nat: NatBehaviourProbe;
  /**
   * Whether an address may never be an ICE candidate. Handed to every session once; it asks the
   * current filter, so later changes reach all of them.
   */
  readonly isExcludedAddress = (address: string): boolean => this.filter(address);

  constructor(private readonly options: IceSessionFactoryOptions) {
    this.nat = new NatBehaviourProbe(options.stunUrls, options.logger);
    this.excludedAddresses = options.excludeAddresses.join(",");
    this.filter = createCandidateFilter({
      excludeInterfaces: options.excludeInterfaces,
      excludeAddresses: options.excludeAddresses,
    });
  }

  /** The tunnel's ranges changed (peers or allowed IPs added or removed): exclude the new set. */
  setExcludedAddresses(ranges: string[]): void {
    const joined = ranges.join(",");
    if (joined === this.excludedAddresses) return;
    try {
      this.filter = createCandidateFilter({
        excludeInterfaces: this.options.excludeInterfaces,
        excludeAddresses: ranges,
      });
      this.excludedAddresses = joined;
    } catch (err) {
      this.options.logger.warn(
        { err },
        "tunnel ranges not usable as candidate exclusions; keeping the previous ones",
      );
    }
  }

  /** The network changed: what was learnt about it (UDP to TURN blocked) may no longer hold. */
  networkChanged(): void {
    this.turnHint.udpBlocked = false;
    this.nat.reset();
  }

  create(
    controlling: boolean,
    sendSignal: (signal: IceSignal) => void,
    handlers: IceSessionHandlers,
    logger: Logger,
  ): IceSession {
    this.nat.ensure();
    const session = new IceSession({
      natBehaviour: () => this.nat.current,
      controlling,
      sendSignal,
      stunUrls: this.options.stunUrls(),
      turn: this.options.turn(),
      excludeAddresses: this.isExcludedAddress,
      logger,
      turnHint: this.turnHint,
    });
    return tellPeer(session, handlers);
  }
}

/** Passes the session's events on to its peer's hooks (every session a Peer drives is wired so). */
export function tellPeer(session: IceSession, handlers: IceSessionHandlers): IceSession {
  session.on("path", (path) => handlers.path(path, path.reason));
  session.on("path-moved", (path) => handlers.moved(path));
  session.on("failed", (failure) => handlers.failed(failure.reason, failure.pathLost));
  session.on("stalled", (what) => handlers.stalled(what));
  session.on("state", () => handlers.state());
  return session;
}
