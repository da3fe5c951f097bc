// Telling a launcher that this remote is ready to serve: one byte on an
// inherited pipe, then the pipe closed. A remote that fails before that
// closes it unwritten (at exit at the latest), so the launcher sees EOF and
// knows not to start QEMU.

import {
  closeFd,
  isValidFd,
  setCloexec,
  SysError,
  writeFd,
} from "../../ffi/mod.ts";

/** The write end of a launcher's readiness pipe; owns the fd. */
export class ReadySignal implements Disposable {
  #fd: number | null;

  /**
   * Takes `fd` over; marks it close-on-exec so processes device code
   * starts do not hold the launcher's pipe open. Throws RangeError when
   * `fd` is not an open descriptor above stderr.
   */
  constructor(fd: number) {
    if (fd < 3 || !isValidFd(fd)) {
      throw new RangeError(`fd ${fd} is not an open descriptor above stderr`);
    }
    setCloexec(fd, true);
    this.#fd = fd;
  }

  /** Writes the ready byte and closes the pipe (once; later calls do nothing). */
  signal(): void {
    const fd = this.#fd;
    if (fd === null) return;
    this.#fd = null;
    try {
      writeFd(fd, new Uint8Array([1]));
    } catch (e) {
      // EPIPE: the launcher is gone, and with it anyone to tell.
      if (!(e instanceof SysError)) throw e;
    } finally {
      closeFd(fd);
    }
  }

  /** Closes the pipe unwritten if signal() never ran: the launcher sees EOF. */
  [Symbol.dispose](): void {
    if (this.#fd !== null) closeFd(this.#fd);
    this.#fd = null;
  }
}
