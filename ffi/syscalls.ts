// The x86_64 system call numbers iohub uses by number, and syscall(2) for
// them: for calls libc does not wrap, for seccomp filters, and to read
// /proc/PID/task/TID/syscall. The one place the numbers are written.

import { checkSize } from "./errors.ts";
import { libc } from "./libc.ts";

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

/**
 * syscall(2) of number `nr` with up to five integer arguments (the rest
 * 0): its result, or a SysError naming `call`.
 */
export function syscall(
  call: string,
  nr: number,
  a = 0n,
  b = 0n,
  c = 0n,
  d = 0n,
  e = 0n,
): number {
  return checkSize(libc.syscall(BigInt(nr), a, b, c, d, e), call);
}

/**
 * The address of `buf`'s bytes, as a system call argument. The caller
 * keeps `buf` referenced for as long as the kernel may use the address.
 */
export function addressOf(buf: AllowSharedBufferSource): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}
