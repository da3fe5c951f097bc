// eventfd(2): the counters KVM uses for irqfd and resamplefd, with the
// 8-byte read and write they take.

import { check, checkSize, Errno, errno, SysError } from "./errors.ts";
import { closeFd, openPath, OwnedFd, readFd } from "./fd.ts";
import { libc } from "./libc.ts";
import { addressOf } from "./syscalls.ts";

/** eventfd flag: non-blocking reads. */
export const EFD_NONBLOCK = 0o4000;
/** eventfd flag: close on exec. */
export const EFD_CLOEXEC = 0o2000000;

/** eventfd flag: each read takes 1 from the counter, not all of it. */
export const EFD_SEMAPHORE = 1;

/**
 * Creates an eventfd (close-on-exec, non-blocking unless told otherwise,
 * a semaphore if asked).
 */
export function eventfd(nonblocking = true, semaphore = false): number {
  return check(
    libc.eventfd(
      0,
      EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0) |
        (semaphore ? EFD_SEMAPHORE : 0),
    ),
    "eventfd",
  );
}

const one = new BigUint64Array([1n]);
const oneBytes = new Uint8Array(one.buffer);
const counter = new BigUint64Array(1);
// struct iovec { void *base; size_t len; } over `counter`.
// SAFETY: `counter` is module-scoped, so it outlives every read into it.
const counterIov = new BigUint64Array([addressOf(counter), 8n]);
const counterIovBytes = new Uint8Array(counterIov.buffer);
// preadv2 flag: fail with EAGAIN instead of waiting, for this call only.
const RWF_NOWAIT = 0x8;

const EIGHT = 8n;

/** Adds 1 to the eventfd counter `fd` (what "raise" means to KVM). */
export function eventfdSignal(fd: number): void {
  checkSize(libc.write(fd, oneBytes, EIGHT), "write");
}

/** What the kernel says of an eventfd in /proc/self/fdinfo. */
export interface EventfdInfo {
  /** The eventfd's identity: equal for two fds of the same eventfd. */
  id: number;
  /** Made with EFD_SEMAPHORE (a read takes 1, not the whole count). */
  semaphore: boolean;
}

const fdinfoBuf = new Uint8Array(1024);

/**
 * The eventfd behind `fd`, or null when `fd` is not an eventfd (a pipe, a
 * memfd, a socket...): read from /proc/self/fdinfo, the one place that
 * tells two eventfds apart (they all share one anonymous inode).
 */
export function eventfdInfo(fd: number): EventfdInfo | null {
  const info = openPath(`/proc/self/fdinfo/${fd}`, 0 /* O_RDONLY */);
  let n: number;
  try {
    n = readFd(info, fdinfoBuf);
  } finally {
    closeFd(info);
  }
  const text = new TextDecoder().decode(fdinfoBuf.subarray(0, n));
  const id = /^eventfd-id:\s*(\d+)$/m.exec(text);
  if (!/^eventfd-count:/m.test(text) || id === null) return null;
  return {
    id: Number(id[1]),
    semaphore: /^eventfd-semaphore:\s*1$/m.test(text),
  };
}

/**
 * Reads and clears the counter of an eventfd: the count, or 0 when nothing
 * was pending. Never waits, also on an eventfd whose O_NONBLOCK a peer
 * sharing it cleared (RWF_NOWAIT applies to this call alone).
 */
export function eventfdDrain(fd: number): bigint {
  const n = libc.preadv2(fd, counterIovBytes, 1, -1n, RWF_NOWAIT);
  if (Number(n) === -1) {
    const e = errno();
    if (e === Errno.EAGAIN) return 0n;
    throw new SysError("preadv2", e);
  }
  return counter[0];
}

/** An owned eventfd. */
export class EventFd extends OwnedFd {
  /** Creates a fresh non-blocking eventfd. */
  constructor(fd = eventfd()) {
    super(fd);
  }

  /** Adds 1 to the counter. */
  signal(): void {
    eventfdSignal(this.fd);
  }

  /** Reads and clears the counter; 0 when nothing is pending. */
  drain(): bigint {
    return eventfdDrain(this.fd);
  }
}
