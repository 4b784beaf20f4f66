/**
 * Messages between the privileged parent and the unprivileged worker of `tunnelbore run` (Node's IPC
 * channel, JSON). The worker asks narrow questions (`Request`); the parent validates each one against
 * what it knows (privileged-server.ts) before doing anything, so a compromised worker can do no more
 * than the worker legitimately does. The private key never crosses: only X25519 results do.
 */
import { isIP } from "node:net";
import { z } from "zod";
import type { PingRequest } from "../control/path-probe.js";

const base64Key = z
  .string()
  .length(44)
  .regex(/^[A-Za-z0-9+/]{43}=$/);
const port = z.number().int().min(1).max(65535);
const ipAddress = z.string().refine((text) => isIP(text) !== 0, "not an IP address");
/** An IPv4 address in 127.0.0.0/8: where L(P) lives. */
export const loopbackIPv4 = z
  .string()
  .regex(/^127\.(25[0-5]|2[0-4]\d|1?\d?\d)(\.(25[0-5]|2[0-4]\d|1?\d?\d)){2}$/);
/** WireGuard's side of a kernel entry: L(P) in 127.0.0.0/8, or L6(P) on ::1 (a plain UDP path over IPv6). */
const entryLoopback = z.union([loopbackIPv4, z.literal("::1")]);
const ifName = z.string().regex(/^[A-Za-z0-9_.=+-]{1,15}$/);
const u32 = z.number().int().min(0).max(0xffffffff);
const channel = z.number().int().min(0x4000).max(0x7fff).optional();

const fiveTuple = {
  localAddress: ipAddress,
  localPort: port,
  remoteAddress: ipAddress,
  remotePort: port,
};

const outboundEntry = z
  .object({
    ...fiveTuple,
    loopbackAddress: entryLoopback,
    loopbackPort: port,
    wireguardPort: port,
    ifindex: z.number().int().min(1).max(0x7fffffff),
    toLoopback: z.boolean(),
    channel,
    /** An IPv6 path's next hop (the route's gateway, or the remote on the link): see OutboundEntry. */
    nextHop: ipAddress.optional(),
  })
  .refine(
    (e) => e.nextHop === undefined || (isIP(e.nextHop) === 6 && isIP(e.remoteAddress) === 6),
    "a next hop for an IPv6 path only, IPv6",
  );

const inboundFlow = z.object({ ...fiveTuple, channel });

const inboundEntry = inboundFlow.extend({
  loopbackAddress: entryLoopback,
  loopbackPort: port,
  wireguardPort: port,
  loopbackIfindex: z.number().int().min(1).max(0x7fffffff),
});

const loopbackKey = z.object({ loopbackAddress: entryLoopback, loopbackPort: port });

export const fastPathUpdateSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("setOutbound"), entry: outboundEntry }),
  z.object({ op: z.literal("deleteOutbound"), key: loopbackKey }),
  z.object({ op: z.literal("setInbound"), entry: inboundEntry }),
  z.object({ op: z.literal("deleteInbound"), flow: inboundFlow }),
]);
export type FastPathUpdate = z.infer<typeof fastPathUpdateSchema>;

/** The most entries one request carries; more go in several requests. */
export const MAX_BATCH = 4096;

