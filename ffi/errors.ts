// System call errors: one SysError type carrying the errno, its name, libc's
// text for it and the call that failed, and the check() helper every ffi
// wrapper goes through.

import { libc } from "./libc.ts";

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  7: "E2BIG",
  8: "ENOEXEC",
  9: "EBADF",
  10: "ECHILD",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  20: "ENOTDIR",
  21: "EISDIR",
  22: "EINVAL",
  23: "ENFILE",
  24: "EMFILE",
  25: "ENOTTY",
  27: "EFBIG",
  28: "ENOSPC",
  29: "ESPIPE",
  32: "EPIPE",
  34: "ERANGE",
  38: "ENOSYS",
  88: "ENOTSOCK",
  90: "EMSGSIZE",
  95: "EOPNOTSUPP",
  98: "EADDRINUSE",
  104: "ECONNRESET",
  107: "ENOTCONN",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
};

/** errno values that callers test for by number. */
export const Errno = {
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  ENXIO: 6,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  EACCES: 13,
  ENOTDIR: 20,
  EROFS: 30,
  ENAMETOOLONG: 36,
  EPIPE: 32,
  EADDRINUSE: 98,
  ECONNRESET: 104,
  ECONNREFUSED: 111,
} as const;

/** The symbolic name of an errno value, e.g. "EAGAIN". */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `E#${errno}`;
}

/** libc's text for an errno value, e.g. "No such file or directory". */
export function errnoText(errno: number): string {
  // SAFETY: strerror returns a pointer to a NUL-terminated string that stays
  // valid until the next strerror call on this thread; it is copied at once.
  const p = libc.strerror(errno);
  return p === null ? `errno ${errno}` : Deno.UnsafePointerView.getCString(p);
}

/**
 * A failed system call: which call, and the errno it set. The message reads
 * `bind /x: ENOENT (No such file or directory)`, with `detail` after the
 * errno's text when the caller knows more.
 */
export class SysError extends Error {
  /** The errno value. */
  readonly errno: number;
  /** The errno's symbolic name, e.g. "EAGAIN". */
  readonly code: string;
  /** The libc call that failed, e.g. "sendmsg". */
  readonly call: string;

  /** Builds the error for `call` failing with `errno`. */
  constructor(call: string, errno: number, detail?: string) {
    const code = errnoName(errno);
    const text = errnoText(errno);
    super(`${call}: ${code} (${detail ? `${text}; ${detail}` : text})`);
    this.name = "SysError";
    this.errno = errno;
    this.code = code;
    this.call = call;
  }
}

// This isolate's errno, looked up once: an isolate's JS always runs on the
// same thread, and polling reads errno after every empty read.
let errnoView: Deno.UnsafePointerView | null = null;

/** Reads the calling thread's errno; call right after the failing call. */
export function errno(): number {
  // SAFETY: __errno_location returns the address of this thread's errno,
  // valid for the thread's lifetime.
  errnoView ??= new Deno.UnsafePointerView(libc.__errno_location()!);
  return errnoView.getInt32();
}

/** Returns `ret`, or throws SysError for `call` when it is -1. */
export function check(ret: number, call: string): number {
  if (ret === -1) throw new SysError(call, errno());
  return ret;
}

/** Like check() for calls returning a bigint (ssize_t). */
export function checkSize(ret: number | bigint, call: string): number {
  const n = Number(ret);
  if (n === -1) throw new SysError(call, errno());
  return n;
}

/**
 * Like retryEintr, but a call that would block (EAGAIN) returns WOULD_BLOCK
 * instead of throwing: on a non-blocking fd that is the normal answer of a
 * poll, and building an Error for it costs more than the system call.
 */
export function retryEintrOrAgain(
  fn: () => number | bigint,
  call: string,
): number {
  for (;;) {
    const n = Number(fn());
    if (n !== -1) return n;
    const e = errno();
    if (e === Errno.EAGAIN) return WOULD_BLOCK;
    if (e !== Errno.EINTR) throw new SysError(call, e);
  }
}

/** What a non-blocking call returns instead of throwing EAGAIN. */
export const WOULD_BLOCK = -1;

/**
 * Calls `fn` (a system call returning -1 on failure) again while a signal
 * interrupts it; returns its result, or throws SysError for `call`.
 */
export function retryEintr(fn: () => number | bigint, call: string): number {
  for (;;) {
    const n = Number(fn());
    if (n !== -1) return n;
    const e = errno();
    if (e !== Errno.EINTR) throw new SysError(call, e);
  }
}
