// How a run of pings through the tunnel was carried, by the kernel fast path or by Tunnelbore's sockets
// (test/e2e/kernel-mtu.test.ts, kernel-uplinks.test.ts), and the start those tests share: Tunnelbore
// with the kernel fast path on A of a linked pair, carrying its peer.
import { expect } from "vitest";
import type { PeerStatus } from "../../src/control/status.js";
import type { LinkedPair } from "../lab/linked-pair.js";
import { nsRun } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { startTunnelbore, type TunnelboreProcess } from "../lab/tunnelbore.js";
import type { TunnelboreFixture } from "./tunnelbore-fixture.js";
import { waitFor } from "./wait-for.js";

/** Datagrams each way over a ping run: all, and those the kernel carried. */
export interface Carried {
  tx: number;
  rx: number;
  kernelTx: number;
  kernelRx: number;
}

/**
 * Sends `count` echo requests of `size` bytes from `ns` to `address`, expects every reply, and returns
 * how the datagrams were carried (the peer's counters, folded in once a second: waited for).
 */
export async function pingCarried(
  ns: string,
  address: string,
  size: number,
  count: number,
  peer: () => Promise<PeerStatus>,
): Promise<Carried> {
  const before = await peer();
  const result = await ping(ns, address, { count, interval: 10, size });
  expect(result.received, `pings of ${size} bytes answered`).toBe(count);
  const delta = (now: PeerStatus): Carried => ({
    tx: now.txDatagrams - before.txDatagrams,
    rx: now.rxDatagrams - before.rxDatagrams,
    kernelTx: now.kernelTxDatagrams - before.kernelTxDatagrams,
    kernelRx: now.kernelRxDatagrams - before.kernelRxDatagrams,
  });
  let carried = delta(before);
  await waitFor(
    async () => {
      carried = delta(await peer());
      return carried.tx >= count && carried.rx >= count;
    },
    { what: `the counters include the pings of ${size} bytes`, timeoutMs: 5000, intervalMs: 100 },
  );
  return carried;
}

/** Sets both WireGuards' MTU. */
export async function setWireGuardMtu(pair: LinkedPair, mtu: number): Promise<void> {
  for (const [ns, wg] of [
    [pair.nsA, pair.wgA],
    [pair.nsB, pair.wgB],
  ] as const) {
    await nsRun(ns, "ip", ["link", "set", "dev", wg.name, "mtu", String(mtu)]);
  }
}

/** Tunnelbore `--ebpf on` on A, once the kernel carries B; stopped after the test by the fixture. */
export async function startKernelCarried(
  fx: TunnelboreFixture<LinkedPair>,
): Promise<{ tb: TunnelboreProcess; peer: () => Promise<PeerStatus> }> {
  const { pair } = fx;
  const tb = await startTunnelbore(pair.nsA, pair.wgA.name, fx.dirs, ["--ebpf", "on"]);
  fx.running.push(tb);
  const peer = () => tb.peerStatus(pair.keyB.publicKey);
  await pair.waitForPing();
  await waitFor(async () => (await peer()).kernelFastPath, {
    what: "the kernel carries the peer",
    timeoutMs: 10_000,
    intervalMs: 100,
  });
  return { tb, peer };
}
