// The kernel fast path's UDP checksums, checked by a receiver that checks them. On a veth with checksum
// offload (the lab's default) a datagram crosses as CHECKSUM_PARTIAL and nobody verifies the field, so a
// wrong checksum seed would pass every other test and fail on a real NIC. Here both ends have transmit
// checksumming off (`ethtool -K eth0 tx off`): A's outbound datagrams get their checksum computed in
// software from the seed the program left, B's arrive with a full checksum the program must update in
// place, and each side's stack verifies what it receives (a bad one is counted in InCsumErrors and
// dropped). IPv4 (address and port rewrite) and IPv6 (the 4 <-> 6 translation).

import { describe, expect, it } from "vitest";
import { createLinkedPair } from "../lab/linked-pair.js";
import { nsRun } from "../lab/netns.js";
import { ping } from "../lab/ping.js";
import { startTunnelbore } from "../lab/tunnelbore.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

/** The namespace's UDP checksum errors, both families (nstat's absolute counters). */
async function checksumErrors(ns: string): Promise<number> {
  const out = await nsRun(ns, "nstat", ["-az", "UdpInCsumErrors", "Udp6InCsumErrors"]);
  return [...out.matchAll(/^Udp6?InCsumErrors\s+(\d+)/gm)].reduce((sum, m) => sum + Number(m[1]), 0);
}

for (const family of ["ipv4", "ipv6"] as const) {
  describe(`kernel fast path, ${family} path, checksums computed and verified in software`, () => {
    const fx = useTunnelbores(() => createLinkedPair(family === "ipv4" ? "kc4" : "kc6", family));

    it("every datagram through the kernel arrives with a checksum its receiver accepts, both ways", async () => {
      const { pair } = fx;
      for (const ns of [pair.nsA, pair.nsB]) await nsRun(ns, "ethtool", ["-K", "eth0", "tx", "off"]);
      await pair.waitForPing();
      const tb = await startTunnelbore(pair.nsA, pair.wgA.name, fx.dirs, ["--ebpf", "on"]);
      fx.running.push(tb);
      const peerOf = () => tb.peerStatus(pair.keyB.publicKey);
      await waitFor(async () => (await peerOf()).kernelFastPath, {
        what: "the kernel carries the peer",
        timeoutMs: 10_000,
        intervalMs: 100,
      });
      await pair.waitForPing();
      const errorsBefore = [await checksumErrors(pair.nsA), await checksumErrors(pair.nsB)];
      const before = await peerOf();
      // Payloads of several lengths, odd ones included (the checksum's last byte is padded).
      for (const size of [56, 301, 1200]) {
        const result = await ping(pair.nsA, pair.tunB, { count: 20, interval: 10, size });
        expect(result.received, `${size}-byte pings`).toBe(20);
      }
      await waitFor(
        async () => {
          const p = await peerOf();
          return (
            p.kernelTxDatagrams - before.kernelTxDatagrams >= 60 &&
            p.kernelRxDatagrams - before.kernelRxDatagrams >= 60
          );
        },
        { what: "the kernel's counters include the pings both ways", timeoutMs: 5000, intervalMs: 100 },
      );
      expect([await checksumErrors(pair.nsA), await checksumErrors(pair.nsB)]).toEqual(errorsBefore);
    }, 60_000);
  });
}
