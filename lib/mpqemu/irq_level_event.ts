// The irqfd/resamplefd pair of one level-triggered interrupt, owned as one
// object (crosvm's IrqLevelEvent): closing it closes both eventfds.

import { closeFd, EventFd, eventfd, waitReadable } from "../../ffi/mod.ts";

/**
 * A level-triggered interrupt's two eventfds: writing `irqfd` makes KVM
 * raise the line; KVM writes `resamplefd` after the guest's EOI lowered it.
 */
export class IrqLevelEvent implements Disposable {
  /** The trigger eventfd: a signal raises the line. */
  readonly irqEvent: EventFd;
  /** The resample eventfd: signalled at the guest's EOI. */
  readonly resampleEvent: EventFd;

  /** Takes ownership of an existing pair (e.g. received by SET_IRQFD). */
  constructor(irqfd: number, resamplefd: number) {
    this.irqEvent = new EventFd(irqfd);
    this.resampleEvent = new EventFd(resamplefd);
  }

  /** Creates a fresh pair of non-blocking eventfds. */
  static create(): IrqLevelEvent {
    const irqfd = eventfd();
    try {
      return new IrqLevelEvent(irqfd, eventfd());
    } catch (e) {
      closeFd(irqfd);
      throw e;
    }
  }

  /** The trigger eventfd's number (-1 once closed). */
  get irqfd(): number {
    return this.irqEvent.closed ? -1 : this.irqEvent.fd;
  }

  /** The resample eventfd's number (-1 once closed). */
  get resamplefd(): number {
    return this.resampleEvent.closed ? -1 : this.resampleEvent.fd;
  }

  /** Asserts: adds 1 to the irqfd. */
  trigger(): void {
    this.irqEvent.signal();
  }

  /** Clears the irqfd; returns how many assertions were pending. */
  drainIrq(): bigint {
    return this.irqEvent.drain();
  }

  /** Signals end of interrupt on the resamplefd (what KVM does at EOI). */
  signalResample(): void {
    this.resampleEvent.signal();
  }

  /** Clears the resamplefd; returns how many resamples were pending. */
  drainResample(): bigint {
    return this.resampleEvent.drain();
  }

  /**
   * Takes an end-of-interrupt already signalled, without blocking (the fd
   * may be a blocking one the peer made): true if there was one.
   */
  takeResample(): boolean {
    return waitReadable(this.resampleEvent.fd, 0) &&
      this.resampleEvent.drain() > 0n;
  }

  /** Closes both eventfds once. */
  close(): void {
    try {
      this.irqEvent.close();
    } finally {
      this.resampleEvent.close();
    }
  }

  /** Closes both eventfds (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
