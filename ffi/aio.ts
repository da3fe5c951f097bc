// Linux AIO (io_setup/io_submit), used for one thing: adding 1 to an
// eventfd the way the kernel does it, which cannot block. A peer's irqfd
// shares its file description, and with it O_NONBLOCK, with the peer: a
// peer that clears the flag and fills the counter would make a write(2)
// sleep for ever. An AIO request flagged IOCB_FLAG_RESFD signals its
// eventfd from the kernel when it completes (eventfd_signal, which
// saturates instead of waiting); a read of 0 bytes completes at once.

import { SysError } from "./errors.ts";
import { closeFd } from "./fd.ts";
import { memfd } from "./mman.ts";
import { addressOf, Syscall, syscall } from "./syscalls.ts";

// struct iocb (64 bytes): u64 data@0, u32 key@8, u32 rw_flags@12,
// u16 opcode@16, s16 reqprio@18, u32 fildes@20, u64 buf@24, u64 nbytes@32,
// s64 offset@40, u64 reserved2@48, u32 flags@56, u32 resfd@60.
const IOCB_SIZE = 64;
const IOCB_OPCODE = 16;
const IOCB_FILDES = 20;
const IOCB_BUF = 24;
const IOCB_FLAGS = 56;
const IOCB_RESFD = 60;
const IOCB_CMD_PREAD = 0;
const IOCB_FLAG_RESFD = 1;
// struct io_event: u64 data, u64 obj, s64 res, s64 res2.
const IO_EVENT_SIZE = 32;

// Completions wait in the context's ring until reaped; they are reaped in
// batches, well before the ring is full.
const RING_EVENTS = 32;
const REAP_AT = 16;

/**
 * Signals eventfds without ever blocking, whatever their O_NONBLOCK flag
 * (see above). Owns an AIO context and the memfd its requests read from.
 */
export class EventfdSignaller implements Disposable {
  readonly #ctxBuf = new BigUint64Array(1);
  readonly #iocb = new Uint8Array(IOCB_SIZE);
  readonly #iocbView = new DataView(this.#iocb.buffer);
  readonly #iocbPtr = new BigUint64Array(1);
  readonly #events = new Uint8Array(IO_EVENT_SIZE * RING_EVENTS);
  readonly #noWait = new BigInt64Array(2);
  readonly #byte = new Uint8Array(1);
  readonly #src: number;
  // SAFETY (here and below): every buffer whose address the kernel gets
  // is a field of this object, so it outlives each call; the iocb's data
  // buffer is never even touched (its reads are of 0 bytes).
  readonly #iocbPtrAddr = addressOf(this.#iocbPtr);
  readonly #eventsAddr = addressOf(this.#events);
  readonly #noWaitAddr = addressOf(this.#noWait);
  #ctx = 0n;
  #pending = 0;

  /** Sets up the AIO context (throws SysError where the kernel has no AIO). */
  constructor() {
    this.#src = memfd("iohub-signal", 0);
    try {
      syscall(
        "io_setup",
        Syscall.io_setup,
        BigInt(RING_EVENTS),
        addressOf(this.#ctxBuf),
      );
    } catch (e) {
      closeFd(this.#src);
      if (!(e instanceof SysError)) throw e;
      throw new SysError(
        "io_setup",
        e.errno,
        "interrupts are signalled through Linux AIO: the kernel needs CONFIG_AIO and room under fs.aio-max-nr",
      );
    }
    this.#ctx = this.#ctxBuf[0];
    const v = this.#iocbView;
    v.setUint16(IOCB_OPCODE, IOCB_CMD_PREAD, true);
    v.setUint32(IOCB_FILDES, this.#src, true);
    v.setBigUint64(IOCB_BUF, addressOf(this.#byte), true);
    v.setUint32(IOCB_FLAGS, IOCB_FLAG_RESFD, true);
    this.#iocbPtr[0] = addressOf(this.#iocb);
  }

  /** Adds 1 to the counter of eventfd `fd` (saturating: never blocks). */
  signal(fd: number): void {
    if (this.#ctx === 0n) throw new Error("EventfdSignaller is closed");
    this.#iocbView.setUint32(IOCB_RESFD, fd, true);
    syscall("io_submit", Syscall.io_submit, this.#ctx, 1n, this.#iocbPtrAddr);
    if (++this.#pending >= REAP_AT) this.#reap();
  }

  // Each read of 0 bytes completes inside io_submit, so all are collected
  // at once; any that did not would be taken at the next submit.
  #reap(): void {
    this.#pending -= syscall(
      "io_getevents",
      Syscall.io_getevents,
      this.#ctx,
      0n,
      BigInt(RING_EVENTS),
      this.#eventsAddr,
      this.#noWaitAddr,
    );
  }

  /** Destroys the AIO context and closes the memfd; idempotent. */
  close(): void {
    if (this.#ctx === 0n) return;
    const ctx = this.#ctx;
    this.#ctx = 0n;
    try {
      syscall("io_destroy", Syscall.io_destroy, ctx);
    } finally {
      closeFd(this.#src);
    }
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
