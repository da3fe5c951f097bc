// The IOHUB of QEMU's multi-process remote (hw/remote/iohub.c): per-PIRQ
// INTx level counting, assertion through the irqfd on 0 -> 1, and
// re-assertion on resample while the level stays high.

import { EventfdSignaller } from "../../ffi/mod.ts";
import { IrqfdError, IrqLevelEvent } from "../mpqemu/mod.ts";

/** PIRQs the IOHUB tracks; QEMU maps a device to its devfn. */
export const NUM_PIRQS = 256;

/**
 * The PIRQ of the device at `devfn` on the remote's bus: the devfn itself,
 * as QEMU's remote_iohub_map_irq maps it, so each of up to 256 functions
 * has a line of its own.
 */
export function mapIrq(devfn: number): number {
  if (!Number.isInteger(devfn) || devfn < 0 || devfn >= NUM_PIRQS) {
    throw new RangeError(`devfn ${devfn} out of range`);
  }
  return devfn;
}

/** Where the IOHUB's resamplefds get watched (the remote's epoll loop). */
export interface ResampleWatcher {
  /** Starts calling Iohub.resample(pirq) when `fd` becomes readable. */
  watch(fd: number, pirq: number): void;
  /** Stops watching `fd`. */
  unwatch(fd: number): void;
}

/** Event counts of one PIRQ, for tests, logs and diagnostics. */
export interface PirqCounters {
  /** Writes to the irqfd on a 0 -> 1 level change (or on SET_IRQFD). */
  asserts: number;
  /** Decrements of the level count while an irqfd pair is installed. */
  deasserts: number;
  /** Resamplefd events handled. */
  resamples: number;
  /** Writes to the irqfd from the resample handler (level still high). */
  reasserts: number;
}

interface Pirq {
  level: number;
  event: IrqLevelEvent | null;
  counters: PirqCounters;
}

/**
 * The per-PIRQ level counters and irqfd/resamplefd pairs of a remote.
 * finalize() releases what it holds.
 */
export class Iohub implements Disposable {
  readonly #pirqs: Pirq[];
  readonly #watcher: ResampleWatcher;
  // The irqfds are the peers' too: a write(2) to one could block.
  readonly #signaller = new EventfdSignaller();

  /** An IOHUB whose resamplefds `watcher` reports back through resample(). */
  constructor(watcher: ResampleWatcher) {
    this.#watcher = watcher;
    this.#pirqs = Array.from({ length: NUM_PIRQS }, () => ({
      level: 0,
      event: null,
      counters: { asserts: 0, deasserts: 0, resamples: 0, reasserts: 0 },
    }));
  }

  #pirq(pirq: number): Pirq {
    const p = this.#pirqs[pirq];
    if (p === undefined) throw new RangeError(`PIRQ ${pirq} out of range`);
    return p;
  }

  /**
   * Installs the pair SET_IRQFD delivered for `pirq`, taking ownership
   * (closed here if the resamplefd cannot be watched, e.g. not pollable, or
   * if an eventfd of it belongs to another PIRQ's pair: IrqfdError);
   * a previous pair is unwatched and closed first. If the level is already
   * high the new irqfd is asserted at once, so no pending interrupt is
   * lost across a (re)connection (QEMU's IOHUB would wait for the next edge).
   */
  setIrqfd(pirq: number, event: IrqLevelEvent): void {
    const p = this.#pirq(pirq);
    const other = this.#sharing(p, event);
    if (other >= 0) {
      event.close();
      // One PIRQ's irqfd as another's resamplefd would bounce an interrupt
      // between the two for ever while both levels are high.
      throw new IrqfdError(`an eventfd of the pair is PIRQ ${other}'s`);
    }
    this.#release(p);
    try {
      this.#watcher.watch(event.resamplefd, pirq);
    } catch (e) {
      // Not installed, so not released later: the pair is closed here.
      event.close();
      throw e;
    }
    p.event = event;
    if (p.level > 0) {
      p.counters.asserts++;
      event.trigger(this.#signaller);
    }
  }

  /** A PIRQ other than `p` whose pair shares an eventfd with `event`, or -1. */
  #sharing(p: Pirq, event: IrqLevelEvent): number {
    const [a, b] = event.ids;
    if (a < 0) return -1;
    return this.#pirqs.findIndex((q) =>
      q !== p && q.event !== null &&
      (q.event.ids.includes(a) || q.event.ids.includes(b))
    );
  }

  /** Counts an INTx source of `pirq` going high (true) or low (false). */
  setIrq(pirq: number, level: boolean): void {
    const p = this.#pirq(pirq);
    if (level) {
      if (p.level++ === 0 && p.event !== null) {
        // An EOI still queued belongs to the interrupt before, whose level
        // was already low: take it now, or handling it after this edge would
        // re-assert the new interrupt. epoll cannot order the two for us:
        // an EOI signalled while the loop collects events can come a batch
        // after the request that was sent later.
        if (p.event.drainResample() > 0n) p.counters.resamples++;
        p.counters.asserts++;
        p.event.trigger(this.#signaller);
      }
    } else if (p.level > 0) {
      // No write on deassert: KVM lowers the line at EOI and resamples.
      // Counted like asserts, only with a pair installed, so the two pair
      // up in every log line.
      p.level--;
      if (p.event !== null) p.counters.deasserts++;
    }
  }

  /** The resamplefd of `pirq` fired: re-assert while the level is high. */
  resample(pirq: number): void {
    const p = this.#pirq(pirq);
    // Nothing to drain: already taken at a rising edge.
    if (p.event === null || p.event.drainResample() === 0n) return;
    p.counters.resamples++;
    if (p.level > 0) {
      p.counters.reasserts++;
      p.event.trigger(this.#signaller);
    }
  }

  /** The current level count of `pirq`. */
  level(pirq: number): number {
    return this.#pirq(pirq).level;
  }

  /** Whether `pirq` has an irqfd pair installed. */
  hasIrqfd(pirq: number): boolean {
    return this.#pirq(pirq).event !== null;
  }

  /** A copy of the event counters of `pirq`. */
  counters(pirq: number): PirqCounters {
    return { ...this.#pirq(pirq).counters };
  }

  /** Forgets `pirq`: closes its pair and zeroes level and counters. */
  clear(pirq: number): void {
    const p = this.#pirq(pirq);
    this.#release(p);
    p.level = 0;
    p.counters = { asserts: 0, deasserts: 0, resamples: 0, reasserts: 0 };
  }

  /** Closes every pair (QEMU's remote_iohub_finalize), then the signaller. */
  finalize(): void {
    try {
      for (const p of this.#pirqs) this.#release(p);
    } finally {
      this.#signaller.close();
    }
  }

  /** Same as finalize(), for `using`. */
  [Symbol.dispose](): void {
    this.finalize();
  }

  #release(p: Pirq): void {
    if (p.event === null) return;
    const ev = p.event;
    p.event = null;
    try {
      this.#watcher.unwatch(ev.resamplefd);
    } finally {
      ev.close();
    }
  }
}
