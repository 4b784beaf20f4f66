// A load-generating process of bench/intro-cluster.ts: holds clients `from`..`to` (pairs declaring each
// other, on neighbouring nodes), and when a node dies moves its clients to the others, reporting
// when each is back. One process holds at most ~19,000 sockets here (the hard open-file limit is
// 20,000 and cannot be raised without CAP_SYS_RESOURCE), and its CPU is its own.
import { BenchClient, connectAll, nodeOfClient } from "./intro-cluster-client.js";

export interface HolderStart {
  urls: string[];
  from: number;
  to: number;
}
export type HolderReport =
  /** Listening for its start (a message sent before the listener is there would be lost). */
  | { type: "ready" }
  | { type: "connected" }
  | { type: "back"; at: number[]; retries: number; firstClose: number };

const send = (report: HolderReport) => process.send!(report);

process.once("message", async (start: HolderStart) => {
  const clients: BenchClient[] = [];
  for (let i = start.from; i < start.to; i++) clients.push(new BenchClient(i));
  for (let i = 0; i + 1 < clients.length; i += 2) {
    clients[i]!.peers = [clients[i + 1]!.publicKey];
    clients[i + 1]!.peers = [clients[i]!.publicKey];
  }
  const nodes = start.urls.length;
  await connectAll(clients, start.urls, (i) => nodeOfClient(start.from + i, nodes));
  send({ type: "connected" });
  // Reported in batches: an IPC message per client would cost the CPU the moves need.
  let back: number[] = [];
  let retries = 0;
  let firstClose = 0;
  for (const client of clients) {
    client.ws!.once("close", () => {
      firstClose ||= Date.now();
    });
    client.moveWhenClosed(
      start.urls,
      () => back.push(Date.now()),
      () => retries++,
    );
  }
  setInterval(() => {
    if (back.length === 0 && retries === 0) return;
    send({ type: "back", at: back, retries, firstClose });
    back = [];
    retries = 0;
  }, 250);
});
send({ type: "ready" });