/** What the worker may ask, with the arguments each takes. */
export const requestSchema = z.discriminatedUnion("op", [
  z.object({ op: z.literal("x25519"), peer: base64Key }),
  z.object({ op: z.literal("readInterface") }),
  /** The interface as readInterface, but only the peers changed since the answer `since` (interface-diff.ts). */
  z.object({ op: z.literal("readInterfaceChanges"), since: z.number().int().nonnegative() }),
  z.object({ op: z.literal("setPeerEndpoint"), key: base64Key, endpoint: z.string().max(64) }),
  z.object({ op: z.literal("nudgeTraffic"), key: base64Key, endpoint: z.string().max(64) }),
  z.object({ op: z.literal("nudgeHandshake"), key: base64Key }),
  z.object({ op: z.literal("stateLoad") }),
  z.object({ op: z.literal("stateSet"), key: base64Key, endpoint: z.string().max(300) }),
  z.object({ op: z.literal("stateDelete"), key: base64Key }),
  /** Batches (issue 16: a hub with thousands of peers); each entry is validated as its single op is. */
  z.object({
    op: z.literal("setPeerEndpoints"),
    changes: z.array(z.object({ key: base64Key, endpoint: z.string().max(64) })).max(MAX_BATCH),
  }),
  z.object({
    op: z.literal("stateSetMany"),
    entries: z.array(z.object({ key: base64Key, endpoint: z.string().max(300) })).max(MAX_BATCH),
  }),
  z.object({ op: z.literal("stateDeleteMany"), keys: z.array(base64Key).max(MAX_BATCH) }),
  z.object({ op: z.literal("restoreEndpoints") }),
  z.object({ op: z.literal("wgQuickCheck") }),
  z.object({ op: z.literal("bypassStart"), fwmark: u32 }),
  z.object({ op: z.literal("bypassFollow"), fwmark: u32 }),
  z.object({ op: z.literal("bypassClose") }),
  z.object({ op: z.literal("fastPathLoad") }),
  z.object({
    op: z.literal("fastPathAttach"),
    dev: ifName,
    ifindex: z.number().int().min(1).max(0x7fffffff),
  }),
  z.object({ op: z.literal("fastPathUpdate"), updates: z.array(fastPathUpdateSchema).max(MAX_BATCH) }),
  z.object({
    op: z.literal("fastPathCounters"),
    outbound: z.array(loopbackKey).max(MAX_BATCH),
    inbound: z.array(inboundFlow).max(MAX_BATCH),
  }),
  /** The entries whose packets moved since the last such request (every one when `full`). */
  z.object({ op: z.literal("fastPathCountersMoved"), full: z.boolean() }),
  z.object({ op: z.literal("fastPathClose") }),
  /** WireGuard's socket (its buffer and drops), for status: found by the parent's own listen port. */
  z.object({ op: z.literal("wireguardSocket") }),
]);
export type Request = z.infer<typeof requestSchema>;

const count = z.number().int().nonnegative();

/** The parent's answer to `wireguardSocket` (src/wg/wireguard-sockets.ts), checked before status shows it. */
export const wireguardSocketAnswerSchema = z
  .object({
    port: z.number().int().min(0).max(65535),
    receiveBufferBytes: count.nullable(),
    drops: count.nullable(),
    sockets: z
      .array(z.object({ local: z.string().max(80), receiveBufferBytes: count, drops: count.nullable() }))
      .max(64),
    unknown: z.string().max(512).nullable(),
  })
  .nullable();

/** Worker to parent. */
export const workerMessageSchema = z.discriminatedUnion("t", [
  z.object({ t: z.literal("req"), id: z.number().int().nonnegative(), req: z.unknown() }),
  z.object({ t: z.literal("ans"), id: z.number().int().nonnegative(), ok: z.boolean(), value: z.unknown() }),
  /** Tunnelbore exists: `status` works from now on (the parent opens the control socket). */
  z.object({ t: z.literal("created") }),
  /** Tunnelbore started (or stopped while waiting). */
  z.object({ t: z.literal("running") }),
  /** start() failed: the parent exits with `exitCode` after restoring endpoints. */
  z.object({
    t: z.literal("failed"),
    message: z.string().max(4096),
    exitCode: z.number().int().min(1).max(2),
  }),
]);
export type WorkerMessage = z.infer<typeof workerMessageSchema>;

/** A moved entry as it crosses: L(P), direction, counters. */
export interface WireMovedCounter {
  loopback: string;
  direction: "outbound" | "inbound";
  counters: WireCounters;
}

/** Counters as they cross (bigint does not survive JSON). */
export interface WireCounters {
  packets: string;
  bytes: string;
  lastNs: string;
}

/** An error as it crosses: a ConfigError (exit 2, the user can fix it) stays one. */
export interface WireError {
  code: string;
  message: string;
  config: boolean;
}

/** Parent to worker. */
export type ParentMessage =
  | { t: "start"; config: unknown }
  | { t: "res"; id: number; ok: true; value: unknown }
  | { t: "res"; id: number; ok: false; error: WireError }
  | { t: "cmd"; id: number; cmd: WorkerCommand };

/** What the parent asks the worker (control socket commands, signals). */
export type WorkerCommand = "status" | "release" | "ice-servers" | "reload" | "stop" | PingCommand;

/** One probe of a peer's path (`tunnelbore ping`), already validated by the control socket. */
export interface PingCommand {
  op: "ping";
  request: PingRequest;
}
