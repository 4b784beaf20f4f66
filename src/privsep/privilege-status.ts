import type { SyscallFilterState } from "../syscall-filter.js";

/** How `tunnelbore run` splits its privileges, as status shows it. */
export interface PrivilegeStatus {
  /** "separated": network input is parsed by an unprivileged worker; "one process": as before. */
  mode: "separated" | "one process";
  /** The worker's user, when separated. */
  user: string | null;
  uid: number | null;
  /** Why one process (not root, no such user, ...), or null when separated or asked for. */
  reason: string | null;
  /** The worker's seccomp filter, once the worker runs (syscall-filter.ts). */
  syscallFilter?: SyscallFilterState;
}

/** The one line that says which mode and why (startup log, `status`). */
export function describePrivileges(status: PrivilegeStatus): string {
  if (status.mode === "separated") {
    const filter = status.syscallFilter;
    const filtered = !filter
      ? ""
      : filter.on
        ? " and a syscall filter"
        : `; no syscall filter: ${filter.reason}`;
    return `privilege separation: worker runs as ${status.user} (uid ${status.uid}) with no capabilities${filtered}`;
  }
  return status.reason
    ? `privilege separation unavailable: ${status.reason}; running as one process`
    : "privilege separation off: running as one process";
}
