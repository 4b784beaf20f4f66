// Is a peer's path still alive? One timer for all peers looks at the proxy's per-peer timestamps and
// probes a path (a STUN binding request on the ICE pair, answered by the peer's agent and never seen by
// WireGuard) once per `idleProbeMs` to renew consent (see below), and more often only when there is doubt:
// - WireGuard keeps sending but nothing came back for `silenceMs` (a one-way flow is legitimate: the
//   peer's WireGuard answers data with a keepalive only after 10 s, so a probe decides);
// - WireGuard sent a handshake initiation (one probe with it; unanswered within `handshakeTimeoutMs`,
//   with no probe answered either, is suspect; an answered probe says the path is fine and the problem
//   is elsewhere, e.g. the peer's WireGuard is down, where restarting ICE would not help);
// - the renewal probe went unanswered (it also keeps NAT mappings and notices a dead path before
//   WireGuard needs it; every peer costs a few datagrams a minute, busy or idle).
// Probes unanswered for `deadAfterMs` make the path suspect (the owner restarts ICE at once, keeping the
// old path until a new pair is nominated); no contact for `expireMs` makes it dead (dropped).
// Paths that cannot be probed (static endpoints) are judged by WireGuard's traffic alone: sending with
// nothing back for `silenceMs + deadAfterMs`, or an initiation unanswered, is suspect.
// On a probed path, a datagram from the peer is no proof of life on its own: its source is spoofable,
// and Tunnelbore cannot verify WireGuard data (nor can the kernel fast path, whose counters feed the
// same timestamp). Received data counts as contact only within `consentMs` (one probe interval) of the
// last authenticated contact (the nomination, or an answered probe), so the renewal probe goes out
// every interval, traffic or not (RFC 7675 consent: only authenticated answers renew it). A path kept
// busy by spoofed data is judged as if it had fallen silent one interval after its last answer.
// Both ends of an ICE path probe it, and on an idle path one end's probe tells the other all its own
// would: the peer's check, signed with this generation's password and never seen before, came on the
// path now (the peer's agent sends on it and our agent answered). So the renewal probe waits for an
// interval after the peer's latest check too, while nothing the peer sent since our last
// authenticated contact needs its consent renewed: each idle path is probed about once an interval
// instead of twice (most of an idle hub's cost). The peer's check renews nothing else: received data
// still counts only within `consentMs` of our own authenticated contact, and doubt is settled only by
// our own probes (a replayed check could otherwise keep a dead path alive).
// For every path, `heard` and `quiet` say whether the peer answered on it within `quietAfterMs` (a
// datagram, a probe's answer, or the peer's check; a nominated ICE pair starts out heard): status
// calls a peer connected only while it is heard.
// Most peers of a large hub have nothing to judge on most ticks: when a look finds a watch settled (no
// doubt), the watch is marked calm until the earliest time a judgement could change by time alone (quiet,
// an initiation's timeout, silence while WireGuard sends, a steady flow falling silent, the renewal
// probe), with the peer's timestamps it was judged on. A later tick skips it while those are unchanged
// and that time is not reached; anything else that moves the watch (a probe and its answer) ends the calm.
import { EventEmitter } from "node:events";
import type { PeerPath } from "./path.js";
import type { ProxyPeer } from "./proxy-peer.js";

/** A path that can check that the peer's end still answers (ICE paths; static paths cannot). */
export interface ProbeablePath extends PeerPath {
  /** Resolves with the round-trip time in ms, or null without an answer within `timeoutMs`. Never rejects. */
  probe(timeoutMs: number): Promise<number | null>;
  /**
   * When the peer's own authenticated check on this path last arrived (the monitor's clock; 0 or
   * absent: never): the peer's probe of the path, which our agent answered.
   */
  readonly peerCheckedAt?: number;
}

export function isProbeable(path: PeerPath | null): path is ProbeablePath {
  return path !== null && typeof (path as Partial<ProbeablePath>).probe === "function";
}

export type SuspectReason = "handshake unanswered" | "no reply from peer" | "idle path unanswered";

/** WireGuard's REJECT_AFTER_TIME: a session with nothing received for this long is over. */
const QUIET_AFTER_MS = 180_000;

