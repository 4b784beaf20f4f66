/**
 * The introduction server's metrics (`intro-server --metrics`): the server tells IntroServerMetrics what
 * happens, one call per event; live counts (connections, STUN answers) are read at scrape time. Nothing
 * here names a key or an address.
 */
import { Counter, collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { Health, MetricsSource } from "../src/metrics/metrics-server.js";
import { CloseCode } from "../src/signalling/protocol.js";

/** Why an envelope was not relayed: no mutual declaration or offline (one answer), or the target is backlogged. */
export type EnvelopeRefusal = "undeliverable" | "backlogged";
export type CapRefusal = { cap: "connections" | "declared-peers"; scope: "address" | "total" | "key" };

/** What the server reads out at scrape time. */
export interface IntroServerLive {
  authenticated(): number;
  unauthenticated(): number;
  stunAnswers(): number;
}

/** What the server calls as things happen (a no-op without --metrics). */
export interface IntroServerMetrics {
  observe(live: IntroServerLive): void;
  authenticated(): void;
  /** The server closed a connection that had not authenticated, with this close code. */
  authFailed(closeCode: number): void;
  relayed(): void;
  refused(reason: EnvelopeRefusal): void;
  turnIssued(): void;
  /** A key not (or no longer) in --allowed-keys was closed. */
  membershipRefused(when: "auth" | "revoked"): void;
  capRefused(refusal: CapRefusal): void;
}

export const NO_INTRO_SERVER_METRICS: IntroServerMetrics = {
  observe: () => undefined,
  authenticated: () => undefined,
  authFailed: () => undefined,
  relayed: () => undefined,
  refused: () => undefined,
  turnIssued: () => undefined,
  membershipRefused: () => undefined,
  capRefused: () => undefined,
};

const CLOSE_CODE_NAMES = new Map<number, string>(
  Object.entries(CloseCode).map(([name, code]) => [code, name]),
);

/** A close code's name as the protocol has it (authFailed, authTimeout, ...), "other" for a stranger's. */
export function closeCodeName(code: number): string {
  return CLOSE_CODE_NAMES.get(code) ?? "other";
}

export class PromIntroServerMetrics implements IntroServerMetrics, MetricsSource {
  readonly registry = new Registry();
  /** The CLI sets this once the server listens, and clears it when it shuts down (/healthz). */
  serving = false;
  private live: IntroServerLive | null = null;
  private readonly authentications: Counter;
  private readonly authFailures: Counter;
  private readonly relayedEnvelopes: Counter;
  private readonly refusedEnvelopes: Counter;
  private readonly turnCredentials: Counter;
  private readonly membershipRefusals: Counter;
  private readonly capRefusals: Counter;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const live = () => this.live;
    new Gauge({
      name: "tunnelbore_intro_connections",
      help: "Open connections, by state (authenticated, or not yet)",
      labelNames: ["state"],
      registers,
      collect() {
        this.reset();
        const now = live();
        if (!now) return;
        this.set({ state: "authenticated" }, now.authenticated());
        this.set({ state: "unauthenticated" }, now.unauthenticated());
      },
    });
    new Counter({
      name: "tunnelbore_intro_stun_answers_total",
      help: "STUN binding requests answered",
      registers,
      collect() {
        this.reset();
        this.inc(live()?.stunAnswers() ?? 0);
      },
    });
    this.authentications = new Counter({
      name: "tunnelbore_intro_authentications_total",
      help: "Keys that proved themselves and were admitted",
      registers,
    });
    this.authFailures = new Counter({
      name: "tunnelbore_intro_authentication_failures_total",
      help: "Connections closed before they authenticated, by close code name",
      labelNames: ["reason"],
      registers,
    });
    this.relayedEnvelopes = new Counter({
      name: "tunnelbore_intro_envelopes_relayed_total",
      help: "Envelopes relayed between mutually declared peers",
      registers,
    });
    this.refusedEnvelopes = new Counter({
      name: "tunnelbore_intro_envelopes_refused_total",
      help: "Envelopes not relayed, by reason (undeliverable: offline or not mutually declared)",
      labelNames: ["reason"],
      registers,
    });
    this.turnCredentials = new Counter({
      name: "tunnelbore_intro_turn_credentials_issued_total",
      help: "TURN credentials handed out (at welcome and on refresh)",
      registers,
    });
    this.membershipRefusals = new Counter({
      name: "tunnelbore_intro_membership_refusals_total",
      help: "Keys closed because they are not (auth) or no longer (revoked) in --allowed-keys",
      labelNames: ["when"],
      registers,
    });
    this.capRefusals = new Counter({
      name: "tunnelbore_intro_cap_refusals_total",
      help: "Connections closed over a cap, by cap and scope",
      labelNames: ["cap", "scope"],
      registers,
    });
  }

  observe(live: IntroServerLive): void {
    this.live = live;
  }

  authenticated(): void {
    this.authentications.inc();
  }

  authFailed(closeCode: number): void {
    // The server going away is no failure of the client's.
    if (closeCode === CloseCode.serverShutdown) return;
    this.authFailures.inc({ reason: closeCodeName(closeCode) });
  }

  relayed(): void {
    this.relayedEnvelopes.inc();
  }

  refused(reason: EnvelopeRefusal): void {
    this.refusedEnvelopes.inc({ reason });
  }

  turnIssued(): void {
    this.turnCredentials.inc();
  }

  membershipRefused(when: "auth" | "revoked"): void {
    this.membershipRefusals.inc({ when });
  }

  capRefused(refusal: CapRefusal): void {
    this.capRefusals.inc(refusal);
  }

  async refresh(): Promise<void> {
    // Everything is counted as it happens or read by the metrics' collect().
  }

  async health(): Promise<Health> {
    return this.serving
      ? { healthy: true, text: "ok: serving" }
      : { healthy: false, text: this.live ? "stopping" : "starting" };
  }
}
