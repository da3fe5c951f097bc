// eventfd(2): the counters KVM uses for irqfd and resamplefd, with the
// 8-byte read and write they take.

import { check, Errno, SysError } from "./errors.ts";
import { OwnedFd, readFd, writeFd } from "./fd.ts";
import { libc } from "./libc.ts";

/** eventfd flag: non-blocking reads. */
export const EFD_NONBLOCK = 0o4000;
/** eventfd flag: close on exec. */
export const EFD_CLOEXEC = 0o2000000;

/** Creates an eventfd (close-on-exec, non-blocking unless told otherwise). */
export function eventfd(nonblocking = true): number {
  return check(
    libc.eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0)),
    "eventfd",
  );
}

const one = new BigUint64Array([1n]);
const oneBytes = new Uint8Array(one.buffer);
const counter = new BigUint64Array(1);
const counterBytes = new Uint8Array(counter.buffer);

/** Adds 1 to the eventfd counter `fd` (what "raise" means to KVM). */
export function eventfdSignal(fd: number): void {
  writeFd(fd, oneBytes, 8);
}

/**
 * Reads and clears the counter of a non-blocking eventfd: the count, or 0
 * when nothing was pending (EAGAIN).
 */
export function eventfdDrain(fd: number): bigint {
  try {
    readFd(fd, counterBytes, 8);
  } catch (e) {
    if (e instanceof SysError && e.errno === Errno.EAGAIN) return 0n;
    throw e;
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
