// The x86_64 system call numbers iohub uses by number: for calls libc does
// not wrap (through libc's syscall()), for seccomp filters, and to read
// /proc/PID/task/TID/syscall. The one place they are written.

/** x86_64 system call numbers (arch/x86/entry/syscalls/syscall_64.tbl). */
export const Syscall = {
  poll: 7,
  socket: 41,
  execve: 59,
  ptrace: 101,
  prctl: 157,
  io_setup: 206,
  io_destroy: 207,
  io_getevents: 208,
  io_submit: 209,
  getdents64: 217,
  process_vm_readv: 310,
  process_vm_writev: 311,
  seccomp: 317,
  execveat: 322,
  io_uring_setup: 425,
  landlock_create_ruleset: 444,
  landlock_add_rule: 445,
  landlock_restrict_self: 446,
} as const;
