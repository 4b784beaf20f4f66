// A million hostile datagrams at the catch-all and at L(P) of a running Tunnelbore: it lives, the
// tunnel keeps working, and every datagram is accounted for as a counted drop (or a kernel drop when
// the socket buffer was full, read from the namespace's own UDP counters).
import { resolve } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { DropCounters } from "../../src/proxy/counters.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { nsRun, teardownAll } from "../lab/netns.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { waitFor } from "../support/wait-for.js";

const PER_TARGET = 500_000;
const SENDER = resolve(import.meta.dirname, "fuzz-sender.ts");

let pair: LinkedPair;
let dirs: TunnelboreDirs;
let tb: TunnelboreProcess;

function totalDrops(d: DropCounters): number {
  return Object.values(d).reduce((a, b) => a + b, 0);
}

/** UDP datagrams the kernel dropped in the namespace before a socket read them (full buffers etc.). */
async function kernelDrops(ns: string): Promise<number> {
  const snmp = await nsRun(ns, "cat", ["/proc/net/snmp"]);
  const [names, values] = snmp.split("\n").filter((l) => l.startsWith("Udp:"));
  const i = names?.split(/\s+/).indexOf("InErrors") ?? -1;
  return Number(values?.split(/\s+/)[i] ?? 0);
}

async function fuzz(host: string, port: number, mode: string, seed: number): Promise<number> {
  const out = await nsRun(pair.nsA, process.execPath, [
    "--import",
    "tsx",
    SENDER,
    host,
    String(port),
    String(PER_TARGET),
    mode,
    String(seed),
    pair.keyB.publicKey,
  ]);
  const { sent, failed } = JSON.parse(out.trim().split("\n").pop() ?? "{}") as {
    sent: number;
    failed: number;
  };
  expect(failed).toBe(0);
  return sent;
}

beforeAll(async () => {
  pair = await createLinkedPair("fz");
  dirs = tunnelboreDirs();
  tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs);
  await pair.waitForPing();
});

afterAll(async () => {
  await tb?.stop("SIGTERM");
  await teardownAll();
  dirs?.cleanup();
});

describe("fuzzing the proxy", () => {
  it.each([
    ["catch-all", 1],
    ["loopback", 2],
  ])(
    "drops and counts hostile datagrams sent to the %s socket (seed %d)",
    async (mode, seed) => {
      const before = await tb.status();
      const peer = before.peers[0];
      if (!peer) throw new Error("no peer in status");
      const [host = "", port = "0"] = (mode === "catch-all" ? before.catchAll : peer.loopback).split(":");
      const kernelBefore = await kernelDrops(pair.nsA);

      const sent = await fuzz(host, Number(port), mode, seed);
      expect(sent).toBe(PER_TARGET);

      let last: unknown;
      // Every datagram is either counted by the proxy or was dropped by the kernel for lack of buffer.
      await waitFor(
        async () => {
          const now = await tb.status();
          const counted = totalDrops(now.drops) - totalDrops(before.drops);
          const kernel = (await kernelDrops(pair.nsA)) - kernelBefore;
          last = { counted, kernel, drops: now.drops, traffic: now.peers[0] };
          return counted + kernel >= sent;
        },
        { what: "all fuzz datagrams accounted for", timeoutMs: 60_000, intervalMs: 250 },
      ).catch((err) => {
        throw new Error(`${String(err)}; sent ${sent}, last ${JSON.stringify(last)}`);
      });
      const after = await tb.status();
      const counted = totalDrops(after.drops) - totalDrops(before.drops);
      const kernel = (await kernelDrops(pair.nsA)) - kernelBefore;
      // Nothing was forwarded on top: the counted and kernel drops add up to exactly what was sent,
      // give or take WireGuard's own packets the kernel may have dropped meanwhile.
      expect(counted + kernel).toBeGreaterThanOrEqual(sent);
      expect(counted + kernel).toBeLessThanOrEqual(sent + 50);
      expect(counted).toBeGreaterThan(sent * 0.5);
      expect(after.drops.malformed).toBeGreaterThan(before.drops.malformed);
      expect(after.drops["bad-mac1"] + after.drops["unknown-peer"]).toBeGreaterThan(
        before.drops["bad-mac1"] + before.drops["unknown-peer"],
      );

      expect(tb.process.child.exitCode).toBeNull();
      await pair.waitForPing();
    },
    240_000,
  );
});
