// User-space forwarding (--ebpf off) between real wireguard-go peers over a static path, with each
// user-space UDP I/O: the batched native addon (the default where it loads) and Node's dgram
// (TBT_UDP_IO=dgram). Pings and a short iperf3 TCP run (bursts of same-size datagrams: GSO/GRO on the
// native sockets) must pass, all of it through Tunnelbore's sockets, none through the kernel fast path.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { measureThroughput } from "../lab/iperf.js";
import { createLinkedPair, type LinkedPair } from "../lab/linked-pair.js";
import { teardownAll } from "../lab/netns.js";
import {
  startTunnelbore,
  type TunnelboreDirs,
  type TunnelboreProcess,
  tunnelboreDirs,
} from "../lab/tunnelbore.js";
import { waitFor } from "../support/wait-for.js";

let pair: LinkedPair;
let dirs: TunnelboreDirs;
const running: TunnelboreProcess[] = [];

beforeAll(async () => {
  pair = await createLinkedPair("bu");
  dirs = tunnelboreDirs();
});

afterEach(async () => {
  for (const tb of running.splice(0)) await tb.stop("SIGTERM");
});

afterAll(async () => {
  await teardownAll();
  dirs?.cleanup();
});

describe.each([
  { io: "native", env: {}, says: "user-space UDP: batched I/O" },
  { io: "dgram", env: { TBT_UDP_IO: "dgram" }, says: "user-space UDP: Node's dgram" },
])("user-space static path with $io I/O", ({ env, says }) => {
  it("carries pings and an iperf3 TCP run through Tunnelbore's own sockets", async () => {
    const tb = await startTunnelbore(pair.nsA, pair.wgA.name, dirs, ["--ebpf", "off"], env);
    running.push(tb);
    await waitFor(
      async () => {
        const peer = (await tb.status()).peers[0];
        return !!peer && (await pair.wgA.endpointOf(pair.keyB.publicKey)) === peer.loopback;
      },
      { what: "WireGuard's endpoint at L(P)" },
    );
    expect(tb.logs().some((l) => String(l.msg).startsWith(says))).toBe(true);
    await pair.waitForPing();
    const before = (await tb.status()).peers[0]!;
    const iperf = await measureThroughput(pair.nsB, pair.tunB, pair.nsA, { duration: 1 });
    expect(iperf.bitsPerSecond).toBeGreaterThan(0);
    const after = (await tb.status()).peers[0]!;
    // Every data packet went through Tunnelbore in user space: at least a megabyte each way's worth.
    expect(after.txBytes - before.txBytes).toBeGreaterThan(1_000_000);
    expect(after.rxDatagrams).toBeGreaterThan(before.rxDatagrams);
    expect(after.kernelTxDatagrams).toBe(0);
    expect(await pair.pingOnce()).toBe(true);
  });
});
