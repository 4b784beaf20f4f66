// Runs the built `tunnelbore` CLI inside a test namespace and reads its status over the control socket.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { controlSocketPath, requestStatus } from "../../src/control/control-socket.js";
import type { PeerStatus, StatusReport } from "../../src/control/status.js";
import { waitFor } from "../support/wait-for.js";
import { testCgroup } from "./cgroup.js";
import { type SpawnedProcess, spawnInNamespace } from "./netns.js";

export const CLI = resolve(import.meta.dirname, "../../dist/src/cli.js");

export interface TunnelboreProcess {
  readonly process: SpawnedProcess;
  readonly runDir: string;
  readonly stateDir: string;
  status(): Promise<StatusReport>;
  /** The peer with this public key as `status` reports it; throws when status has no such peer. */
  peerStatus(publicKey: string): Promise<PeerStatus>;
  /** Log lines (pino JSON) parsed; unparsable lines are skipped. */
  logs(): Array<Record<string, unknown>>;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export interface TunnelboreDirs {
  runDir: string;
  stateDir: string;
  cleanup(): void;
}

/** A process's pino JSON log lines, parsed; other lines (pretty logs, stray output) are skipped. */
export function parseLogLines(output: string): Array<Record<string, unknown>> {
  return output.split("\n").flatMap((line) => {
    try {
      return [JSON.parse(line) as Record<string, unknown>];
    } catch {
      return [];
    }
  });
}

/** Private run and state directories, so tests never touch /run/tunnelbore or /var/lib/tunnelbore. */
export function tunnelboreDirs(): TunnelboreDirs {
  const base = mkdtempSync(join(tmpdir(), "tbt-run-"));
  return {
    runDir: join(base, "run"),
    stateDir: join(base, "state"),
    cleanup: () => rmSync(base, { recursive: true, force: true }),
  };
}

/**
 * Starts `tunnelbore run --interface IF ...extra` in `ns` (with `env` added to the environment) and
 * waits until its control socket answers. `wrapper` runs node through another command that execs it
 * (e.g. `setpriv --no-new-privs`), so the process is still node; `nodeArgs` are node's own flags.
 */
export async function startTunnelbore(
  ns: string,
  interfaceName: string,
  dirs: TunnelboreDirs,
  extra: string[] = [],
  env: NodeJS.ProcessEnv = {},
  wrapper: string[] = [],
  nodeArgs: string[] = [],
): Promise<TunnelboreProcess> {
  const args = [
    ...nodeArgs,
    CLI,
    "run",
    "--interface",
    interfaceName,
    "--run-dir",
    dirs.runDir,
    "--state-dir",
    dirs.stateDir,
    "--poll-interval",
    "500",
    "--log-level",
    "debug",
    ...extra,
  ];
  // In the tests' cgroup: a cgroup Tunnelbore makes for a full tunnel goes with it (test/lab/cgroup.ts).
  const cgroup = (await testCgroup()) ?? undefined;
  const [command, ...commandArgs] = [...wrapper, process.execPath, ...args] as [string, ...string[]];
  const proc = spawnInNamespace(ns, command, commandArgs, env, { cgroup });
  const socket = controlSocketPath(dirs.runDir, interfaceName);
  const tb: TunnelboreProcess = {
    process: proc,
    runDir: dirs.runDir,
    stateDir: dirs.stateDir,
    status: () => requestStatus(socket),
    peerStatus: async (publicKey) => {
      const peer = (await requestStatus(socket)).peers.find((p) => p.publicKey === publicKey);
      if (!peer) throw new Error(`no peer ${publicKey} in tunnelbore's status`);
      return peer;
    },
    logs: () => parseLogLines(proc.output()),
    stop: (signal) => proc.stop(signal),
  };
  try {
    await waitFor(async () => proc.child.exitCode !== null || (await tb.status()).ready, {
      what: "tunnelbore control socket",
      timeoutMs: 15_000,
      intervalMs: 100,
    });
    if (proc.child.exitCode !== null) throw new Error(`tunnelbore exited: ${proc.output()}`);
  } catch (err) {
    await proc.stop("SIGKILL");
    throw err;
  }
  return tb;
}
