// User-space forwarding (--ebpf off) between real wireguard-go peers over a static path, with each
// user-space UDP I/O: the batched native addon (the default where it loads) and Node's dgram
// (TBT_UDP_IO=dgram). Pings and a short iperf3 TCP run (bursts of same-size datagrams: GSO/GRO on the
// native sockets) must pass, all of it through Tunnelbore's sockets, none through the kernel fast path.
import { describe, expect, it } from "vitest";
import { measureThroughput } from "../lab/iperf.js";
import { createLinkedPair } from "../lab/linked-pair.js";
import { startTunnelbore } from "../lab/tunnelbore.js";
import { useTunnelbores } from "../support/tunnelbore-fixture.js";
import { waitFor } from "../support/wait-for.js";

const fx = useTunnelbores(() => createLinkedPair("bu"));

describe.each([
  { io: "native", env: {}, says: "user-space UDP: batched I/O" },
  { io: "dgram", env: { TBT_UDP_IO: "dgram" }, says: "user-space UDP: Node's dgram" },
])("user-space static path with $io I/O", ({ env, says }) => {
  it("carries pings and an iperf3 TCP run through Tunnelbore's own sockets", async () => {
    const tb = await startTunnelbore(fx.pair.nsA, fx.pair.wgA.name, fx.dirs, ["--ebpf", "off"], env);
    fx.running.push(tb);
    await waitFor(
      async () => {
        const peer = (await tb.status()).peers[0];
        return !!peer && (await fx.pair.wgA.endpointOf(fx.pair.keyB.publicKey)) === peer.loopback;
      },
      { what: "WireGuard's endpoint at L(P)" },
    );
    expect(tb.logs().some((l) => String(l.msg).startsWith(says))).toBe(true);
    await fx.pair.waitForPing();
    const before = (await tb.status()).peers[0]!;
    const iperf = await measureThroughput(fx.pair.nsB, fx.pair.tunB, fx.pair.nsA, { duration: 1 });
    expect(iperf.bitsPerSecond).toBeGreaterThan(0);
    const after = (await tb.status()).peers[0]!;
    // Every data packet went through Tunnelbore in user space: at least a megabyte each way's worth.
    expect(after.txBytes - before.txBytes).toBeGreaterThan(1_000_000);
    expect(after.rxDatagrams).toBeGreaterThan(before.rxDatagrams);
    expect(after.kernelTxDatagrams).toBe(0);
    expect(await fx.pair.pingOnce()).toBe(true);
  });
});
