// Makes each system call the worker's seccomp filter refuses (native/syscall_filter.c), with harmless
// arguments, and prints "NAME ERRNO" per call (0: it succeeded): run with and without the filter, the
// test (test/integration/syscall-filter.test.ts) compares. Nothing here changes the system: a clone's
// child exits at once, and every other call fails on its arguments when it is let through.
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static char stack[65536];
static int child(void* arg) { return 0; }

static void report(const char* name, long rc) { printf("%s %d\n", name, rc < 0 ? errno : 0); }

static void try_clone(const char* name, int flags) {
  int pid = clone(child, stack + sizeof stack, flags | SIGCHLD, NULL);
  if (pid > 0) waitpid(pid, NULL, 0);
  report(name, pid);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  try_clone("clone", 0);
  try_clone("clone-newuser", CLONE_NEWUSER);
  try_clone("clone-newnet", CLONE_NEWNET);
  report("clone3", syscall(SYS_clone3, NULL, 0));
  report("unshare", syscall(SYS_unshare, 0));
  report("setns", syscall(SYS_setns, -1, 0));
  report("mount", syscall(SYS_mount, NULL, NULL, NULL, 0, NULL));
  report("io_uring_setup", syscall(SYS_io_uring_setup, 0, NULL));
  report("userfaultfd", syscall(SYS_userfaultfd, -1));
  report("bpf", syscall(SYS_bpf, -1, NULL, 0));
  report("perf_event_open", syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0));
  report("keyctl", syscall(SYS_keyctl, -1, 0, 0, 0, 0));
  report("ptrace", syscall(SYS_ptrace, -1, 0, NULL, NULL));
  report("process_vm_readv", syscall(SYS_process_vm_readv, 0, NULL, 0, NULL, 0, 0));
  report("init_module", syscall(SYS_init_module, NULL, 0, NULL));
  report("getpid", syscall(SYS_getpid));
#ifdef __x86_64__
  report("x32-getpid", syscall(0x40000000 | SYS_getpid));
#endif
  return 0;
}
