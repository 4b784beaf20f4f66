// A load-generating process of bench/intro-cluster.ts: holds clients `from`..`to` (pairs declaring each
// other, on neighbouring nodes), and when a node dies moves its clients to the others, reporting
// when each is back. One process holds at most ~19,000 sockets here (the hard open-file limit is
// 20,000 and cannot be raised without CAP_SYS_RESOURCE), and its CPU is its own.
import { monitorEventLoopDelay } from "node:perf_hooks";
import { BenchClient, connectAll, type MoveTimeline, nodeOfClient } from "./intro-cluster-client.js";

export interface HolderStart {
  urls: string[];
  from: number;
  to: number;
}
/** From the bench after the start: measure this process's loop delay from now (on) or report it (off). */
export interface HolderWindow {
  type: "window";
  on: boolean;
}
export type HolderReport =
  /** Listening for its start (a message sent before the listener is there would be lost). */
  | { type: "ready" }
  | { type: "connected" }
  /** This process's event loop delay (ms) over the bench's window. */
  | { type: "loop"; p50: number; p99: number; max: number }
  | {
      type: "back";
      moves: MoveTimeline[];
      retries: number;
      firstClose: number;
      /** This process's CPU since its first close, and its event loop's longest delay since (ms). */
      cpuMs: number;
      loopMaxMs: number;
    };

const send = (report: HolderReport) => process.send!(report);

const windowDelay = monitorEventLoopDelay({ resolution: 1 });
process.on("message", (message: HolderStart | HolderWindow) => {
  if (!("type" in message)) return;
  if (message.on) {
    windowDelay.reset();
    windowDelay.enable();
    return;
  }
  windowDelay.disable();
  const ms = (ns: number) => ns / 1e6;
  send({
    type: "loop",
    p50: ms(windowDelay.percentile(50)),
    p99: ms(windowDelay.percentile(99)),
    max: ms(windowDelay.max),
  });
});

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
  let back: MoveTimeline[] = [];
  let retries = 0;
  let firstClose = 0;
  // The load generator's own share of the failover: its CPU, and how late its loop ran.
  let cpuAtFirstClose: NodeJS.CpuUsage | undefined;
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  for (const client of clients) {
    client.ws!.once("close", () => {
      if (firstClose) return;
      firstClose = Date.now();
      cpuAtFirstClose = process.cpuUsage();
      loopDelay.enable();
    });
    client.moveWhenClosed(
      start.urls,
      (timeline) => back.push(timeline),
      () => retries++,
    );
  }
  setInterval(() => {
    if (back.length === 0 && retries === 0) return;
    const cpu = process.cpuUsage(cpuAtFirstClose);
    const cpuMs = (cpu.user + cpu.system) / 1e3;
    send({ type: "back", moves: back, retries, firstClose, cpuMs, loopMaxMs: loopDelay.max / 1e6 });
    back = [];
    retries = 0;
  }, 250);
});
// Ended by SIGTERM when the bench gives node flags (--cpu-prof writes its profile at exit).
process.once("SIGTERM", () => process.exit(0));
send({ type: "ready" });
