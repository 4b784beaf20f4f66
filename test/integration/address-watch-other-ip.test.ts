// AddressWatch with an `ip` that is not the one it expects, put first on PATH by a wrapper:
// - one that knows no nexthop objects (iproute2 before 5.3, or a kernel before 5.3), which would refuse
//   a monitor asked for them, and routing changes would go unseen: the watch must start its monitor
//   without them, and a route change must still re-resolve the entries inside it;
// - one whose monitor is slow to start listening: the watch must not report itself started (and read
//   the routes) before the monitor listens, or a route added in between would be in neither.
import { type ChildProcess, execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createNamespace, nsRun, teardownAll, uniqueTag } from "../lab/netns.js";
import { waitFor } from "../support/wait-for.js";
import { startRouteRefreshChild } from "./kernel-route-refresh-support.js";

const supported = process.getuid?.() === 0;
const REMOTE = "198.18.1.1";
const REAL_IP = supported ? execFileSync("sh", ["-c", "command -v ip"]).toString().trim() : "ip";

interface Watched {
  ns: string;
  /** Every invocation of the wrapper, its arguments. */
  calls: () => string[];
  /** The child's lines: ready, then one per lookup made. */
  lines: Array<Record<string, unknown>>;
}

describe.skipIf(!supported)("AddressWatch with another ip", () => {
  const dirs: string[] = [];
  let child: ChildProcess | null = null;

  afterEach(async () => {
    child?.stdin?.end();
    child = null;
    await teardownAll();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  /** A namespace with REMOTE routed through tbt-oia, and the child's watch using `ip` wrapped by `body`. */
  async function watchWith(body: string): Promise<Watched> {
    const dir = mkdtempSync(join(tmpdir(), "tbt-ip-wrapper-"));
    dirs.push(dir);
    const calls = join(dir, "calls");
    writeFileSync(calls, "");
    writeFileSync(join(dir, "ip"), `#!/bin/sh\necho "$*" >> ${calls}\n${body}\nexec ${REAL_IP} "$@"\n`);
    chmodSync(join(dir, "ip"), 0o755);
    const ns = await createNamespace(`tbt-oip-${uniqueTag()}`);
    await nsRun(ns, "ip", ["link", "add", "tbt-oia", "type", "veth", "peer", "name", "tbt-oib"]);
    await nsRun(ns, "ip", ["link", "add", "tbt-oic", "type", "veth", "peer", "name", "tbt-oid"]);
    await nsRun(ns, "ip", ["addr", "add", "10.72.0.1/24", "dev", "tbt-oia"]);
    await nsRun(ns, "ip", ["addr", "add", "10.73.0.1/24", "dev", "tbt-oic"]);
    for (const dev of ["tbt-oia", "tbt-oib", "tbt-oic", "tbt-oid"])
      await nsRun(ns, "ip", ["link", "set", dev, "up"]);
    await nsRun(ns, "ip", ["route", "add", "198.18.0.0/16", "via", "10.72.0.2"]);

    const started = await startRouteRefreshChild(ns, [REMOTE], {
      ip: REAL_IP,
      env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` },
    });
    child = started.child;
    const lines = started.lines;
    return { ns, calls: () => readFileSync(calls, "utf8").split("\n").filter(Boolean), lines };
  }

  /** Adds a more specific route for REMOTE through tbt-oic; the watch must look it up again. */
  async function routeMovesRemote(w: Watched): Promise<void> {
    const from = w.lines.length;
    await nsRun(w.ns, "ip", ["route", "add", "198.18.1.0/24", "via", "10.73.0.2"]);
    await waitFor(async () => w.lines.slice(from).some((l) => l.lookup === REMOTE && l.dev === "tbt-oic"), {
      what: `${REMOTE} looked up again through tbt-oic`,
      timeoutMs: 10_000,
      intervalMs: 50,
    });
  }

  it("one that knows no nexthop objects: watches links, addresses, routes and rules, and sees a route change", async () => {
    const w = await watchWith(`for word in "$@"; do
  if [ "$word" = nexthop ]; then echo 'Object "nexthop" is unknown, try "ip help".' >&2; exit 255; fi
done`);
    const monitors = () => w.calls().filter((l) => l.includes("monitor"));
    expect(w.calls()).toContain("-o nexthop show");
    expect(monitors()).toEqual(["-o monitor link address route rule"]);
    await routeMovesRemote(w);
    // The monitor ran on: it was not refused and restarted.
    expect(monitors()).toHaveLength(1);
  }, 60_000);

  it("one whose monitor listens 300 ms late: a route added just after the start is still seen", async () => {
    const w = await watchWith(`case "$*" in *monitor*) sleep 0.3 ;; esac`);
    expect(w.calls().filter((l) => l.includes("monitor"))).toEqual([
      "-o monitor link address route rule nexthop",
    ]);
    await routeMovesRemote(w);
  }, 60_000);
});
