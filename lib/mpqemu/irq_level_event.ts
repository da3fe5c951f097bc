// The irqfd/resamplefd pair of one level-triggered interrupt, owned as one
// object (crosvm's IrqLevelEvent): closing it closes both eventfds.

import {
  closeFd,
  eventfd,
  eventfdDrain,
  eventfdSignal,
  waitReadable,
} from "../../ffi/mod.ts";

/**
 * A level-triggered interrupt's two eventfds: writing `irqfd` makes KVM
 * raise the line; KVM writes `resamplefd` after the guest's EOI lowered it.
 */
export class IrqLevelEvent implements Disposable {
  #irqfd: number;
  #resamplefd: number;

  /** Takes ownership of an existing pair (e.g. received by SET_IRQFD). */
  constructor(irqfd: number, resamplefd: number) {
    this.#irqfd = irqfd;
    this.#resamplefd = resamplefd;
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

  /** The trigger eventfd (-1 once closed). */
  get irqfd(): number {
    return this.#irqfd;
  }

  /** The resample eventfd (-1 once closed). */
  get resamplefd(): number {
    return this.#resamplefd;
  }

  /** Asserts: adds 1 to the irqfd. */
  trigger(): void {
    eventfdSignal(this.#irqfd);
  }

  /** Clears the irqfd; returns how many assertions were pending. */
  drainIrq(): bigint {
    return eventfdDrain(this.#irqfd);
  }

  /** Signals end of interrupt on the resamplefd (what KVM does at EOI). */
  signalResample(): void {
    eventfdSignal(this.#resamplefd);
  }

  /** Clears the resamplefd; returns how many resamples were pending. */
  drainResample(): bigint {
    return eventfdDrain(this.#resamplefd);
  }

  /**
   * Takes an end-of-interrupt already signalled, without blocking (the fd
   * may be a blocking one the peer made): true if there was one.
   */
  takeResample(): boolean {
    return waitReadable(this.#resamplefd, 0) &&
      eventfdDrain(this.#resamplefd) > 0n;
  }

  /** Closes both eventfds once. */
  close(): void {
    if (this.#irqfd >= 0) closeFd(this.#irqfd);
    if (this.#resamplefd >= 0) closeFd(this.#resamplefd);
    this.#irqfd = -1;
    this.#resamplefd = -1;
  }

  /** Closes both eventfds (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