export interface LivenessOptions {
  /** How often all peers are looked at (default 250 ms). */
  tickMs?: number;
  /** WireGuard sending this long with nothing back raises doubt (default 1000 ms). */
  silenceMs?: number;
  /** Between probes while in doubt (default 500 ms). */
  probeIntervalMs?: number;
  /** Probes unanswered this long after doubt arose: suspect (default 1500 ms). */
  deadAfterMs?: number;
  /** A forwarded initiation unanswered this long, and the path silent too: suspect (default 2000 ms). */
  handshakeTimeoutMs?: number;
  /**
   * A probe this long after the last authenticated contact (default 25 s, less up to 20 % jitter), with
   * or without traffic: it renews the trust in received data (`consentMs`). On an idle path the peer's
   * own check puts it off as well.
   */
  idleProbeMs?: number;
  /** Received data counts as contact only this long after the last authenticated contact (default `idleProbeMs`). */
  consentMs?: number;
  /** Between probes once suspect, to notice a recovery (default 1000 ms). */
  suspectProbeMs?: number;
  /** While a path stays suspect, `suspect` is emitted again this often (default 5 s): a restart may be lost. */
  resuspectMs?: number;
  /** No contact for this long: the path is dead (default 30 s, as RFC 7675 consent). */
  expireMs?: number;
  /** Nothing from the peer on its path for this long: `quiet` (default 180 s, WireGuard's session life). */
  quietAfterMs?: number;
  /** Clock (ms); tests pass a fake one. */
  now?: () => number;
  /** Jitter source in [0, 1); tests pass a fixed one. */
  random?: () => number;
}

export interface LivenessEvents {
  /**
   * The path looks dead: restart ICE now. Emitted when an episode begins (`repeat` false) and again every
   * `resuspectMs` while it lasts (the restart or its signalling may have been lost).
   */
  suspect: [peer: ProxyPeer, reason: SuspectReason, repeat: boolean];
  /** A suspect path answered again. */
  recovered: [peer: ProxyPeer];
  /** No contact for `expireMs`: the path is dead. Emitted once per path. */
  dead: [peer: ProxyPeer];
  /** Doubt arose about the path (probes will decide): a network event may be under way. */
  doubt: [peer: ProxyPeer];
  /** The peer answered on its path (first time on this path, or again after `quiet`). */
  heard: [peer: ProxyPeer];
  /** Nothing from the peer on its path for `quietAfterMs` (or never, since it was adopted). */
  quiet: [peer: ProxyPeer];
}

export interface LivenessStats {
  probesSent: number;
  probesAnswered: number;
  suspects: number;
  deaths: number;
  /** Watches looked at in full by ticks. */
  assessed: number;
  /** Watches a tick skipped as calm (nothing to judge). */
  calmSkipped: number;
}

/** What the monitor knows about one peer's current path. */
interface Watch {
  peer: ProxyPeer;
  path: PeerPath;
  /** Null for paths that cannot be probed (static endpoints). */
  probe: ProbeablePath | null;
  /** The peer answered on this path within `quietAfterMs`. */
  heard: boolean;
  /** When this path was adopted: counts as contact. */
  since: number;
  lastProbeAt: number;
  lastAnswerAt: number;
  /** When doubt arose (0: none). */
  doubtSince: number;
  /** Probes sent since doubt arose. */
  doubtProbes: number;
  rttMs: number | null;
  suspect: SuspectReason | null;
  suspectedAt: number;
  /** The initiation (by its send time) already judged. */
  judgedInitiationAt: number;
  /** The peer's last datagram as of the previous look, and the gap before it (steady when small). */
  lastSeenReceivedAt: number;
  receiveGap: number;
  /** The last datagram (by its time) after which a sudden silence was already doubted. */
  silenceJudgedAt: number;
  /** Silence (no contact, no probe) after which an idle probe goes out; jittered anew after each. */
  idleInterval: number;
  expired: boolean;
  /** The tick that last found the peer (one not found by the latest tick is gone). */
  seenTick: number;
  /** Removed from (or replaced in) the monitor's map: the tick's cache must not use it. */
  retired: boolean;
  /**
   * Calm: nothing to judge in [calmSince, calmUntil) while the peer's stamps equal these (0: not calm).
   * calmSince guards against a clock stepping back (`quiet` would turn `heard` again).
   */
  calmSince: number;
  calmUntil: number;
  calmSentAt: number;
  calmReceivedAt: number;
  calmInitiationAt: number;
  calmResponseAt: number;
}

