// Where `ip` or the kernel knows no nexthop objects (iproute2 before 5.3, Linux before 5.3), asking
// `ip monitor` for them would make it refuse to run at all, and routing changes would go unseen. Here an
// `ip` that refuses the word "nexthop" (as an old one does, with its message) stands first on PATH: the
// watch must start its monitor without it, and a route change must still re-resolve the entries inside it.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { createNamespace, nsRun, teardownAll, trackChild, uniqueTag } from "../lab/netns.js";
import { waitFor } from "../support/wait-for.js";

const CHILD = fileURLToPath(new URL("./kernel-route-refresh-child.ts", import.meta.url));
const supported = process.getuid?.() === 0;
const REMOTE = "198.18.1.1";

describe.skipIf(!supported)("AddressWatch with an ip that knows no nexthop objects", () => {
  const dir = mkdtempSync(join(tmpdir(), "tbt-old-ip-"));
  let child: ChildProcess | null = null;

  afterAll(async () => {
    child?.stdin?.end();
    await teardownAll();
    rmSync(dir, { recursive: true, force: true });
  });

  it("watches links, addresses, routes and rules, and still sees a route change", async () => {
    const realIp = execFileSync("sh", ["-c", "command -v ip"]).toString().trim();
    const calls = join(dir, "calls");
    writeFileSync(
      join(dir, "ip"),
      `#!/bin/sh
echo "$*" >> ${calls}
for word in "$@"; do
  if [ "$word" = nexthop ]; then echo 'Object "nexthop" is unknown, try "ip help".' >&2; exit 255; fi
done
exec ${realIp} "$@"
`,
    );
    chmodSync(join(dir, "ip"), 0o755);
    const ns = await createNamespace(`tbt-oip-${uniqueTag()}`);
    await nsRun(ns, "ip", ["link", "add", "tbt-oia", "type", "veth", "peer", "name", "tbt-oib"]);
    await nsRun(ns, "ip", ["link", "add", "tbt-oic", "type", "veth", "peer", "name", "tbt-oid"]);
    await nsRun(ns, "ip", ["addr", "add", "10.72.0.1/24", "dev", "tbt-oia"]);
    await nsRun(ns, "ip", ["addr", "add", "10.73.0.1/24", "dev", "tbt-oic"]);
    for (const dev of ["tbt-oia", "tbt-oib", "tbt-oic", "tbt-oid"])
      await nsRun(ns, "ip", ["link", "set", dev, "up"]);
    await nsRun(ns, "ip", ["route", "add", "198.18.0.0/16", "via", "10.72.0.2"]);

    const lines: Array<Record<string, unknown>> = [];
    const c = spawn(realIp, ["netns", "exec", ns, process.execPath, "--import", "tsx", CHILD, REMOTE], {
      stdio: ["pipe", "pipe", "inherit"],
      env: { ...process.env, PATH: `${dir}:${process.env.PATH ?? ""}` },
    });
    trackChild(c);
    child = c;
    let buffered = "";
    c.stdout?.on("data", (chunk: Buffer) => {
      buffered += chunk.toString();
      for (let nl = buffered.indexOf("\n"); nl !== -1; nl = buffered.indexOf("\n")) {
        lines.push(JSON.parse(buffered.slice(0, nl)) as Record<string, unknown>);
        buffered = buffered.slice(nl + 1);
      }
    });
    await waitFor(async () => lines.some((l) => l.ready), { what: "the child ready", timeoutMs: 20_000 });

    const monitors = () =>
      readFileSync(calls, "utf8")
        .split("\n")
        .filter((l) => l.includes("monitor"));
    expect(readFileSync(calls, "utf8")).toContain("nexthop show");
    expect(monitors()).toEqual(["-o monitor link address route rule"]);

    const from = lines.length;
    await nsRun(ns, "ip", ["route", "add", "198.18.1.0/24", "via", "10.73.0.2"]);
    await waitFor(async () => lines.slice(from).some((l) => l.lookup === REMOTE && l.dev === "tbt-oic"), {
      what: `${REMOTE} looked up again through tbt-oic`,
      timeoutMs: 10_000,
      intervalMs: 50,
    });
    // The monitor ran on: it was not refused and restarted.
    expect(monitors()).toHaveLength(1);
  }, 60_000);
});
