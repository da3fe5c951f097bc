// Plain file-descriptor calls (close, read, write, fcntl, open) and OwnedFd,
// the one-owner handle that closes its fd exactly once.

import {
  check,
  checkSize,
  Errno,
  retryEintrOrAgain,
  SysError,
} from "./errors.ts";
import { libc } from "./libc.ts";

/** fcntl commands and flags iohub uses. */
export const F_GETFD = 1;
/** fcntl: set the fd flags. */
export const F_SETFD = 2;
/** fcntl: get the file status flags. */
export const F_GETFL = 3;
/** fcntl: set the file status flags. */
export const F_SETFL = 4;
/** fcntl: duplicate to the lowest free fd, close-on-exec. */
export const F_DUPFD_CLOEXEC = 1030;
/** fd flag: close on exec. */
export const FD_CLOEXEC = 1;
/** Status flag: non-blocking I/O. */
export const O_NONBLOCK = 0o4000;
/** open(): write only. */
export const O_WRONLY = 1;
/** open(): read and write. */
export const O_RDWR = 2;
/** open(): create the file if missing. */
export const O_CREAT = 0o100;
/** open(): truncate a regular file to 0 bytes. */
export const O_TRUNC = 0o1000;
/** open(): close on exec. */
export const O_CLOEXEC = 0o2000000;

/** Closes `fd`; EINTR still means closed on Linux, so it is not retried. */
export function closeFd(fd: number): void {
  check(libc.close(fd), "close");
}

/** read(2) into `buf`; returns bytes read, 0 at end of file. */
export function readFd(fd: number, buf: Uint8Array, len = buf.length): number {
  return checkSize(libc.read(fd, buf, BigInt(len)), "read");
}

/** write(2) from `buf`; returns bytes written. */
export function writeFd(
  fd: number,
  buf: Uint8Array,
  len = buf.length,
): number {
  return checkSize(libc.write(fd, buf, BigInt(len)), "write");
}

/**
 * write(2) from `buf` on a non-blocking fd; returns bytes written, or
 * WOULD_BLOCK when the file takes none now.
 */
export function writeSome(fd: number, buf: Uint8Array): number {
  return retryEintrOrAgain(
    () => libc.write(fd, buf, BigInt(buf.length)),
    "write",
  );
}

/** pipe2(2), close-on-exec: returns [read end, write end]. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check(libc.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC), "pipe2");
  return [fds[0], fds[1]];
}

/** pread(2) at file offset `off`; returns bytes read, 0 past the end. */
export function preadFd(fd: number, buf: Uint8Array, off: number): number {
  return checkSize(
    libc.pread(fd, buf, BigInt(buf.length), BigInt(off)),
    "pread",
  );
}

/** pwrite(2) at file offset `off`; returns bytes written. */
export function pwriteFd(fd: number, buf: Uint8Array, off: number): number {
  return checkSize(
    libc.pwrite(fd, buf, BigInt(buf.length), BigInt(off)),
    "pwrite",
  );
}

/** A close-on-exec duplicate of `fd` (fcntl F_DUPFD_CLOEXEC). */
export function dupCloexec(fd: number): number {
  return check(libc.fcntl(fd, F_DUPFD_CLOEXEC, 0), "fcntl(F_DUPFD_CLOEXEC)");
}

/** ftruncate(2): sets the size of the file behind `fd`. */
export function truncateFd(fd: number, size: number): void {
  check(libc.ftruncate(fd, BigInt(size)), "ftruncate");
}

/** The size of the file behind `fd`. */
export function fileSize(fd: number): number {
  // fstat, not lseek: the offset belongs to a file description the peer
  // that sent the fd shares with us.
  check(libc.fstat(fd, statBuf), "fstat");
  return Number(statView.getBigInt64(ST_SIZE, true));
}

// struct stat on x86_64: 144 bytes, st_size (off_t) at 48.
const STAT_SIZE = 144;
const ST_SIZE = 48;
const statBuf = new Uint8Array(STAT_SIZE);
const statView = new DataView(statBuf.buffer);

/** Whether `fd` is an open descriptor (fcntl F_GETFL succeeds). */
export function isValidFd(fd: number): boolean {
  return libc.fcntl(fd, F_GETFL, 0) !== -1;
}

/** Sets or clears close-on-exec on `fd`. */
export function setCloexec(fd: number, on: boolean): void {
  const flags = check(libc.fcntl(fd, F_GETFD, 0), "fcntl(F_GETFD)");
  const next = on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC;
  check(libc.fcntl(fd, F_SETFD, next), "fcntl(F_SETFD)");
}

/** Sets or clears O_NONBLOCK on `fd`. */
export function setNonblocking(fd: number, on: boolean): void {
  const flags = check(libc.fcntl(fd, F_GETFL, 0), "fcntl(F_GETFL)");
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  check(libc.fcntl(fd, F_SETFL, next), "fcntl(F_SETFL)");
}

/** A NUL-terminated copy of `s` for passing a C string. */
export function cString(s: string): Uint8Array<ArrayBuffer> {
  const bytes = new TextEncoder().encode(s);
  const out = new Uint8Array(bytes.length + 1);
  out.set(bytes);
  return out;
}

/**
 * open(2) a path, close-on-exec, with `mode` for a file O_CREAT makes; the
 * error names the path.
 */
export function openPath(path: string, flags: number, mode = 0): number {
  return check(
    libc.open(cString(path), flags | O_CLOEXEC, mode),
    `open ${path}`,
  );
}

/** The single owner of an fd: close() is idempotent, `using` closes it. */
export class OwnedFd implements Disposable {
  #fd: number;

  /** Takes ownership of `fd`. */
  constructor(fd: number) {
    this.#fd = fd;
  }

  /** The fd number; throws once closed, to catch use after close. */
  get fd(): number {
    if (this.#fd < 0) throw new SysError("use of closed fd", Errno.EBADF);
    return this.#fd;
  }

  /** Whether close() has run. */
  get closed(): boolean {
    return this.#fd < 0;
  }

  /** Gives up ownership without closing and returns the fd number. */
  release(): number {
    const fd = this.fd;
    this.#fd = -1;
    return fd;
  }

  /** Closes the fd once; later calls do nothing. */
  close(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    closeFd(fd);
  }

  /** Closes the fd (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
