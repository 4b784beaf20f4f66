// Primitives for test hosts in network namespaces: every name starts with "tbt-", every process is
// tracked by PID and ended by PID, and `teardownAll` removes whatever this process made.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const namespaces = new Set<string>();
const children = new Set<ChildProcess>();
const teardownHooks = new Set<() => Promise<void>>();

/** A short random tag so parallel runs and reruns never share names. */
export function uniqueTag(): string {
  return randomBytes(3).toString("hex");
}

/** Runs a command on the host (for `ip netns ...`, `ip link ...` on our own veths). */
export async function run(cmd: string, args: string[], input?: string): Promise<string> {
  try {
    if (input === undefined) {
      const { stdout } = await execFileAsync(cmd, args, { maxBuffer: 16 << 20 });
      return stdout;
    }
    return await new Promise<string>((resolve, reject) => {
      const child = execFile(cmd, args, { maxBuffer: 16 << 20 }, (err, stdout) =>
        err ? reject(err) : resolve(stdout),
      );
      child.stdin?.end(input);
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed: ${e.stderr?.trim() || e.message}`);
  }
}

/** Runs a command inside a namespace and returns its stdout. */
export function nsRun(ns: string, cmd: string, args: string[], input?: string): Promise<string> {
  return run("ip", ["netns", "exec", ns, cmd, ...args], input);
}

/** Creates a namespace (name must start with "tbt-") with loopback up. */
export async function createNamespace(name: string): Promise<string> {
  if (!name.startsWith("tbt-")) throw new Error(`namespace ${name} must start with tbt-`);
  await run("ip", ["netns", "add", name]);
  namespaces.add(name);
  await nsRun(name, "ip", ["link", "set", "lo", "up"]);
  return name;
}

export async function deleteNamespace(name: string): Promise<void> {
  namespaces.delete(name);
  await run("ip", ["netns", "del", name]).catch(() => undefined);
}

export interface SpawnedProcess {
  readonly child: ChildProcess;
  readonly output: () => string;
  /** Resolves when the process has exited, with its exit code (or signal name). */
  readonly exited: Promise<number | string>;
  /** Sends a signal to this PID only and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/**
 * Spawns a long-running process inside a namespace; it is ended by PID at teardown. With `cgroup` (a
 * cgroup v2 directory) it starts in that cgroup: a shell moves itself there and then becomes the process
 * (same PID), so it never runs outside it.
 */
export function spawnInNamespace(
  ns: string,
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
  options: { cgroup?: string } = {},
): SpawnedProcess {
  const argv = ["netns", "exec", ns, cmd, ...args];
  const [command, commandArgs] = options.cgroup
    ? ["sh", ["-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', options.cgroup, "ip", ...argv]]
    : ["ip", argv];
  const child = spawn(command, commandArgs, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  children.add(child);
  let out = "";
  const collect = (chunk: Buffer) => {
    out += chunk.toString();
    if (out.length > 4 << 20) out = out.slice(-(2 << 20));
  };
  child.stdout?.on("data", collect);
  child.stderr?.on("data", collect);
  const exited = new Promise<number | string>((resolve) => {
    child.on("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? signal ?? -1);
    });
  });
  return {
    child,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = "SIGTERM") {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill("SIGKILL"), 5000);
        const result = await exited;
        clearTimeout(timer);
        return result;
      }
      return exited;
    },
  };
}

/** Tracks a child spawned elsewhere (e.g. with a stdin pipe) so `teardownAll` ends it by PID. */
export function trackChild(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  children.add(child);
  child.once("exit", () => children.delete(child));
}

/** Registers a hook run first by `teardownAll` (e.g. a lab removing its namespaces); returns an unregister function. */
export function onTeardown(hook: () => Promise<void>): () => void {
  teardownHooks.add(hook);
  return () => teardownHooks.delete(hook);
}

/** Ends every process and removes every namespace this process made. Safe to call twice. */
export async function teardownAll(): Promise<void> {
  for (const hook of [...teardownHooks]) await hook().catch(() => undefined);
  for (const child of [...children]) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  await Promise.all(
    [...children].map((c) => new Promise((r) => (c.exitCode !== null ? r(null) : c.once("exit", r)))),
  );
  for (const ns of [...namespaces]) await deleteNamespace(ns);
}

/** A WireGuard key pair made by `wg genkey`/`wg pubkey`. */
export async function generateKeyPair(): Promise<{ privateKey: string; publicKey: string }> {
  const privateKey = (await run("wg", ["genkey"])).trim();
  const publicKey = (await run("wg", ["pubkey"], `${privateKey}\n`)).trim();
  return { privateKey, publicKey };
}