export class LivenessMonitor extends EventEmitter<LivenessEvents> {
  readonly stats: LivenessStats = {
    probesSent: 0,
    probesAnswered: 0,
    suspects: 0,
    deaths: 0,
    assessed: 0,
    calmSkipped: 0,
  };
  private readonly watches = new Map<ProxyPeer, Watch>();
  /**
   * The watches in the order the latest tick found their peers: the peers come in the same order tick
   * after tick (a Map's values), so the next tick mostly finds each watch here without a Map lookup.
   */
  private order: (Watch | undefined)[] = [];
  /** The earliest time-based change the running assessment found (Infinity: none). */
  private calmDue = Infinity;
  /** Watches taken out of the map so far (the tick sweeps only when one may be left unseen). */
  private retirements = 0;
  private readonly tickMs: number;
  private readonly silenceMs: number;
  private readonly probeIntervalMs: number;
  private readonly deadAfterMs: number;
  private readonly handshakeTimeoutMs: number;
  private readonly idleProbeMs: number;
  private readonly consentMs: number;
  private readonly suspectProbeMs: number;
  private readonly resuspectMs: number;
  private readonly expireMs: number;
  private readonly quietAfterMs: number;
  private readonly now: () => number;
  private readonly random: () => number;
  private timer: NodeJS.Timeout | null = null;
  private ticks = 0;

