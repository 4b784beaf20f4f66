/**
 * Whether `tunnelbore run` can split into a privileged parent and an unprivileged worker here, and as
 * whom. It cannot without root (a process with only CAP_NET_ADMIN cannot switch users), without the
 * user, or when that user cannot read the program's files; then it says why and runs as one process.
 */
import { readFile, stat } from "node:fs/promises";
import { dirname, join, parse, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { PrivilegeStatus } from "./privilege-status.js";

export interface WorkerUser {
  name: string;
  uid: number;
  gid: number;
}

export type PrivilegeChoice =
  | { separate: true; user: WorkerUser; status: PrivilegeStatus }
  | { separate: false; status: PrivilegeStatus };

export interface PrivilegeRequest {
  /** --no-privsep. */
  disabled: boolean;
  /** --user (default: tunnelbore if it exists, else nobody). */
  user?: string;
  /** Tests pass their own. */
  passwd?: string;
  uid?: number;
}

/** The compiled worker entry, next to this module. */
export function workerScriptPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), "worker-main.js");
}

/** Users of an /etc/passwd text, by name. */
export function parsePasswd(text: string): Map<string, WorkerUser> {
  const users = new Map<string, WorkerUser>();
  for (const line of text.split("\n")) {
    const [name, , uid, gid] = line.split(":");
    if (!name || uid === undefined || gid === undefined) continue;
    const user = { name, uid: Number(uid), gid: Number(gid) };
    if (Number.isInteger(user.uid) && Number.isInteger(user.gid)) users.set(name, user);
  }
  return users;
}

function oneProcess(reason: string | null): PrivilegeChoice {
  return { separate: false, status: { mode: "one process", user: null, uid: null, reason } };
}

export async function choosePrivileges(request: PrivilegeRequest): Promise<PrivilegeChoice> {
  if (request.disabled) return oneProcess(null);
  if ((request.uid ?? process.getuid?.()) !== 0)
    return oneProcess("not root (cannot switch to another user)");
  const users = parsePasswd(request.passwd ?? (await readFile("/etc/passwd", "utf8").catch(() => "")));
  const name = request.user ?? (users.has("tunnelbore") ? "tunnelbore" : "nobody");
  const user = users.get(name);
  if (!user) return oneProcess(`no user ${name}`);
  if (user.uid === 0) return oneProcess(`user ${name} is root`);
  const unreadable = await firstUnreadable(user, programPaths());
  if (unreadable) return oneProcess(`program files not readable by ${name} (${unreadable})`);
  return {
    separate: true,
    user,
    status: { mode: "separated", user: name, uid: user.uid, reason: null },
  };
}

/** What the worker must read: its entry (with every directory above it) and the dependencies. */
function programPaths(): string[] {
  const script = workerScriptPath();
  const paths = [script];
  // dist/src/privsep -> the package root holds node_modules.
  for (let dir = dirname(script); dir !== parse(dir).root; dir = dirname(dir)) {
    paths.push(join(dir, "node_modules"));
  }
  return paths;
}

/** The first path (that exists) the user cannot get to, or null. */
async function firstUnreadable(user: WorkerUser, paths: string[]): Promise<string | null> {
  for (const path of paths) {
    const info = await stat(path).catch(() => null);
    if (!info) continue;
    // Every directory on the way must be searchable, the thing itself readable (and searchable).
    for (let dir = dirname(resolve(path)); ; dir = dirname(dir)) {
      if (!(await allows(user, dir, 0o1))) return dir;
      if (dir === parse(dir).root) break;
    }
    if (!(await allows(user, path, info.isDirectory() ? 0o5 : 0o4))) return path;
  }
  return null;
}

/** Whether the mode bits grant `want` (octal rwx) to the user, as owner, group or other. */
async function allows(user: WorkerUser, path: string, want: number): Promise<boolean> {
  const info = await stat(path).catch(() => null);
  if (!info) return false;
  const bits = info.uid === user.uid ? info.mode >> 6 : info.gid === user.gid ? info.mode >> 3 : info.mode;
  return (bits & want) === want;
}
