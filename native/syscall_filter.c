// A seccomp filter for the processes that parse network input, `tunnelbore run`'s unprivileged worker
// and the introduction server (src/syscall-filter.ts): they get EPERM for system calls they never make
// and that widen the kernel's attack surface to an unprivileged user (user namespaces, io_uring,
// userfaultfd, bpf, perf_event_open, keyrings, ptrace and other processes' memory) or administer the
// system. Written by hand because libseccomp would be one more build dependency for a fixed list of
// some fifty numbers. Every thread of the process gets it (TSYNC: Node's threads exist already), and
// every process it starts (`ip monitor`, `ip route get`) inherits it.
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <node_api.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__x86_64__)
#define FILTER_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define FILTER_ARCH AUDIT_ARCH_AARCH64
#endif

#ifndef SECCOMP_FILTER_FLAG_TSYNC
#define SECCOMP_FILTER_FLAG_TSYNC 1
#endif

/* Namespaces a clone may not create (clone's flags are its first argument on both architectures). */
#define NAMESPACE_FLAGS                                                                        \
  (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | \
   CLONE_NEWCGROUP)

static napi_value make_int(napi_env env, int v) {
  napi_value out;
  napi_create_int32(env, v, &out);
  return out;
}

#ifdef FILTER_ARCH

/* -1 ends the list; a number this architecture lacks is left out by the #ifdefs. */
static const int denied[] = {
/* namespaces and mounts */
#ifdef __NR_unshare
    __NR_unshare,
#endif
#ifdef __NR_setns
    __NR_setns,
#endif
#ifdef __NR_mount
    __NR_mount,
#endif
#ifdef __NR_umount2
    __NR_umount2,
#endif
#ifdef __NR_pivot_root
    __NR_pivot_root,
#endif
#ifdef __NR_chroot
    __NR_chroot,
#endif
#ifdef __NR_open_tree
    __NR_open_tree,
#endif
#ifdef __NR_move_mount
    __NR_move_mount,
#endif
#ifdef __NR_fsopen
    __NR_fsopen,
#endif
#ifdef __NR_fsconfig
    __NR_fsconfig,
#endif
#ifdef __NR_fsmount
    __NR_fsmount,
#endif
#ifdef __NR_fspick
    __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
/* kernel interfaces with a history of exploits reachable unprivileged */
#ifdef __NR_bpf
    __NR_bpf,
#endif
#ifdef __NR_perf_event_open
    __NR_perf_event_open,
#endif
#ifdef __NR_userfaultfd
    __NR_userfaultfd,
#endif
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup,
#endif
#ifdef __NR_io_uring_enter
    __NR_io_uring_enter,
#endif
#ifdef __NR_io_uring_register
    __NR_io_uring_register,
#endif
#ifdef __NR_keyctl
    __NR_keyctl,
#endif
#ifdef __NR_add_key
    __NR_add_key,
#endif
#ifdef __NR_request_key
    __NR_request_key,
#endif
/* other processes */
#ifdef __NR_ptrace
    __NR_ptrace,
#endif
#ifdef __NR_process_vm_readv
    __NR_process_vm_readv,
#endif
#ifdef __NR_process_vm_writev
    __NR_process_vm_writev,
#endif
#ifdef __NR_kcmp
    __NR_kcmp,
#endif
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
/* administering the system */
#ifdef __NR_reboot
    __NR_reboot,
#endif
#ifdef __NR_kexec_load
    __NR_kexec_load,
#endif
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
#ifdef __NR_init_module
    __NR_init_module,
#endif
#ifdef __NR_finit_module
    __NR_finit_module,
#endif
#ifdef __NR_delete_module
    __NR_delete_module,
#endif
#ifdef __NR_swapon
    __NR_swapon,
#endif
#ifdef __NR_swapoff
    __NR_swapoff,
#endif
#ifdef __NR_acct
    __NR_acct,
#endif
#ifdef __NR_settimeofday
    __NR_settimeofday,
#endif
#ifdef __NR_clock_settime
    __NR_clock_settime,
#endif
#ifdef __NR_clock_adjtime
    __NR_clock_adjtime,
#endif
#ifdef __NR_adjtimex
    __NR_adjtimex,
#endif
#ifdef __NR_sethostname
    __NR_sethostname,
#endif
#ifdef __NR_setdomainname
    __NR_setdomainname,
#endif
#ifdef __NR_quotactl
    __NR_quotactl,
#endif
#ifdef __NR_iopl
    __NR_iopl,
#endif
#ifdef __NR_ioperm
    __NR_ioperm,
#endif
#ifdef __NR_syslog
    __NR_syslog,
#endif
#ifdef __NR_open_by_handle_at
    __NR_open_by_handle_at,
#endif
#ifdef __NR_name_to_handle_at
    __NR_name_to_handle_at,
#endif
#ifdef __NR_vhangup
    __NR_vhangup,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR_lookup_dcookie
    __NR_lookup_dcookie,
#endif
    -1,
};