  constructor(
    /** The peers to watch (read on every tick). */
    private readonly peers: () => Iterable<ProxyPeer>,
    options: LivenessOptions = {},
  ) {
    super();
    this.tickMs = options.tickMs ?? 250;
    this.silenceMs = options.silenceMs ?? 1000;
    this.probeIntervalMs = options.probeIntervalMs ?? 500;
    this.deadAfterMs = options.deadAfterMs ?? 1500;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? 2000;
    this.idleProbeMs = options.idleProbeMs ?? 25_000;
    this.consentMs = options.consentMs ?? this.idleProbeMs;
    this.suspectProbeMs = options.suspectProbeMs ?? 1000;
    this.resuspectMs = options.resuspectMs ?? 5000;
    this.expireMs = options.expireMs ?? 30_000;
    this.quietAfterMs = options.quietAfterMs ?? QUIET_AFTER_MS;
    this.now = options.now ?? Date.now;
    this.random = options.random ?? Math.random;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.tickMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const watch of this.watches.values()) this.retire(watch);
    this.watches.clear();
    this.order = [];
  }

  /** The reason a peer's path is suspect, or null. */
  suspectReason(peer: ProxyPeer): SuspectReason | null {
    const watch = this.watches.get(peer);
    return watch && watch.path === peer.path ? watch.suspect : null;
  }

  /** The last probe round-trip time on the peer's path, in ms. */
  rttMs(peer: ProxyPeer): number | null {
    const watch = this.watches.get(peer);
    return watch && watch.path === peer.path ? watch.rttMs : null;
  }

  /** WireGuard sent an initiation on the peer's path: probe along, so the verdict is ready in time. */
  initiationSent(peer: ProxyPeer): void {
    const watch = this.watch(peer, this.now());
    if (!watch) return;
    watch.calmUntil = 0;
    if (this.now() - watch.lastProbeAt >= this.probeIntervalMs) this.probe(peer, watch);
  }

  /** Looks at every peer once (the timer calls this; tests too). */
  tick(): void {
    const now = this.now();
    // A stamp rather than a set of the peers seen: nothing allocated per peer, four times a second.
    const tick = ++this.ticks;
    const order = this.order;
    const retirements = this.retirements;
    let i = 0;
    let seen = 0;
    for (const peer of this.peers()) {
      let watch = order[i];
      if (watch === undefined || watch.peer !== peer || watch.path !== peer.path || watch.retired) {
        watch = this.watch(peer, now) ?? undefined;
        order[i] = watch;
      }
      i++;
      if (!watch) continue;
      // Counted once even if the iterable gave a peer twice: `seen` must not exceed the map's size. (A
      // watch made by this tick is not counted: the sweep then walks the map once, finding nothing.)
      if (watch.seenTick !== tick) seen++;
      watch.seenTick = tick;
      // Read once: compared with the calm snapshot, and (when assessed) the snapshot for the next ticks.
      // Read before assessing: a listener of an event emitted meanwhile may move them.
      const sentAt = peer.lastSentAt;
      const receivedAt = peer.lastReceivedAt;
      const initiationAt = peer.lastInitiationSentAt;
      const responseAt = peer.lastResponseAt;
      if (
        now < watch.calmUntil &&
        now >= watch.calmSince &&
        sentAt === watch.calmSentAt &&
        receivedAt === watch.calmReceivedAt &&
        initiationAt === watch.calmInitiationAt &&
        responseAt === watch.calmResponseAt
      ) {
        this.stats.calmSkipped++;
        continue;
      }
      watch.calmUntil = 0;
      this.stats.assessed++;
      try {
        this.calmDue = Infinity;
        this.assess(peer, watch, now);
        // Doubt (and suspicion) is never calm: probes and repeats are due on short clocks. A dead path is
        // judged no more, whatever its stamps do.
        if (watch.expired || (watch.doubtSince === 0 && this.calmDue > now)) {
          watch.calmSince = now;
          watch.calmUntil = watch.expired ? Infinity : this.calmDue;
          watch.calmSentAt = sentAt;
          watch.calmReceivedAt = receivedAt;
          watch.calmInitiationAt = initiationAt;
          watch.calmResponseAt = responseAt;
        }
      } catch {
        // A bug here must not stop the other peers' checks (nor the process).
      }
    }
    if (order.length > i) order.length = i;
    // Every watch seen, none taken out meanwhile: the map holds only seen ones (a walk of 10,000 saved).
    if (seen === this.watches.size && retirements === this.retirements) return;
    for (const [peer, watch] of this.watches) {
      if (watch.seenTick === tick) continue;
      this.retire(watch);
      this.watches.delete(peer);
    }
  }

  /** Marks a watch taken out of (or replaced in) the map. */
  private retire(watch: Watch): void {
    watch.retired = true;
    this.retirements++;
  }

  /** Notes the time at which a judgement not due now falls due by time alone (stamps unchanged). */
  private dueAt(time: number): void {
    if (time < this.calmDue) this.calmDue = time;
  }

  /** The watch of the peer's current path (a new one when the path changed), or null without a path. */
  private watch(peer: ProxyPeer, now: number): Watch | null {
    const path = peer.path;
    if (!path) {
      const gone = this.watches.get(peer);
      if (gone) {
        this.retire(gone);
        this.watches.delete(peer);
      }
      return null;
    }
    let watch = this.watches.get(peer);
    if (!watch || watch.path !== path) {
      if (watch) this.retire(watch);
      const probe = isProbeable(path) ? path : null;
      watch = {
        peer,
        path,
        probe,
        // A nominated ICE pair answered its checks; a static endpoint has answered nothing yet.
        heard: probe !== null,
        since: now,
        lastProbeAt: 0,
        lastAnswerAt: 0,
        doubtSince: 0,
        doubtProbes: 0,
        rttMs: null,
        suspect: null,
        suspectedAt: 0,
        // An initiation sent before this path existed is not the path's to answer.
        judgedInitiationAt: peer.lastInitiationSentAt,
        lastSeenReceivedAt: peer.lastReceivedAt,
        receiveGap: Infinity,
        silenceJudgedAt: peer.lastReceivedAt,
        idleInterval: this.idleInterval(),
        expired: false,
        seenTick: this.ticks,
        retired: false,
        calmSince: 0,
        calmUntil: 0,
        calmSentAt: 0,
        calmReceivedAt: 0,
        calmInitiationAt: 0,
        calmResponseAt: 0,
      };
      this.watches.set(peer, watch);
    }
    return watch;
  }

  /** When the peer last authenticated itself on the path: the nomination, or an answered probe. */
  private authenticatedAt(watch: Watch): number {
    return Math.max(watch.since, watch.lastAnswerAt);
  }

  /**
   * When the peer's datagrams last arrived, as far as they count: on a probed path no later than
   * `consentMs` after the last authenticated contact (they may be spoofed).
   */
  private receivedAt(peer: ProxyPeer, watch: Watch): number {
    if (!watch.probe) return peer.lastReceivedAt;
    return Math.min(peer.lastReceivedAt, this.authenticatedAt(watch) + this.consentMs);
  }

  private assess(peer: ProxyPeer, watch: Watch, now: number): void {
    if (watch.expired) return;
    const contact = Math.max(this.authenticatedAt(watch), this.receivedAt(peer, watch));
    if (contact > watch.doubtSince && watch.doubtSince !== 0) this.clearDoubt(peer, watch);
    this.judgeHeard(peer, watch, now);
    if (!watch.probe) {
      this.assessUnprobed(peer, watch, contact, now);
      return;
    }

    // Dead: no contact for long, and probes tried and failed (never merely because nobody talked).
    if (now - contact >= this.expireMs && watch.doubtSince !== 0) {
      watch.expired = true;
      this.stats.deaths++;
      this.emit("dead", peer);
      return;
    }

    this.judgeInitiation(peer, watch, contact, now);

    // WireGuard keeps sending, nothing comes back.
    const sending = now - peer.lastSentAt < this.silenceMs && peer.lastSentAt > contact;
    if (sending) {
      if (now - contact >= this.silenceMs) this.beginDoubt(watch, now);
      else this.dueAt(contact + this.silenceMs);
    }
    // The peer was sending steadily and fell silent. When we only receive, WireGuard sends nothing
    // that could go unanswered: this is how the receiving side of a path learns that a NAT on the way
    // forgot it (the probes decide; an answered probe means the peer merely stopped).
    if (peer.lastReceivedAt !== watch.lastSeenReceivedAt) {
      watch.receiveGap =
        watch.lastSeenReceivedAt === 0 ? Infinity : peer.lastReceivedAt - watch.lastSeenReceivedAt;
      watch.lastSeenReceivedAt = peer.lastReceivedAt;
    }
    if (watch.receiveGap <= this.silenceMs / 2 && peer.lastReceivedAt > watch.silenceJudgedAt) {
      if (now - contact >= this.silenceMs) {
        watch.silenceJudgedAt = peer.lastReceivedAt;
        this.beginDoubt(watch, now);
      } else this.dueAt(contact + this.silenceMs);
    }

    if (watch.doubtSince !== 0) {
      if (watch.suspect) {
        if (now - watch.lastProbeAt >= this.suspectProbeMs) this.probe(peer, watch);
        if (now - watch.suspectedAt >= this.resuspectMs) {
          watch.suspectedAt = now;
          this.emit("suspect", peer, watch.suspect, true);
        }
        return;
      }
      if (now - watch.lastProbeAt >= this.probeIntervalMs) this.probe(peer, watch);
      if (now - watch.doubtSince >= this.deadAfterMs && watch.doubtProbes >= 2) {
        this.markSuspect(peer, watch, sending ? "no reply from peer" : "idle path unanswered");
      }
      return;
    }

    // Renewal: a probe a jittered interval after the last authenticated contact or our last probe
    // (or, idle, the peer's check), whichever is later. Received data does not put it off: it counts
    // only while this renews it.
    if (now - this.renewedAt(peer, watch) >= watch.idleInterval) {
      this.probe(peer, watch, true);
      watch.idleInterval = this.idleInterval();
    }
    this.dueAt(this.renewedAt(peer, watch) + watch.idleInterval);
  }

  /**
   * What the renewal probe's interval runs from: our last authenticated contact or probe; or the
   * peer's later check on the path while no datagram came after our last authenticated contact.
   */
  private renewedAt(peer: ProxyPeer, watch: Watch): number {
    const authenticatedAt = this.authenticatedAt(watch);
    const own = Math.max(authenticatedAt, watch.lastProbeAt);
    const checkedAt = this.peerCheckedAt(watch);
    return checkedAt > own && peer.lastReceivedAt <= authenticatedAt ? checkedAt : own;
  }

  /** The peer's latest check on this path (0: none). One older than the watch is outdone by `since`. */
  private peerCheckedAt(watch: Watch): number {
    return watch.probe?.peerCheckedAt ?? 0;
  }

  /**
   * Heard: a datagram on this path (as far as it counts), an answered probe, the peer's check, or (ICE)
   * the nomination, within `quietAfterMs`.
   */
  private judgeHeard(peer: ProxyPeer, watch: Watch, now: number): void {
    const receivedAt = this.receivedAt(peer, watch);
    const received = receivedAt >= watch.since ? receivedAt : 0;
    const heardAt = Math.max(
      received,
      watch.lastAnswerAt,
      this.peerCheckedAt(watch),
      watch.probe ? watch.since : 0,
    );
    const heard = heardAt !== 0 && now - heardAt < this.quietAfterMs;
    // Heard turns quiet by time alone; quiet turns heard only by a new datagram, answer or check.
    if (heard) this.dueAt(heardAt + this.quietAfterMs);
    if (heard === watch.heard) return;
    watch.heard = heard;
    this.emit(heard ? "heard" : "quiet", peer);
  }

  /** A forwarded initiation without response, and nothing else heard since it went out: suspect. */
  private judgeInitiation(peer: ProxyPeer, watch: Watch, contact: number, now: number): void {
    const sentAt = peer.lastInitiationSentAt;
    if (sentAt <= watch.judgedInitiationAt || peer.lastResponseAt >= sentAt) return;
    if (now - sentAt < this.handshakeTimeoutMs) {
      this.dueAt(sentAt + this.handshakeTimeoutMs);
      return;
    }
    watch.judgedInitiationAt = sentAt;
    if (contact < sentAt) {
      this.beginDoubt(watch, now);
      this.markSuspect(peer, watch, "handshake unanswered");
    }
  }

  /** A path that cannot be probed: WireGuard's traffic and its answers are all there is to judge by. */
  private assessUnprobed(peer: ProxyPeer, watch: Watch, contact: number, now: number): void {
    this.judgeInitiation(peer, watch, contact, now);
    const sending = now - peer.lastSentAt < this.silenceMs && peer.lastSentAt > contact;
    if (sending) {
      if (now - contact >= this.silenceMs) this.beginDoubt(watch, now);
      else this.dueAt(contact + this.silenceMs);
    }
    if (watch.doubtSince === 0) return;
    if (!watch.suspect && now - watch.doubtSince >= this.deadAfterMs)
      this.markSuspect(peer, watch, "no reply from peer");
    if (watch.suspect && now - watch.suspectedAt >= this.resuspectMs) {
      watch.suspectedAt = now;
      this.emit("suspect", peer, watch.suspect, true);
    }
  }

  private idleInterval(): number {
    return this.idleProbeMs * (0.8 + 0.2 * this.random());
  }

  private beginDoubt(watch: Watch, now: number): void {
    if (watch.doubtSince !== 0) return;
    watch.doubtSince = now;
    watch.doubtProbes = 0;
    this.emit("doubt", watch.peer);
  }

  private clearDoubt(peer: ProxyPeer, watch: Watch): void {
    watch.doubtSince = 0;
    watch.doubtProbes = 0;
    if (watch.suspect) {
      watch.suspect = null;
      this.emit("recovered", peer);
    }
  }

  private markSuspect(peer: ProxyPeer, watch: Watch, reason: SuspectReason): void {
    if (watch.suspect) return;
    watch.suspect = reason;
    watch.suspectedAt = this.now();
    this.stats.suspects++;
    this.emit("suspect", peer, reason, false);
  }

  /** Sends a probe; an unanswered idle probe raises doubt (then faster probes decide). */
  private probe(peer: ProxyPeer, watch: Watch, idle = false): void {
    const path = watch.probe;
    if (!path) return;
    const sentAt = this.now();
    // The probe and its answer move the watch outside a tick's look.
    watch.calmUntil = 0;
    watch.lastProbeAt = sentAt;
    if (watch.doubtSince !== 0) watch.doubtProbes++;
    this.stats.probesSent++;
    // RTT-aware like werift's consent (2 RTT + 200 ms), within 500..2000 ms.
    const timeout = watch.rttMs === null ? 1000 : Math.min(2000, Math.max(500, 2 * watch.rttMs + 200));
    void path.probe(timeout).then((rtt) => {
      if (this.watches.get(peer) !== watch) return;
      watch.calmUntil = 0;
      if (rtt === null) {
        if (idle) this.beginDoubt(watch, this.now());
        return;
      }
      this.stats.probesAnswered++;
      watch.rttMs = rtt;
      watch.lastAnswerAt = Math.max(watch.lastAnswerAt, sentAt);
      if (watch.doubtSince !== 0 && sentAt >= watch.doubtSince) this.clearDoubt(peer, watch);
    });
  }
}
