// seccomp(2) filters: a classic-BPF program that makes a list of system
// calls fail with EPERM in every thread of the process (TSYNC). The audit
// arch and the struct layouts live here only (the numbers in syscalls.ts).

import { SysError } from "./errors.ts";
import { addressOf, Syscall, syscall } from "./syscalls.ts";

const SECCOMP_SET_MODE_FILTER = 1n;
const SECCOMP_FILTER_FLAG_TSYNC = 1n;
const AUDIT_ARCH_X86_64 = 0xc000003e;
// System call numbers at or above this bit are the x32 ABI's.
const X32_SYSCALL_BIT = 0x40000000;
const EPERM = 1;

// struct sock_filter: u16 code, u8 jt, u8 jf, u32 k (8 bytes).
const LD_W_ABS = 0x20;
const JEQ_K = 0x15;
const JGE_K = 0x35;
const RET_K = 0x06;
const RET_ALLOW = 0x7fff0000;
const RET_ERRNO = 0x00050000;
const RET_KILL_PROCESS = 0x80000000;
// struct seccomp_data: int nr@0, u32 arch@4.
const DATA_NR = 0;
const DATA_ARCH = 4;

/** The BPF program failing `denied` with `errno`, 8 bytes per instruction. */
export function denyProgram(
  denied: readonly number[],
  errno = EPERM,
): Uint8Array {
  const prog: [number, number, number, number][] = [
    [LD_W_ABS, 0, 0, DATA_ARCH],
    // Another architecture's numbers mean other calls: refuse them all.
    [JEQ_K, 1, 0, AUDIT_ARCH_X86_64],
    [RET_K, 0, 0, RET_KILL_PROCESS],
    [LD_W_ABS, 0, 0, DATA_NR],
    [JGE_K, denied.length + 1, 0, X32_SYSCALL_BIT],
    ...denied.map((nr, i): [number, number, number, number] => [
      JEQ_K,
      denied.length - i,
      0,
      nr,
    ]),
    [RET_K, 0, 0, RET_ALLOW],
    [RET_K, 0, 0, RET_ERRNO | errno],
  ];
  const buf = new Uint8Array(prog.length * 8);
  const v = new DataView(buf.buffer);
  prog.forEach(([code, jt, jf, k], i) => {
    v.setUint16(i * 8, code, true);
    v.setUint8(i * 8 + 2, jt);
    v.setUint8(i * 8 + 3, jf);
    v.setUint32(i * 8 + 4, k, true);
  });
  return buf;
}

/**
 * Installs a filter making `denied` fail with `errno` (EPERM) in every
 * thread of the process, now and in every child (needs no_new_privs or
 * CAP_SYS_ADMIN).
 */
export function denySyscalls(denied: readonly number[], errno = EPERM): void {
  const filter = denyProgram(denied, errno);
  // struct sock_fprog: u16 len@0, 6 pad, struct sock_filter *filter@8.
  const fprog = new Uint8Array(16);
  const v = new DataView(fprog.buffer);
  v.setUint16(0, filter.length / 8, true);
  // SAFETY: `filter` and `fprog` stay referenced until the syscall returns;
  // the kernel copies the program during it.
  v.setBigUint64(8, addressOf(filter), true);
  const r = syscall(
    "seccomp(SET_MODE_FILTER)",
    Syscall.seccomp,
    SECCOMP_SET_MODE_FILTER,
    SECCOMP_FILTER_FLAG_TSYNC,
    addressOf(fprog),
  );
  if (r !== 0) {
    // TSYNC names a thread that could not take the filter; none took it.
    throw new SysError("seccomp(SET_MODE_FILTER)", 3, `thread ${r} refused`);
  }
}
