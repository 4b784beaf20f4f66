// Starts kernel-route-refresh-child.ts in a namespace and collects what it prints (one JSON object a
// line: {"ready":true}, then one per route lookup, and {"entries":...} when asked on stdin).
import { type ChildProcess, spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { trackChild } from "../lab/netns.js";
import { waitFor } from "../support/wait-for.js";

const CHILD = fileURLToPath(new URL("./kernel-route-refresh-child.ts", import.meta.url));

export interface RouteRefreshChild {
  child: ChildProcess;
  /** Every line it printed so far, parsed, in order. */
  lines: Array<Record<string, unknown>>;
}

/**
 * The child in `ns` with one kernel entry per remote, once it is ready. `ip` runs `ip netns exec` (an
 * absolute path when `env` puts another `ip` first on PATH for the child).
 */
export async function startRouteRefreshChild(
  ns: string,
  remotes: string[],
  options: { env?: NodeJS.ProcessEnv; ip?: string } = {},
): Promise<RouteRefreshChild> {
  const child = spawn(
    options.ip ?? "ip",
    ["netns", "exec", ns, process.execPath, "--import", "tsx", CHILD, ...remotes],
    { stdio: ["pipe", "pipe", "inherit"], env: options.env ?? process.env },
  );
  trackChild(child);
  const lines: Array<Record<string, unknown>> = [];
  let buffered = "";
  child.stdout?.on("data", (chunk: Buffer) => {
    buffered += chunk.toString();
    for (let nl = buffered.indexOf("\n"); nl !== -1; nl = buffered.indexOf("\n")) {
      lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
      buffered = buffered.slice(nl + 1);
    }
  });
  await waitFor(async () => lines.some((l) => l.ready), { what: "the child ready", timeoutMs: 20_000 });
  return { child, lines };
}
