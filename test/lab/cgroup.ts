// A cgroup v2 for the tests' Tunnelbores (tbt-l<pid>-cg, below the test process's own cgroup): a cgroup
// a Tunnelbore makes for itself (src/wg/tunnel-bypass.ts, with a full tunnel) lies below it, so
// teardownAll removes every one, also after a Tunnelbore was killed; a dead test process's is removed by
// the next one. cgroups are global (not per network namespace), hence the unique names.
import { mkdir, readdir, readFile, rmdir } from "node:fs/promises";
import { join } from "node:path";
import { pidAlive } from "../../src/pid-alive.js";
import { cgroupDirectory, parseMountInfo, parseOwnCgroup } from "../../src/wg/tunnel-bypass.js";
import { waitFor } from "../support/wait-for.js";
import { onTeardown } from "./netns.js";

const NAME_RE = /^tbt-l(\d+)-cg$/;

let created: Promise<string | null> | null = null;

/** The test process's cgroup for Tunnelbores, made on first use; null where no cgroup v2 is mounted. */
export function testCgroup(): Promise<string | null> {
  created ??= createTestCgroup().catch(() => null);
  return created;
}

async function createTestCgroup(): Promise<string | null> {
  const own = parseOwnCgroup(await readFile("/proc/self/cgroup", "utf8"));
  const mounts = parseMountInfo(await readFile("/proc/self/mountinfo", "utf8"));
  const parent = own === null ? null : cgroupDirectory(mounts, own);
  if (parent === null) return null;
  for (const entry of await readdir(parent)) {
    const pid = NAME_RE.exec(entry)?.[1];
    if (pid !== undefined && !pidAlive(Number(pid))) await removeTree(join(parent, entry));
  }
  const dir = join(parent, `tbt-l${process.pid}-cg`);
  await mkdir(dir, { recursive: true });
  onTeardown(async () => {
    created = null;
    await removeTree(dir);
  });
  return dir;
}

/** Every PID in a cgroup tree: only processes the tests started (Tunnelbores) and their children. */
async function pidsIn(dir: string): Promise<number[]> {
  const own = (await readFile(join(dir, "cgroup.procs"), "utf8").catch(() => ""))
    .split("\n")
    .filter(Boolean)
    .map(Number);
  const below = await Promise.all(
    (await readdir(dir, { withFileTypes: true }).catch(() => []))
      .filter((e) => e.isDirectory())
      .map((e) => pidsIn(join(dir, e.name))),
  );
  return [...own, ...below.flat()];
}

/** Ends what still runs in the tree (by PID: SIGTERM, then SIGKILL after 2 s), then removes it, deepest first. */
async function removeTree(dir: string): Promise<void> {
  const pids = await pidsIn(dir);
  const signal = (sig: NodeJS.Signals) => {
    for (const pid of pids.filter(pidAlive)) {
      try {
        process.kill(pid, sig);
      } catch {
        // gone meanwhile
      }
    }
  };
  signal("SIGTERM");
  await waitFor(() => !pids.some(pidAlive), { what: "test cgroup processes to end", timeoutMs: 2000 }).catch(
    () => signal("SIGKILL"),
  );
  await removeEmptyTree(dir);
}

async function removeEmptyTree(dir: string): Promise<void> {
  for (const entry of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (entry.isDirectory()) await removeEmptyTree(join(dir, entry.name));
  }
  // A killed process leaves its cgroup only once it is reaped: EBUSY until then.
  await waitFor(
    () =>
      rmdir(dir).then(
        () => true,
        (err: NodeJS.ErrnoException) => {
          if (err.code === "ENOENT") return true;
          throw err;
        },
      ),
    { what: `cgroup ${dir} removed`, timeoutMs: 2000 },
  ).catch(() => undefined);
}
