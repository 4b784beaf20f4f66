// Signalling between the two IceSessions of a peer pair. These messages travel inside the introduction
// server's end-to-end encrypted envelopes, but the peer's software may still be buggy or hostile, so
// every message is validated here before the session looks at it.
//
// Ordering model: the controlling side owns an `epoch` (random per IceSession instance, so a restarted
// process is recognised) and a `generation` (incremented per ICE restart). Every message names the
// (epoch, generation) it belongs to; anything for an older generation is ignored, which is what makes
// trickled candidates of an abandoned attempt harmless.
import { isIP } from "node:net";
import { z } from "zod";
import { natBehaviourField } from "./nat-behaviour.js";

/** At most this many candidates per generation are accepted from the peer (each costs checks). */
export const MAX_REMOTE_CANDIDATES = 32;
/** An SDP candidate line is ~100 bytes; anything much longer is not one. */
const MAX_CANDIDATE_LENGTH = 256;

// RFC 8445 §5.3: ufrag and pwd are ice-chars (ALPHA / DIGIT / "+" / "/"); ufrag >= 4, pwd >= 22 chars.
const ufrag = z.string().regex(/^[A-Za-z0-9+/]{4,64}$/);
const pwd = z.string().regex(/^[A-Za-z0-9+/]{22,128}$/);
const epoch = z.string().regex(/^[0-9a-f]{16}$/);
const generation = z.number().int().min(0).max(0x7fffffff);

export type CandidateType = "host" | "srflx" | "prflx" | "relay";

/** The parts of an SDP candidate line the session needs. */
export interface ParsedCandidate {
  readonly foundation: string;
  readonly priority: number;
  readonly host: string;
  readonly port: number;
  readonly type: Exclude<CandidateType, "prflx">;
}

const FOUNDATION = /^[A-Za-z0-9+/]{1,32}$/;
const DIGITS = /^\d{1,10}$/;

function port(text: string | undefined, min: number): number | null {
  if (text === undefined || !DIGITS.test(text)) return null;
  const n = Number(text);
  return n >= min && n <= 65535 ? n : null;
}

/**
 * Parses a candidate line as werift writes it (`foundation 1 udp priority ip port typ type [raddr ip rport
 * n] [generation n] [ufrag u]`), strictly: a literal IP (werift would otherwise resolve a hostname with DNS,
 * or `*.local` with mDNS), UDP, component 1, a type werift accepts. Returns null for anything else.
 */
export function parseCandidate(line: string): ParsedCandidate | null {
  if (line.length > MAX_CANDIDATE_LENGTH) return null;
  const bits = line.split(" ");
  if (bits.length < 8 || bits.length % 2 !== 0) return null;
  const [foundation, component, transport, priorityText, host, portText, typ, type] = bits;
  if (!foundation || !FOUNDATION.test(foundation)) return null;
  if (component !== "1" || transport?.toLowerCase() !== "udp" || typ !== "typ") return null;
  if (!priorityText || !DIGITS.test(priorityText)) return null;
  const priority = Number(priorityText);
  if (priority < 1 || priority > 0xffffffff) return null;
  if (!host || isIP(host) === 0) return null;
  const p = port(portText, 1);
  if (p === null) return null;
  if (type !== "host" && type !== "srflx" && type !== "relay") return null;
  for (let i = 8; i < bits.length; i += 2) {
    const key = bits[i];
    const value = bits[i + 1];
    if (value === undefined) return null;
    if (key === "raddr") {
      if (isIP(value) === 0) return null;
    } else if (key === "rport") {
      if (port(value, 0) === null) return null;
    } else if (key === "generation") {
      if (!DIGITS.test(value)) return null;
    } else if (key === "ufrag") {
      if (!/^[A-Za-z0-9+/]{1,64}$/.test(value)) return null;
    } else {
      return null;
    }
  }
  return { foundation, priority, host, port: p, type };
}

const candidate = z
  .string()
  .max(MAX_CANDIDATE_LENGTH)
  .refine((line) => parseCandidate(line) !== null, { message: "not a UDP candidate with a literal IP" });

const description = {
  epoch,
  generation,
  ufrag,
  pwd,
  /** Candidates known when the description was sent; more may follow as `candidate` messages. */
  candidates: z.array(candidate).max(MAX_REMOTE_CANDIDATES).optional(),
  /** True when `candidates` is complete (no trickle follows). */
  endOfCandidates: z.boolean().optional(),
  /** The sender's NAT mapping behaviour, when it knows it (status explains relayed paths with it). */
  nat: natBehaviourField,
};

export const iceSignalSchema = z.discriminatedUnion("t", [
  /**
   * Controlling -> controlled: start (or restart) generation `generation` of `epoch`. `mode: "upgrade"`:
   * an attempt at a direct path while a relayed one works (no relay candidates; it repairs nothing).
   */
  z.object({ t: z.literal("offer"), ...description, mode: z.literal("upgrade").optional() }),
  /** Controlled -> controlling: credentials for that same generation. */
  z.object({ t: z.literal("answer"), ...description }),
  /** Either way: one trickled candidate of the sender's agent for that generation. */
  z.object({ t: z.literal("candidate"), epoch, generation, candidate }),
  /** Either way: the sender has gathered all its candidates for that generation. */
  z.object({ t: z.literal("end-of-candidates"), epoch, generation, nat: natBehaviourField }),
  /**
   * Controlled -> controlling: please restart. Names the generation the sender considers broken, so a
   * request that crossed a restart already under way is recognised as satisfied; without epoch it asks for
   * a fresh offer (the sender has none, e.g. it restarted).
   */
  z.object({
    t: z.literal("restart"),
    epoch: epoch.optional(),
    generation: generation.optional(),
    reason: z
      .string()
      .max(64)
      .regex(/^[\w .:-]*$/),
  }),
]);

export type IceSignal = z.infer<typeof iceSignalSchema>;
export type IceOffer = Extract<IceSignal, { t: "offer" }>;
export type IceAnswer = Extract<IceSignal, { t: "answer" }>;

/** Validates a received signal; null when it is malformed (the caller drops and counts it). */
export function parseIceSignal(input: unknown): IceSignal | null {
  try {
    const result = iceSignalSchema.safeParse(input);
    return result.success ? result.data : null;
  } catch {
    // safeParse does not catch what a getter or Proxy of a non-JSON input throws.
    return null;
  }
}
