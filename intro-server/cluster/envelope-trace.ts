/**
 * Opt-in stage timestamps for the cluster benchmark (bench/intro-cluster.ts), off unless
 * TUNNELBORE_INTRO_TRACE=1. With it, a cross-node envelope carries `t`: the monotonic clock (ms, shared by
 * the processes of one machine) when node A took the client's frame, when node B took the engine's
 * message and when it wrote it to the receiver's socket; and every second the node writes its event
 * loop's delay and its route scripts' round trips (p50/p99/max) to stderr as `TRACE-LOOP {json}`. Never on in production: the envelope grows by
 * ~60 bytes and the client sees the field.
 */
import { createHistogram, monitorEventLoopDelay } from "node:perf_hooks";

export const TRACE = process.env.TUNNELBORE_INTRO_TRACE === "1";

/** The monotonic clock in ms (CLOCK_MONOTONIC: comparable between processes on one machine). */
export const traceNow = (): number => Number(process.hrtime.bigint() / 1000n) / 1000;

/** Appends the time now to the envelope's `t` (when tracing). */
export function stamp(envelope: object): void {
  if (!TRACE) return;
  const traced = envelope as { t?: number[] };
  traced.t ??= [];
  traced.t.push(traceNow());
}

const routes = createHistogram();

/** A route script's round trip from this node (ms), into the second's histogram. */
export function traceRoute(ms: number): void {
  routes.record(Math.max(1, Math.round(ms * 1000)));
}

/** When tracing: the loop delay's p50/p99/max (ms) each second on stderr, reset after each line. */
export function startLoopTrace(): void {
  if (!TRACE) return;
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  setInterval(() => {
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    const line = {
      at: traceNow(),
      p50: ms(histogram.percentile(50)),
      p99: ms(histogram.percentile(99)),
      max: ms(histogram.max),
      routes: routes.count,
      routeP50: routes.count ? routes.percentile(50) / 1000 : 0,
      routeP99: routes.count ? routes.percentile(99) / 1000 : 0,
      routeMax: routes.count ? routes.max / 1000 : 0,
    };
    histogram.reset();
    routes.reset();
    process.stderr.write(`TRACE-LOOP ${JSON.stringify(line)}\n`);
  }, 1_000).unref();
}
