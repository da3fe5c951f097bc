// eventfd(2): the counters KVM uses for irqfd and resamplefd, with the
// 8-byte read and write they take.

import { check, checkSize, Errno, errno, SysError } from "./errors.ts";
import { OwnedFd } from "./fd.ts";
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

const EIGHT = 8n;

/** Adds 1 to the eventfd counter `fd` (what "raise" means to KVM). */
export function eventfdSignal(fd: number): void {
  checkSize(libc.write(fd, oneBytes, EIGHT), "write");
}

/**
 * Reads and clears the counter of a non-blocking eventfd: the count, or 0
 * when nothing was pending (EAGAIN).
 */
export function eventfdDrain(fd: number): bigint {
  if (Number(libc.read(fd, counterBytes, EIGHT)) === -1) {
    const e = errno();
    if (e === Errno.EAGAIN) return 0n;
    throw new SysError("read", e);
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
