// ioctl(2) and the _IOC encoding: request numbers are computed from
// (direction, type, number, size), never written as magic hex.

import { check, retryEintr } from "./errors.ts";
import { libc } from "./libc.ts";

/** No data transfer. */
export const IOC_NONE = 0;
/** Userspace writes, kernel reads. */
export const IOC_WRITE = 1;
/** Kernel writes, userspace reads. */
export const IOC_READ = 2;

/** The _IOC(dir, type, nr, size) request number. */
export function ioc(
  dir: number,
  type: number,
  nr: number,
  size: number,
): bigint {
  return (BigInt(dir) << 30n) | (BigInt(size) << 16n) | (BigInt(type) << 8n) |
    BigInt(nr);
}

/** _IO(type, nr). */
export function io(type: number, nr: number): bigint {
  return ioc(IOC_NONE, type, nr, 0);
}

/** _IOW(type, nr, size). */
export function iow(type: number, nr: number, size: number): bigint {
  return ioc(IOC_WRITE, type, nr, size);
}

/** _IOR(type, nr, size). */
export function ior(type: number, nr: number, size: number): bigint {
  return ioc(IOC_READ, type, nr, size);
}

/** ioctl with an integer argument; `name` is used in the error. */
export function ioctlValue(
  fd: number,
  req: bigint,
  arg: bigint | number,
  name: string,
): number {
  return check(libc.ioctl_val(fd, req, BigInt(arg)), name);
}

/** ioctl with a pointer to `buf`; `name` is used in the error. */
export function ioctlBuffer(
  fd: number,
  req: bigint,
  buf: Uint8Array,
  name: string,
): number {
  // SAFETY: `buf` is referenced by this frame for the whole synchronous call.
  return check(libc.ioctl_buf(fd, req, buf), name);
}

/**
 * ioctl with an integer argument on a worker thread, for requests that block
 * (KVM_RUN). Returns the raw result: errno stays on the worker thread, so a
 * caller tells failures apart by what the request itself reports.
 */
export function ioctlAsync(
  fd: number,
  req: bigint,
  arg: bigint | number,
): Promise<number> {
  return libc.ioctl_async(fd, req, BigInt(arg));
}

/**
 * ioctl with an integer argument, issued again while a signal interrupts it
 * (KVM_RUN returns EINTR when one arrives for the thread).
 */
export function ioctlValueRestarting(
  fd: number,
  req: bigint,
  arg: bigint | number,
  name: string,
): number {
  return retryEintr(() => libc.ioctl_val(fd, req, BigInt(arg)), name);
}
