// In a namespace of test/integration/kernel-route-refresh.test.ts: a KernelForwarder (maps in memory,
// the real route batcher) with one peer per remote given, and the real AddressWatch wired to it as
// src/tunnelbore.ts wires it. Prints {"ready":true}, then a line per route lookup made with its answer's
// device; "entries" on stdin prints each remote's entry's interface index.
import { createInterface } from "node:readline";
import { pino } from "pino";
import type { BatchedUdpSocket } from "../../src/proxy/batched-udp.js";
import { KernelForwarder, type KernelRoute } from "../../src/proxy/kernel-forwarder.js";
import { KernelRouteBatcher } from "../../src/proxy/kernel-route-batch.js";
import { ProxyPeer } from "../../src/proxy/proxy-peer.js";
import { AddressWatch } from "../../src/wg/address-watch.js";
import { MemoryFastPath } from "../support/memory-fast-path.js";

const say = (o: object) => process.stdout.write(`${JSON.stringify(o)}\n`);
const remotes = process.argv.slice(2);
const batcher = new KernelRouteBatcher();
let reporting = false;
const resolveRoute = async (remote: string): Promise<KernelRoute | null> => {
  const route = await batcher.route(remote);
  if (reporting) say({ lookup: remote, dev: route?.dev ?? null });
  return route;
};
const logger = pino({ level: "silent" });
const program = new MemoryFastPath();
const forwarder = new KernelForwarder(program, { wireguardInterface: "tbt-none0", logger, resolveRoute });
forwarder.setWireGuardPort(51820, []);
const peers = remotes.map((remoteAddress, i) => {
  const key = new Uint8Array(32).fill(i + 1);
  const peer = new ProxyPeer(
    `peer${i}`,
    key,
    { address: `127.0.1.${i + 1}`, port: 51822 },
    {} as BatchedUdpSocket,
  );
  const route = { localAddress: null, localPort: 40000, remoteAddress, remotePort: 51820 };
  peer.path = {
    kind: "static",
    remote: `${remoteAddress}:51820`,
    onDatagram: null,
    send(): void {},
    close(): void {},
    udpRoute: () => ({ ...route }),
  };
  return peer;
});
await Promise.all(peers.map((p) => forwarder.update(p)));
const watch = new AddressWatch({ ignoreInterfaces: [], wireguardInterface: "tbt-none0", logger });
watch.on("routing", (change) => {
  if (change.all) forwarder.refresh(peers);
  else forwarder.refreshWithin(change.prefixes);
});
await watch.start();
reporting = true;
say({ ready: true });
for await (const line of createInterface({ input: process.stdin })) {
  if (line === "entries") {
    const entries: Record<string, number> = {};
    for (const e of program.outbound.values()) entries[e.remoteAddress] = e.ifindex;
    say({ entries });
  }
}
watch.stop();
forwarder.close();