#define DENIED_MAX 64
/*
 * The program, `count` numbers denied (x86_64; aarch64 has no x32 line, so every target is one nearer
 * and the same jumps hold):
 *   0 arch; 1 right arch?; 2 kill; 3 nr; 4 x32? -> EPERM; 5 clone3? -> ENOSYS; 6 clone? -> its flags;
 *   7 .. count+6 denied? -> EPERM; count+7 allow; count+8 flags; count+9 a namespace? -> EPERM;
 *   count+10 allow; count+11 EPERM; count+12 ENOSYS.
 */
#define PROGRAM_MAX (16 + DENIED_MAX)

static int build(struct sock_filter* p) {
  int n = 0, count = 0;
  while (denied[count] != -1) count++;
  if (count > DENIED_MAX) return -1;
  p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  /* Another architecture's numbers mean other calls: refuse them all (the worker never makes one). */
  p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, FILTER_ARCH, 1, 0);
  p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
  /* x32 calls (bit 30) name the same functions by other numbers. */
  p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, count + 6, 0);
#endif
  /* clone3 passes its flags in memory the filter cannot read: ENOSYS makes glibc use clone. */
  p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, count + 6, 0);
  p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, count + 1, 0);
  for (int i = 0; i < count; i++)
    p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned)denied[i], count - i + 3, 0);
  p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  /* clone: refused when it asks for a namespace. */
  p[n++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]));
  p[n++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, NAMESPACE_FLAGS, 1, 0);
  p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA));
  p[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA));
  return n;
}

#endif

/* install(): 0, or the errno that stopped it (ENOTSUP on an architecture it does not know). */
static napi_value js_install(napi_env env, napi_callback_info info) {
#ifndef FILTER_ARCH
  return make_int(env, ENOTSUP);
#else
  struct sock_filter program[PROGRAM_MAX];
  int length = build(program);
  if (length < 0) return make_int(env, E2BIG);
  struct sock_fprog fprog = {.len = (unsigned short)length, .filter = program};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return make_int(env, errno);
  long rc = syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &fprog);
  /* With TSYNC, a positive result is a thread that could not take the filter: none did. */
  if (rc > 0) return make_int(env, ESRCH);
  return make_int(env, rc == 0 ? 0 : errno);
#endif
}

/*
 * notDumpable(): 0, or errno. Processes of the same user (`nobody` may be shared with other daemons)
 * can then neither ptrace this one nor read its /proc/PID/mem or environ, and it leaves no core dump.
 */
static napi_value js_not_dumpable(napi_env env, napi_callback_info info) {
  return make_int(env, prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0 ? 0 : errno);
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "install", NAPI_AUTO_LENGTH, js_install, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "install", fn) != napi_ok) return NULL;
  if (napi_create_function(env, "notDumpable", NAPI_AUTO_LENGTH, js_not_dumpable, NULL, &fn) != napi_ok)
    return NULL;
  if (napi_set_named_property(env, exports, "notDumpable", fn) != napi_ok) return NULL;
  return exports;
}
