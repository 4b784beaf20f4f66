// Cold starts in a ProductLab made with `startTunnelbores: false`: WireGuard forgets its peers, then
// the Tunnelbores start at the same moment (test/e2e/cold-start.test.ts, bench/cold-start.ts).
import { waitFor } from "../support/wait-for.js";
import { nsRun } from "./netns.js";
import type { ProductLab } from "./tunnelbore-lab.js";

/**
 * WireGuard on `on` forgets its peer `peer` (no session, no handshake sent) and has `endpoint` for it
 * (default none, as before Tunnelbore ever ran): removed and added again in one `wg set`.
 */
export async function forgetPeer(
  lab: ProductLab,
  on: string,
  peer: string,
  endpoint?: string,
): Promise<void> {
  const h = lab.host(on);
  const key = lab.host(peer).keys.publicKey;
  const args = ["set", h.wg.name, "peer", key, "remove", "peer", key];
  args.push("allowed-ips", `${lab.host(peer).tunnelAddress}/32`);
  if (endpoint) args.push("endpoint", endpoint);
  await nsRun(h.ns, "wg", args);
}

/** Every pair of `names` forgets each other (see forgetPeer), without endpoints. */
export async function forgetAll(lab: ProductLab, names: readonly string[]): Promise<void> {
  for (const on of names) for (const peer of names) if (peer !== on) await forgetPeer(lab, on, peer);
}

async function pointsAtLoopback(lab: ProductLab, on: string, peer: string): Promise<boolean> {
  return (await lab.host(on).wg.endpointOf(lab.host(peer).keys.publicKey)).startsWith("127.");
}

/**
 * Starts Tunnelbore on every host of `names` at the same moment and resolves as soon as each of their
 * WireGuards points the others at loopback, with `ready`: the start itself (control sockets answer).
 */
export async function startTogether(
  lab: ProductLab,
  names: readonly string[],
): Promise<{ ready: Promise<void> }> {
  const ready = Promise.all(names.map((h) => lab.startTunnelbore(h))).then(() => undefined);
  ready.catch(() => undefined); // the caller awaits it; a failure must not go unhandled meanwhile
  const pairs = names.flatMap((on) => names.filter((p) => p !== on).map((p) => [on, p] as const));
  await Promise.race([
    waitFor(
      async () => (await Promise.all(pairs.map(([on, p]) => pointsAtLoopback(lab, on, p)))).every(Boolean),
      {
        what: "every WireGuard points its peers at loopback",
        timeoutMs: 20_000,
        intervalMs: 0,
      },
    ),
    ready.then(() => new Promise<never>(() => undefined)), // a start that fails ends the wait
  ]);
  return { ready };
}
