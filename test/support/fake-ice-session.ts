import type { RestartMode } from "../../src/ice/ice-session.js";
import type {
  IcePairFacts,
  IceSessionHandlers,
  PeerIceSession,
  PeerSignalling,
} from "../../src/peer/peer.js";
import type { ProbeablePath } from "../../src/proxy/liveness.js";
import type { PathKind } from "../../src/proxy/path.js";

/** A path whose probes answer as the test says (`answers`: true, false, or a queue of verdicts). */
export class FakePath implements ProbeablePath {
  onDatagram: ((datagram: Buffer) => void) | null = null;
  closed = false;
  probes = 0;
  /** Next probe verdicts (true: answered); when empty, `answers` decides. */
  readonly verdicts: boolean[] = [];
  answers = true;

  constructor(
    /** Mutable: a path that follows the peer to another pair may change kind (FakeIceSession.follow). */
    public kind: PathKind,
    readonly remote: string,
  ) {}

  send(): void {}

  close(): void {
    this.closed = true;
  }

  probe(): Promise<number | null> {
    this.probes++;
    const answered = this.verdicts.shift() ?? this.answers;
    return Promise.resolve(answered ? 12 : null);
  }
}

/**
 * An ICE session that does what the test tells it, with IceSession's observable contract: a controlling
 * restart starts a generation at once (`restarting` with a path, else `connecting`), a controlled one
 * only asks the peer; a nomination reports `connected` and then the path; a failure reports the state
 * and then `failed`.
 */
export class FakeIceSession implements PeerIceSession {
  state: PeerIceSession["state"] = "new";
  path: ProbeablePath | null = null;
  repairing = false;
  canUpgrade = false;
  readonly restarts: Array<{ reason: string; mode: RestartMode }> = [];
  readonly signals: unknown[] = [];
  expired = 0;
  closed = false;
  /** What the session says of its pair (status), set by a test. */
  selectedPair: IcePairFacts | null = null;

  constructor(
    readonly controlling: boolean,
    private readonly handlers: IceSessionHandlers,
  ) {}

  start(): void {
    this.setState("connecting");
  }

  restart(reason: string, mode: RestartMode = "full"): void {
    this.restarts.push({ reason, mode });
    if (!this.controlling) return; // a request to the peer: its offer starts the generation
    if (mode === "upgrade") {
      if (this.canUpgrade && this.path) this.setState("restarting");
      return;
    }
    this.repairing = this.path !== null;
    this.setState(this.path ? "restarting" : "connecting");
  }

  /** The peer's offer arrived (controlled) for a repair we asked for. */
  acceptRepairOffer(): void {
    this.repairing = this.path !== null;
    this.setState(this.path ? "restarting" : "connecting");
  }

  handleSignal(signal: unknown): void {
    this.signals.push(signal);
  }

  nominate(path: ProbeablePath, reason = "connect"): void {
    this.path = path;
    this.repairing = false;
    this.setState("connected");
    this.handlers.path(path, reason);
  }

  /** The path in use followed the peer to another pair of `kind` (pair following). */
  follow(kind: PathKind): void {
    const path = this.path;
    if (!(path instanceof FakePath)) throw new Error("no fake path to move");
    path.kind = kind;
    this.handlers.moved(path);
  }

  /** The newest generation failed; with `pathLost`, the path in use is gone too. */
  fail(reason: string, pathLost: boolean): void {
    if (pathLost) this.path = null;
    this.repairing = false;
    this.setState(this.path ? "connected" : "failed");
    this.handlers.failed(reason, pathLost);
  }

  stall(what: string): void {
    this.handlers.stalled(what);
  }

  expirePath(): void {
    this.expired++;
    if (this.path) this.fail("consent-expired", true);
  }

  close(): Promise<void> {
    this.closed = true;
    this.state = "closed";
    return Promise.resolve();
  }

  private setState(state: PeerIceSession["state"]): void {
    this.state = state;
    this.handlers.state();
  }
}

/**
 * A peer's signalling as a test drives it: the peer online as `online` says, the controlling side as
 * asked, every ICE session made a FakeIceSession (kept in order), stalls and link checks recorded.
 */
export class FakeSignalling implements PeerSignalling {
  online: boolean;
  readonly sessions: FakeIceSession[] = [];
  readonly stalls: string[] = [];
  linkChecks = 0;

  constructor(
    private readonly options: { online?: boolean; controlling?: boolean; stallReconnects?: boolean } = {},
  ) {
    this.online = options.online ?? true;
  }

  isOnline(): boolean {
    return this.online;
  }

  controlling(): boolean {
    return this.options.controlling ?? true;
  }

  send(): void {}

  pathSuspect(): void {
    this.linkChecks++;
  }

  stalled(_key: string, what: string): Promise<boolean> {
    this.stalls.push(what);
    return Promise.resolve(this.options.stallReconnects ?? true);
  }

  createSession(_key: string, controlling: boolean, handlers: IceSessionHandlers): FakeIceSession {
    const session = new FakeIceSession(controlling, handlers);
    this.sessions.push(session);
    return session;
  }

  /** The latest session (fails the test when none was made). */
  session(): FakeIceSession {
    const s = this.sessions.at(-1);
    if (!s) throw new Error("no ICE session was created");
    return s;
  }
}
