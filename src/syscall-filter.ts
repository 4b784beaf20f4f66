// The seccomp filter of the processes that parse network input, `run`'s worker and the introduction
// server (native/syscall_filter.c): they may not create namespaces, use io_uring, userfaultfd, bpf,
// perf_event_open or keyrings, trace or read other processes, or administer the system; each such call
// fails with EPERM. Those are the kernel interfaces an unprivileged process can still reach that a
// kernel exploit would start from; neither process needs one. Installed with no_new_privs on every
// thread; the processes they start inherit it.
import { errnoName, loadNativeAddon } from "./native-addon.js";

interface SyscallFilterAddon {
  /** 0, or the errno that stopped it (ENOTSUP: an architecture the filter does not know). */
  install(): number;
  /** prctl(PR_SET_DUMPABLE, 0): 0, or the errno. */
  notDumpable(): number;
}

/** Whether the filter is on, and why not when it is not (the log and `run`'s status say it). */
export interface SyscallFilterState {
  on: boolean;
  reason: string | null;
}

/** Installs the filter on this process; irrevocable. */
export function installSyscallFilter(): SyscallFilterState {
  const addon = loadNativeAddon<SyscallFilterAddon>("syscall_filter");
  if (typeof addon === "string") return { on: false, reason: addon };
  const errno = addon.install();
  if (errno === 0) return { on: true, reason: null };
  return { on: false, reason: refusal(errnoName(errno)) };
}

/** Why the filter could not be installed, from the errno the addon returned. */
function refusal(name: string | number): string {
  switch (name) {
    case "ENOTSUP":
      return "not built for this architecture";
    case "EPERM":
    case "EACCES":
      return `seccomp() refused (${name}): a filter around this process (systemd's SystemCallFilter=, a container's seccomp profile) does not allow it`;
    case "EINVAL":
      return "the kernel has no seccomp filters (EINVAL)";
    default:
      return `the kernel refused it (${name})`;
  }
}

/**
 * Makes this process not dumpable: other processes of its user (`nobody` may be shared with other
 * daemons) can no longer ptrace it or read its /proc/PID/mem, environ or fds, and a crash leaves no
 * core with its keys. Root still can. Null, or why not.
 */
export function hideFromSameUser(): string | null {
  const addon = loadNativeAddon<SyscallFilterAddon>("syscall_filter");
  if (typeof addon === "string") return addon;
  const errno = addon.notDumpable();
  return errno === 0 ? null : `prctl(PR_SET_DUMPABLE) failed (${errnoName(errno)})`;
}
