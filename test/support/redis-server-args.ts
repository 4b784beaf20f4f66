/**
 * The flags of a redis-server that a test or benchmark starts for itself: on loopback, on the given
 * port, in memory only (no snapshot, no append-only file: nothing in it outlives its run).
 */
export function redisServerArgs(port: number, extra: readonly string[] = []): string[] {
  return ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", ...extra];
}
