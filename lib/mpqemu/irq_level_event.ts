// The irqfd/resamplefd pair of one level-triggered interrupt, owned as one
// object (crosvm's IrqLevelEvent): closing it closes both eventfds. A pair
// from a peer is checked first: using it must never block or spin.

import {
  closeFd,
  closePeerFd,
  EventFd,
  eventfd,
  eventfdInfo,
  type EventfdSignaller,
} from "../../ffi/mod.ts";
import { ProtocolError } from "./message.ts";

/** Why a peer's irqfd/resamplefd pair was refused: the peer broke a rule. */
export class IrqfdError extends ProtocolError {
  /** Builds "SET_IRQFD: fds: detail". */
  constructor(detail: string) {
    super("SET_IRQFD", "fds", detail);
    this.name = "IrqfdError";
  }
}

/**
 * A level-triggered interrupt's two eventfds: writing `irqfd` makes KVM
 * raise the line; KVM writes `resamplefd` after the guest's EOI lowered it.
 */
export class IrqLevelEvent implements Disposable {
  /** The trigger eventfd: a signal raises the line. */
  readonly irqEvent: EventFd;
  /** The resample eventfd: signalled at the guest's EOI. */
  readonly resampleEvent: EventFd;

  /** The eventfd identities of the pair (fdinfo eventfd-id), -1 unknown. */
  readonly ids: readonly [number, number];
  // A peer's pair is closed as every fd a peer sent (ffi/peer_fd.ts).
  readonly #fromPeer: boolean;

  /** Takes ownership of an existing pair of our own eventfds. */
  constructor(
    irqfd: number,
    resamplefd: number,
    ids: [number, number] = [-1, -1],
    fromPeer = false,
  ) {
    this.irqEvent = new EventFd(irqfd);
    this.resampleEvent = new EventFd(resamplefd);
    this.ids = ids;
    this.#fromPeer = fromPeer;
  }

  /**
   * Takes ownership of a pair a peer sent with SET_IRQFD, or closes both and
   * throws IrqfdError: both must be eventfds (a pipe's hang-up or error
   * would make the loop spin), distinct (the irqfd as its own resamplefd
   * re-fires for ever while the level is high), and the resamplefd not a
   * semaphore (each read would take 1 of up to 2^64). Their O_NONBLOCK is
   * the peer's to change (it shares the file description), so nothing
   * here relies on it: see drainResample() and trigger().
   */
  static fromPeer(irqfd: number, resamplefd: number): IrqLevelEvent {
    try {
      const irq = eventfdInfo(irqfd);
      const rs = eventfdInfo(resamplefd);
      if (irq === null) throw new IrqfdError("the irqfd is not an eventfd");
      if (rs === null) {
        throw new IrqfdError("the resamplefd is not an eventfd");
      }
      if (irq.id === rs.id) {
        throw new IrqfdError("the resamplefd is the irqfd itself");
      }
      if (rs.semaphore) {
        throw new IrqfdError("the resamplefd is a semaphore eventfd");
      }
      return new IrqLevelEvent(irqfd, resamplefd, [irq.id, rs.id], true);
    } catch (e) {
      closePeerFd(irqfd);
      closePeerFd(resamplefd);
      throw e;
    }
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

  /**
   * Asserts: adds 1 to the irqfd through `signaller`, which never blocks
   * (a full counter stays full: the interrupt is pending already).
   */
  trigger(signaller: EventfdSignaller): void {
    signaller.signal(this.irqEvent.fd);
  }

  /** Clears the irqfd; returns how many assertions were pending. */
  drainIrq(): bigint {
    return this.irqEvent.drain();
  }

  /**
   * Signals end of interrupt on the resamplefd (what KVM does at EOI)
   * through `signaller`: the remote holding the other end may have made
   * it blocking and filled it, and must not stall us.
   */
  signalResample(signaller: EventfdSignaller): void {
    signaller.signal(this.resampleEvent.fd);
  }

  /** Clears the resamplefd; returns how many resamples were pending. */
  drainResample(): bigint {
    return this.resampleEvent.drain();
  }

  /** Closes both eventfds once. */
  close(): void {
    try {
      this.#close(this.irqEvent);
    } finally {
      this.#close(this.resampleEvent);
    }
  }

  #close(ev: EventFd): void {
    if (ev.closed) return;
    if (this.#fromPeer) closePeerFd(ev.release());
    else ev.close();
  }

  /** Closes both eventfds (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}
